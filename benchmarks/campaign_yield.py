"""What one campaign run yields, and how many runs the grid needs, measured on the simulated H200.

Why: GPU time comes in runs of about 15 minutes (at most 10 per command); the campaign
(``diffusion-energy campaign-run``, ``scripts/device/campaign_run.sh``) measures the grid across
them. This runs the campaign itself on the simulated H200 (``measurement.simulated_gpu``: virtual
time, the 2026-12-04 run's calibration), each run on a fresh machine and another card, merging
each run's tarball before the next, until the grid is done; then prints per run the points
measured, the seconds spent and the fixed cost of its jobs. ``benchmarks/grid_time.py`` gives
the same from its time model, without simulating.

    python benchmarks/campaign_yield.py [--config config/config.yaml] [--budget-s 480]

Takes a few CPU minutes (every job's imports, the simulated windows of all 78 points).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--budget-s", type=float, default=480.0, help="seconds of measuring per run")
    parser.add_argument("--max-runs", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="campaign-yield-"))
    config = yaml.safe_load(Path(args.config).read_text())
    config["reference_dir"] = str(REPO / config.get("reference_dir", "resources/measurements"))
    config["public_sources"] = {}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'workflow'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cli = [sys.executable, "-m", "diffusion_energy.cli"]
    rows = []
    for n in range(1, args.max_runs + 1):
        for leftover in ("results/measurements", "logs", "out"):  # a fresh machine each run
            shutil.rmtree(work / leftover, ignore_errors=True)
        run = subprocess.run([*cli, "campaign-run", "--config", "config.yaml", "--budget-s",
                              str(args.budget_s), "--out", "out"], cwd=work, capture_output=True, text=True,
                             env={**env, "DIFFUSION_ENERGY_SIMULATED_GPU": f"h200,uuid=GPU-{n}"})
        if run.returncode != 0:
            print(run.stdout + run.stderr[-3000:])
            return 1
        if "nothing to measure" in run.stdout:
            break
        (tarball,) = (work / "out").iterdir()
        merged = subprocess.run([*cli, "campaign-merge", str(tarball), "--config", "config.yaml"],
                                cwd=work, capture_output=True, text=True, env=env)
        if merged.returncode != 0:
            print(merged.stdout + merged.stderr[-3000:])
            return 1
        with tarfile.open(tarball) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))
        jobs = [j["summary"] for j in manifest["jobs"] if j.get("summary")]
        fixed = sum(j.get("fixed_s", 0.0) for j in jobs)
        total = sum(j.get("total_s", 0.0) for j in jobs)
        rows.append((n, len(manifest["measured"]), manifest["spent_s"], fixed, total,
                     ", ".join(f"{j['model']} {j['measured']}" for j in jobs)))
        print(f"run {n}: {len(manifest['measured'])} points in {manifest['spent_s']:.0f} s of "
              f"{args.budget_s:.0f}; fixed cost {fixed:.0f} s ({fixed / total:.0%} of its jobs); "
              + rows[-1][-1], flush=True)
    points = sum(r[1] for r in rows)
    fixed, total = sum(r[3] for r in rows), sum(r[4] for r in rows)
    print(f"the grid: {points} points in {len(rows)} runs of {args.budget_s:.0f} s on the simulated H200 "
          f"({points / len(rows):.1f} points per run; {total / 60:.1f} min of jobs, fixed cost {fixed:.0f} s "
          f"= {fixed / total:.1%}: start-up, build, idle, text/VAE windows and warm-ups paid again by every "
          "run a job is split across)")
    print(f"(work folder: {work})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
