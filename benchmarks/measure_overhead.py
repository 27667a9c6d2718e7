"""Fixed cost per measurement job and its share of the grid's GPU wall time.

Reads the timings every measurement job writes (``logs/measure/{gpu}/{model}.job.json``:
one job per model, all its precisions) and prints, per job and in total: process start-up and
imports, pipeline build, idle baseline, text/VAE windows, warm-up, the image
repeats, and the fixed cost (everything but the repeats) as a share of the
job's wall time. Goal: under 15% on the default grid.

Without GPU job files (a machine without a GPU), ``--cpu-demo`` runs the tiny
models' measurement path on the CPU through the CLI and reports the same
figures for it: the CPU path's numbers show the bookkeeping, not GPU costs.

    python benchmarks/measure_overhead.py [logs/measure] [--cpu-demo]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

COLUMNS = ["gpu", "model", "precision", "points", "startup_s", "build_s", "idle_s", "shared_stages_s",
           "warmup_s", "repeats_s", "fixed_s", "total_s", "fixed_share"]


def load(folder: Path) -> pd.DataFrame:
    rows = [json.loads(p.read_text()) for p in sorted(folder.rglob("*.job.json"))]
    return pd.DataFrame(rows, columns=COLUMNS)


def cpu_demo(folder: Path) -> None:
    protocol = '{"idle_s": 0.5, "min_window_s": 0.2, "repeats": 3, "warmup": 1}'
    for model in ("tiny-sd", "tiny-flux"):
        points = "32px_2steps_cfg1_b1,32px_4steps_cfg1_b1,64px_2steps_cfg1_b1,64px_4steps_cfg1_b1"
        summary = folder / "cpu" / model / "fp32.job.json"
        subprocess.run([sys.executable, "-m", "diffusion_energy.cli", "measure", "--gpu", "cpu",
                        "--model", model, "--precision", "fp32", "--points", points,
                        "--outdir", str(folder / "m"), "--device", "cpu", "--protocol", protocol,
                        "--summary", str(summary), "--fresh"], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="logs/measure")
    parser.add_argument("--cpu-demo", action="store_true", help="measure tiny models on the CPU first")
    args = parser.parse_args()
    folder = Path(args.folder)
    if args.cpu_demo:
        folder = Path(tempfile.mkdtemp(prefix="measure-overhead-"))
        cpu_demo(folder)
        print("CPU demo (tiny models, no energy): the shares show the bookkeeping, not GPU costs")
    jobs = load(folder)
    if jobs.empty:
        print(f"no job timings under {folder}: run the measurements first (or --cpu-demo)")
        return 1
    pd.set_option("display.width", 200)
    print(jobs.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    fixed, total = jobs["fixed_s"].sum(), jobs["total_s"].sum()
    print(f"\n{len(jobs)} jobs, {jobs['points'].sum()} points: wall time {total:.1f} s, "
          f"fixed cost {fixed:.1f} s = {fixed / total:.1%} of it "
          f"({fixed / len(jobs):.1f} s per job; goal: under 15%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
