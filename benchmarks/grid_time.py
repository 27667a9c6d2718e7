"""Estimate the GPU wall time of measuring the config's grid on one H200, before a GPU is lent.

Why: a lent GPU machine gives 15 minutes in all and at most 10 per command, so
the grid and the protocol must be sized before the run, not during it.

How: per grid point, the time of each stage (text encoding, one image's
denoising, VAE decode) is the larger of the GPU's time (FLOPs / compute rate +
bytes / bandwidth) and the host's time to dispatch its kernels (kernels x
dispatch cost): eager PyTorch queues kernels asynchronously, so a stage is
either GPU-bound or dispatch-bound. FLOPs, bytes and kernels are the real
counts of every architecture (meta device). The compute rate and dispatch
cost are calibrated on two H200 times from DESIGN.md: FLUX.1-dev 1024 px
28 steps bf16 without CFG, 5.1 s per image (GPU-bound), and SD 1.5 512 px
50 steps fp16 with CFG, 410 J at about 280 W, i.e. 1.46 s (dispatch-bound).
The protocol's windows are then counted as ``measure.py`` runs them: per job a
fixed start-up, the idle baseline, text and VAE windows; per point warm-up
(only for a new shape), ``repeats`` image windows of at least
``min_window_s``, and a denoise window of the same length when an image is
shorter than one window.

    python benchmarks/grid_time.py [--config config/config.yaml] [--job-fixed-s 15]

An estimate to plan with (the calibration points are two; GPU power states,
Python overhead and memory allocation are not modelled), never a result.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import least_squares

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from diffusion_energy import grid  # noqa: E402
from diffusion_energy.counting.features import Point, point_features  # noqa: E402
from diffusion_energy.laws import simulate  # noqa: E402
from diffusion_energy.measurement import measure  # noqa: E402
from diffusion_energy.measurement.energy import calls_to_fill  # noqa: E402
from diffusion_energy.models.zoo import load_spec  # noqa: E402

#: (model, precision, resolution, steps, cfg, seconds per image) measured on one H200 (DESIGN.md).
H200_REFERENCE = [("flux-dev", "bf16", 1024, 28, False, 5.1), ("sd15", "fp16", 512, 50, True, 410 / 280)]
#: H200 HBM3e bandwidth, 4.8 TB/s, at the 80% that streaming kernels reach.
H200_BANDWIDTH = 0.8 * 4.8e12
#: fp32 compute rate as a fraction of the 16-bit one (H200: 67 of 989 dense TFLOP/s, no TF32).
FP32_FRACTION = 67 / 989


@dataclass(frozen=True)
class TimeModel:
    """Seconds of a stage: max(FLOPs / rate + bytes / bandwidth, kernels x dispatch)."""

    compute_flop_per_s: float
    dispatch_s: float
    bandwidth_byte_per_s: float = H200_BANDWIDTH

    def seconds(self, flops: np.ndarray, bytes_: np.ndarray, kernels: np.ndarray,
                fp32: np.ndarray) -> np.ndarray:
        rate = self.compute_flop_per_s * np.where(fp32, FP32_FRACTION, 1.0)
        return np.maximum(flops / rate + bytes_ / self.bandwidth_byte_per_s, kernels * self.dispatch_s)


def stage_times(points: Sequence[grid.GridPoint], table: pd.DataFrame, model: TimeModel) -> pd.DataFrame:
    """Seconds per image of text, denoise and VAE (and their sum, image) at every point."""
    feats = point_features([Point("h200", p.model, load_spec(p.model).architecture, p.precision,
                                  p.resolution, p.steps, p.cfg, p.batch) for p in points], table)
    fp32 = (feats["precision"] == "fp32").to_numpy()
    out = feats[["model", "precision", "resolution", "steps", "cfg", "batch"]].copy()
    for stage in ("text", "denoise", "vae"):
        out[stage] = model.seconds(*(feats[f"{stage}_{c}"].astype(float).to_numpy()
                                     for c in ("flops", "bytes", "kernels")), fp32)
    out["image"] = out["text"] + out["denoise"] + out["vae"]
    return out


def calibrate(table: pd.DataFrame) -> TimeModel:
    """The compute rate and dispatch cost that reproduce the H200 reference times."""
    refs = [grid.GridPoint(m, p, r, s, c, 1) for m, p, r, s, c, _ in H200_REFERENCE]
    measured = np.log([t for *_, t in H200_REFERENCE])

    def resid(z: np.ndarray) -> np.ndarray:
        t = stage_times(refs, table, TimeModel(float(np.exp(z[0])), float(np.exp(z[1]))))
        return np.log(t["image"].to_numpy()) - measured

    fit = least_squares(resid, x0=np.log([5e14, 1e-5]))
    return TimeModel(float(np.exp(fit.x[0])), float(np.exp(fit.x[1])))


def window_s(call_s: float, min_window_s: float) -> float:
    return calls_to_fill(call_s, min_window_s) * call_s


def warm_up_s(call_s: float, protocol: measure.Protocol) -> float:
    calls = max(1, protocol.warmup, math.ceil(protocol.warmup_s / call_s) if call_s > 0 else 1)
    return calls * call_s


def job_seconds(points: Sequence[grid.GridPoint], times: pd.DataFrame, protocol: measure.Protocol,
                job_fixed_s: float, reuse_warm_shapes: bool = True) -> dict[str, float]:
    """Wall time of one measurement job, split as ``JobTimings`` splits it."""
    t = times.set_index(["model", "precision", "resolution", "steps", "cfg", "batch"])
    out = {"fixed_s": job_fixed_s + protocol.idle_s, "shared_stages_s": 0.0, "warmup_s": 0.0,
           "repeats_s": 0.0}
    seen_text, seen_vae, warm = set(), set(), set()
    for p in points:
        row = t.loc[(p.model, p.precision, p.resolution, p.steps, p.cfg, p.batch)]
        for seen, key, s in ((seen_text, (p.cfg, p.batch), row["text"]), (seen_vae, (p.resolution, p.batch),
                                                                          row["vae"])):
            if key not in seen:
                seen.add(key)
                out["shared_stages_s"] += warm_up_s(s, protocol) + protocol.repeats * window_s(
                    s, protocol.min_window_s)
        image_s = row["image"]
        if p.shape not in warm or not reuse_warm_shapes:
            out["warmup_s"] += warm_up_s(image_s, protocol)
            warm.add(p.shape)
        calls = calls_to_fill(image_s, protocol.min_window_s)
        per_repeat = calls * image_s + (calls * row["denoise"] if calls > 1 else 0.0)
        out["repeats_s"] += protocol.repeats * per_repeat
    out["total_s"] = sum(out.values())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--job-fixed-s", type=float, default=15.0,
                        help="per job: interpreter start, imports, pipeline build on the GPU, s")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    protocol = measure.Protocol.from_config(config.get("protocol"))
    points = grid.grid_points(config)
    t0 = time.perf_counter()
    models, resolutions = sorted({p.model for p in points}), sorted({p.resolution for p in points})
    table, _ = simulate.count_flops(models, resolutions)
    print(f"per-op counts of {len(models)} architectures on meta: {time.perf_counter() - t0:.1f} s")
    model = calibrate(table)
    print(f"H200 calibration: compute {model.compute_flop_per_s / 1e12:.0f} TFLOP/s (16-bit), "
          f"dispatch {model.dispatch_s * 1e6:.1f} us per kernel, bandwidth {H200_BANDWIDTH / 1e12:.2f} TB/s")
    times = stage_times(points, table, model)
    slowest = times.sort_values("image", ascending=False).head(5)
    print("slowest images (s):\n" + slowest.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    rows = []
    for (model, precision), group in grid.measurement_groups(points).items():
        est = job_seconds(group, times, protocol, args.job_fixed_s)
        old = job_seconds(group, times, protocol, args.job_fixed_s, reuse_warm_shapes=False)
        rows.append({"model": model, "precision": precision, "points": len(group), **est,
                     "total_s_warm_every_point": old["total_s"]})
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    total, old = frame["total_s"].sum(), frame["total_s_warm_every_point"].sum()
    print(f"grid: {len(points)} points in {len(frame)} jobs, estimated {total:.0f} s ({total / 60:.1f} min) "
          f"on one H200; warming up every point: {old:.0f} s ({old / 60:.1f} min)")
    fixed = frame[["fixed_s", "warmup_s"]].sum().sum()
    print(f"  fixed cost (start-up, build, idle, warm-up) {fixed:.0f} s = {fixed / total:.1%} (goal < 15%), "
          f"text/VAE windows {frame['shared_stages_s'].sum():.0f} s, image repeats "
          f"{frame['repeats_s'].sum():.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
