"""Benchmark: how fast the command line answers (wall and CPU seconds, several runs).

Times, each ``--runs`` times, as a user starts them:

* ``diffusion-energy --help`` and an argument error (``predict`` without ``--steps``);
* ``predict`` of an image model (the README's SD 3.5 Medium example) and of a video model
  (CogVideoX 1.5 5B), run in an empty temporary folder: no ``results/`` there, so they answer
  from the laws shipped with the package (as after ``pip install``);
* a no-op Snakemake target: a fresh copy of the workflow builds one cheap target
  (``results/public/paper-2511.17031.parquet``) once, then asking for it again is timed
  (parsing the Snakefile and finding nothing to do); beside it, Snakemake's own floor: a
  one-rule Snakefile asked for a target that exists.

CPU seconds are the children's user + system time (``resource.getrusage``), less sensitive to
other load on the machine than wall time. Prints min and median of each.

    python benchmarks/cli_latency.py [--runs 5]

Goals on a 2-core machine: ``--help`` and argument errors 0.3 s, ``predict`` 1.5 s, a no-op
Snakemake target 2 s (wall).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The workflow copied as a fresh clone has it (run as a script, benchmarks/ is on the path).
from workflow_time import fresh_copy

CHEAP_TARGET = "results/public/paper-2511.17031.parquet"
GOALS_S = {"help": 0.3, "argument error": 0.3, "predict image": 1.5, "predict video": 1.5,
           "predict image on 4 GPUs": 1.5, "snakemake no-op": 2.0}


def cli() -> list[str]:
    """The installed console script, else the module."""
    script = Path(sys.executable).parent / "diffusion-energy"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "diffusion_energy.cli"]


def timed(command: list[str], cwd: Path, expect: int = 0) -> tuple[float, float]:
    """(wall s, CPU s) of one run; its exit status must be ``expect``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != expect:
        raise SystemExit(f"{' '.join(command)}: exit status {run.returncode}, expected {expect}\n"
                         f"{run.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-snakemake", action="store_true", help="time the CLI alone")
    parser.add_argument("--laws-dir", type=Path,
                        help="give predict this folder's laws.json, modalities.json and parallel.json "
                             "(default: none, so that the laws shipped with the package answer)")
    args = parser.parse_args()
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "2"]
    with tempfile.TemporaryDirectory(prefix="diffusion-energy-latency-") as tmp:
        empty, work, floor = Path(tmp) / "empty", Path(tmp) / "workflow", Path(tmp) / "floor"
        for folder in (empty, work, floor):
            folder.mkdir()
        laws = [] if args.laws_dir is None else [
            "--laws", str(args.laws_dir.resolve() / "laws.json"),
            "--video-laws", str(args.laws_dir.resolve() / "modalities.json"),
            "--parallel-laws", str(args.laws_dir.resolve() / "parallel.json")]
        cases: dict[str, tuple[list[str], Path, int]] = {
            "help": ([*cli(), "--help"], empty, 0),
            "argument error": ([*cli(), "predict", "--model", "sd15"], empty, 2),
            "predict image": ([*cli(), "predict", "--model", "sd35-medium", "--resolution", "1024",
                               "--steps", "28", "--gpu", "h100", "--batch", "4", *laws], empty, 0),
            "predict video": ([*cli(), "predict", "--model", "cogvideox1.5-5b", "--steps", "50",
                               "--gpu", "h100", *laws], empty, 0),
            "predict image on 4 GPUs": ([*cli(), "predict", "--model", "hunyuandit-v1.2", "--resolution",
                                         "1024", "--steps", "50", "--gpu", "h100", "--gpus", "4",
                                         "--ulysses-degree", "2", "--ring-degree", "2", *laws], empty, 0),
        }
        if not args.skip_snakemake:
            fresh_copy(work)
            subprocess.run([*snakemake, CHEAP_TARGET], cwd=work, check=True, capture_output=True)
            (floor / "Snakefile").write_text('rule a:\n    output: "a.txt"\n    shell: "touch {output}"\n')
            subprocess.run([*snakemake, "a.txt"], cwd=floor, check=True, capture_output=True)
            cases["snakemake no-op"] = ([*snakemake, CHEAP_TARGET], work, 0)
            cases["snakemake floor (one-rule Snakefile)"] = ([*snakemake, "a.txt"], floor, 0)
        print(f"{args.runs} runs each; seconds (min / median); goal is wall, on 2 cores")
        print(f"{'command':38s} {'wall min':>8s} {'median':>7s} {'CPU min':>8s} {'median':>7s}  goal")
        for name, (command, cwd, expect) in cases.items():
            timed(command, cwd, expect)  # warm the page cache and .pyc files
            runs = [timed(command, cwd, expect) for _ in range(args.runs)]
            walls, cpus = [w for w, _ in runs], [c for _, c in runs]
            goal = GOALS_S.get(name)
            met = goal is not None and statistics.median(walls) <= goal
            verdict = "" if goal is None else f"{goal:.1f} s: {'met' if met else 'NOT met'}"
            print(f"{name:38s} {min(walls):8.2f} {statistics.median(walls):7.2f} {min(cpus):8.2f} "
                  f"{statistics.median(cpus):7.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
