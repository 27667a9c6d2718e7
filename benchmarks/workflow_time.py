"""Benchmark: wall time of the whole default workflow on this machine, with its breakdown.

Copies the workflow into a temporary folder (as a fresh clone would have it:
no results, no logs), runs the README's main job there
(``snakemake --cores N --workflow-profile profiles/local``), and prints the
total wall time, each job's wall time from its ``benchmark:`` file, the CPU
seconds of every FLOPs worker per model (from the counting job's log), and the
share of the total each part takes.

    python benchmarks/workflow_time.py [--cores 2] [--keep]

Goal on a 2-core machine without a GPU: the whole default workflow under 90 s.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 90.0
COPY = ("Snakefile", "workflow", "config", "envs", "profiles", "resources")
SKIP = shutil.ignore_patterns("__pycache__", "*.egg-info", ".snakemake", "results", "logs")


def fresh_copy(dest: Path) -> None:
    for rel in COPY:
        src = REPO_ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=SKIP)
        else:
            shutil.copy2(src, dest / rel)


def job_times(workdir: Path) -> pd.DataFrame:
    """One row per job: its benchmark file's name and wall seconds."""
    rows = []
    for tsv in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        frame = pd.read_csv(tsv, sep="\t")
        rows.append({"job": str(tsv.relative_to(workdir / "results" / "benchmarks").with_suffix("")),
                     "wall_s": float(frame["s"].iloc[0])})
    return pd.DataFrame(rows, columns=["job", "wall_s"]).sort_values("wall_s", ascending=False)


def flops_models(workdir: Path) -> pd.DataFrame:
    """Seconds each model took in the FLOPs workers (from ``logs/flops/count.log``)."""
    log = workdir / "logs" / "flops" / "count.log"
    pattern = re.compile(r"INFO diffusion_energy\.cli\.foundation: (\S+)\s+(\d+) shapes\s+([\d.]+) s")
    rows = [{"model": m.group(1), "shapes": int(m.group(2)), "cpu_s": float(m.group(3))}
            for m in pattern.finditer(log.read_text())] if log.is_file() else []
    return pd.DataFrame(rows, columns=["model", "shapes", "cpu_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary workflow copy")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="diffusion-energy-bench-"))
    try:
        fresh_copy(workdir)
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(args.cores),
                              "--workflow-profile", "profiles/local"], cwd=workdir, capture_output=True,
                             text=True)
        total = time.perf_counter() - start
        if run.returncode != 0:
            print(run.stderr[-4000:], file=sys.stderr)
            return run.returncode
        jobs = job_times(workdir)
        print(f"whole default workflow: {total:.1f} s wall on {args.cores} cores "
              f"(goal {GOAL_S:.0f} s: {'met' if total < GOAL_S else 'NOT met'})")
        print(f"sum of job wall times: {jobs['wall_s'].sum():.1f} s over {len(jobs)} jobs\n")
        print(jobs.assign(share=(jobs["wall_s"] / total).map("{:.0%}".format)).to_string(
            index=False, float_format=lambda v: f"{v:.1f}"))
        models = flops_models(workdir)
        if len(models):
            print(f"\nFLOPs workers, CPU seconds per model ({models['cpu_s'].sum():.1f} s in all):")
            print(models.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    finally:
        if args.keep:
            print(f"\nkept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
