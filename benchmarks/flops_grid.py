"""Benchmark: count the FLOPs of the whole default grid, as the workflow does.

For every model of ``config/config.yaml``, the resolutions, CFG settings and batch
sizes its grid points need (``grid.flops_requests``) are counted on the meta
device with ``flops.count_model``, one model after another in this process (the
workflow runs one ``flops_model`` job per model). Prints the wall time per model
and in total, the peak resident memory (``ru_maxrss``) and a table of FLOPs per
stage for every model at 1024 px.

    python benchmarks/flops_grid.py [--config config/config.yaml] [--resolution 1024]

Goal on a 2-core CPU machine: under 60 s and under 4 GiB.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from diffusion_energy import grid
from diffusion_energy.counting import flops
from diffusion_energy.models import zoo

REPO_ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 60.0
GOAL_GIB = 4.0


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20 if sys.platform != "darwin" else kib / 2**30


def count_grid(config: dict) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every model's FLOP table for the grid of ``config``; seconds spent per model."""
    grid.validate_config(config)
    requests = grid.flops_requests(grid.grid_points(config))
    tables, seconds = [], {}
    for model, req in requests.items():
        start = time.perf_counter()
        tables.append(flops.count_model(zoo.load_spec(model), req["resolutions"], req["cfgs"],
                                        req["batches"]))
        seconds[model] = time.perf_counter() - start
    return pd.concat(tables, ignore_index=True), seconds


def stage_table(frame: pd.DataFrame, resolution: int) -> pd.DataFrame:
    """Per component at ``resolution`` (batch 1): FLOPs of one call, and of all its calls
    per image (text encoders, VAE) or per denoising step (denoiser)."""
    at = frame[(frame["resolution"] == resolution) & (frame["batch"] == 1)]
    table = at[["model", "cfg", "stage", "component", "call_batch", "calls", "per", "kernels"]].copy()
    table["params_m"] = (at["params"] / 1e6).round(1)
    table["tflop_per_call"] = (at["flops"] / 1e12).round(4)
    table["tflop_all_calls"] = (at["flops"] * at["calls"] / 1e12).round(4)
    table["gbytes_per_call"] = (at["bytes"] / 1e9).round(2)
    table["stage"] = pd.Categorical(table["stage"], ["text", "denoise", "vae"], ordered=True)
    return table.sort_values(["model", "stage", "component"]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "config" / "config.yaml")
    parser.add_argument("--resolution", type=int, default=1024, help="resolution of the stage table")
    args = parser.parse_args(argv)

    config = yaml.safe_load(args.config.read_text())
    start = time.perf_counter()
    frame, seconds = count_grid(config)
    wall_s = time.perf_counter() - start
    peak = peak_rss_gib()

    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 500)
    print(f"FLOPs of the grid of {args.config}: {len(frame)} rows, {frame['model'].nunique()} models")
    for model, s in seconds.items():
        print(f"  {model:<12} {s:6.1f} s")
    print(f"wall time {wall_s:.1f} s (goal < {GOAL_S:.0f} s); peak RSS {peak:.2f} GiB "
          f"(goal < {GOAL_GIB:.0f} GiB)")
    print(f"\nFLOPs per call at {args.resolution} px, batch 1 "
          "(calls: per image for text and vae, per step for denoise):")
    print(stage_table(frame, args.resolution).to_string(index=False))
    return 0 if wall_s < GOAL_S and peak < GOAL_GIB else 1


if __name__ == "__main__":
    raise SystemExit(main())
