"""Estimate the GPU wall time of measuring the config's grid on one H200, before a GPU is lent.

Why: a lent GPU machine gives 15 minutes in all and at most 10 per command, so
the grid, the protocol and ``measure_order`` must be sized before the run, not
during it.

How: every number comes from the first real H200 run of this workflow
(2026-12-04, main at 21c0713 with the window-sizing fix, ``min_window_s`` 2.0),
read from its files, or from the project's early design notes where that run has no timing:

* per-call times of SD 1.5 fp16 with CFG (``resources/measurements/h200.parquet``,
  medians of ``time_s``): whole images 0.265 s at 256 px / 10 steps, 0.309 s at
  512, 0.378 s at 768, 0.541 s at 1024 (launch-bound below 768 px: 256 -> 512 px
  adds 12% time for 4.5x the FLOPs); text encoder 6.6 ms per call (its windows
  draw about 140 W, 20 W over idle: kernel dispatch, not compute); VAE decode
  5.2 / 20.6 / 48.3 / 85.4 ms at 256 / 512 / 768 / 1024 px (about 420 W);
* FLUX.1-dev bf16, 1024 px, 28 steps, no CFG: 5.1 s per image (the design notes; the
  run's four large single-point jobs left no per-point timing), the only
  timing of a large transformer;
* per job (the jobs' ``.job.json`` summaries, as
  ``resources/gpu-runs/h200-2026-12-04/README.md`` gives them): start-up and
  imports 3.6-4.7 s, pipeline build 2.3-2.7 s (the upper ends are planned with);
  17-28 s fixed cost per job in all;
* the windows themselves (``run2_zeus_windows_sd15_fp16.csv``): 11.4 of the SD
  1.5 job's 208.3 s between its idle window and its last window were outside
  windows: warm-ups of 1.0-1.15 s (text, VAE) and 1.4-2.3 s (a new image
  shape), 3-50 ms between windows.

A stage's seconds are the larger of its GPU time (FLOPs / rate + bytes /
bandwidth) and the host's time to dispatch its kernels (kernels x dispatch):
eager PyTorch queues kernels asynchronously. FLOPs, bytes and kernels are the
real counts of every architecture (meta device). Four constants are fitted on
the times above: the dispatch cost per counted kernel, and the compute rates of
U-Net denoisers (from SD 1.5 at 768-1024 px), VAE decoders (from the VAE
windows) and transformers (text encoders and MMDiT denoisers, from FLUX.1-dev).
The protocol's windows are then counted as ``measure.py`` runs them, with the
config's protocol (keys the protocol does not have fall back to the older
protocol's meaning): per job start-up, build, the idle baseline, text and VAE
windows with their warm-up; per point a warm-up for a new shape, ``repeats``
image windows of at least the shortest window, and a denoise window of the same
length when one image is shorter than a window. The model is checked against
the measured SD 1.5 job before it is used.

    python benchmarks/grid_time.py [--config config/config.yaml] [--command-s 600]

An estimate to plan with, never a result: the large models rest on one FLUX.1-dev
timing, and re-measured windows (outliers, windows too short) are not counted.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

#: The H200 run's SD 1.5 points (per-call times of every stage, medians over the repeats).
SHIPPED = REPO / "resources" / "measurements" / "h200.parquet"
#: Its SD 1.5 job's energy windows (name, start, length) as Zeus wrote them.
WINDOWS_CSV = REPO / "resources" / "gpu-runs" / "h200-2026-12-04" / "run2_zeus_windows_sd15_fp16.csv"
#: The protocol of that run: the config of 21c0713 with min_window_s 2.0 (the datasheet, h200.md).
RUN_PROTOCOL = {"idle_s": 3.0, "warmup": 1, "warmup_s": 1.0, "repeats": 3, "min_window_s": 2.0}
#: (model, precision, resolution, steps, cfg, seconds per image): FLUX.1-dev on one H200 (the design
#: notes; in line with the 1.5-5.4 s single images of the run's large single-point jobs).
FLUX_REFERENCE = ("flux-dev", "bf16", 1024, 28, False, 5.1)
#: Start-up and imports, s: 3.6-4.7 s per job (job summaries; gpu-runs/h200-2026-12-04/README.md).
STARTUP_S = 4.7
#: Pipeline build on the GPU and the energy monitor's start, s: 2.3-2.7 s per job (same source).
BUILD_S = 2.7
#: A stage's or new shape's first (cold) call, s: the text encoder's took "over 1 s" (run 1's log);
#: the warm-up gaps before the first windows were 1.0-2.3 s (run 2's windows CSV).
COLD_CALL_S = 1.0
#: NVML energy counter update period, s (about 100 ms on the H100 and H200: counter_period_s of the
#: shipped H200 rows, resources/measurements/h200.parquet).
COUNTER_PERIOD_S = 0.1
#: H200 HBM3e bandwidth, 4.8 TB/s, at the 80% that streaming kernels reach.
H200_BANDWIDTH = 0.8 * 4.8e12
#: fp32 compute rate as a fraction of the 16-bit one (H200: 67 of 989 dense TFLOP/s, no TF32).
FP32_FRACTION = 67 / 989
STAGES = ("text", "denoise", "vae")


@dataclass(frozen=True)
class ShippedTimings:
    """Per-call seconds of SD 1.5 fp16 with CFG on the H200, from the shipped rows."""

    image_s: dict[tuple[int, int], float]
    text_s: float
    vae_s: dict[int, float]

    @classmethod
    def read(cls, path: Path = SHIPPED) -> ShippedTimings:
        rows = pd.read_parquet(path)
        rows = rows[(rows["model"] == "sd15") & (rows["status"] == "ok")]
        image = rows[rows["stage"] == "image"].groupby(["resolution", "steps"])["time_s"].median()
        vae = rows[rows["stage"] == "vae"].groupby("resolution")["time_s"].median()
        return cls({(int(r), int(s)): float(t) for (r, s), t in image.items()},
                   float(rows[rows["stage"] == "text"]["time_s"].median()),
                   {int(r): float(t) for r, t in vae.items()})


@dataclass(frozen=True)
class TimeModel:
    """Seconds of a stage: max(FLOPs / rate + bytes / bandwidth, kernels x dispatch); the rate by
    what computes (a U-Net denoiser, a VAE decoder, a transformer: text encoders and MMDiTs)."""

    unet_flop_per_s: float
    vae_flop_per_s: float
    transformer_flop_per_s: float
    dispatch_s: float
    bandwidth_byte_per_s: float = H200_BANDWIDTH

    def rate(self, stage: str, architecture: str) -> float:
        if stage == "vae":
            return self.vae_flop_per_s
        if stage == "denoise" and architecture == "unet":
            return self.unet_flop_per_s
        return self.transformer_flop_per_s

    def seconds(self, stage: str, architecture: np.ndarray, flops: np.ndarray, bytes_: np.ndarray,
                kernels: np.ndarray, fp32: np.ndarray) -> np.ndarray:
        rate = np.array([self.rate(stage, a) for a in architecture]) * np.where(fp32, FP32_FRACTION, 1.0)
        return np.maximum(flops / rate + bytes_ / self.bandwidth_byte_per_s, kernels * self.dispatch_s)


def stage_times(points: Sequence[grid.GridPoint], table: pd.DataFrame, model: TimeModel) -> pd.DataFrame:
    """Seconds per image of text, denoise and VAE (and their sum, image) at every point."""
    feats = point_features([Point("h200", p.model, load_spec(p.model).architecture, p.precision,
                                  p.resolution, p.steps, p.cfg, p.batch) for p in points], table)
    fp32 = (feats["precision"] == "fp32").to_numpy()
    arch = np.array([load_spec(m).architecture for m in feats["model"]])
    out = feats[["model", "precision", "resolution", "steps", "cfg", "batch"]].copy()
    for stage in STAGES:
        out[stage] = model.seconds(stage, arch, *(feats[f"{stage}_{c}"].astype(float).to_numpy()
                                                  for c in ("flops", "bytes", "kernels")), fp32)
    out["image"] = out["text"] + out["denoise"] + out["vae"]
    return out


def calibration_targets(timings: ShippedTimings) -> list[tuple[grid.GridPoint, str, float]]:
    """(point, what is timed, seconds): every SD 1.5 image, its text call, the VAE per resolution,
    and the FLUX.1-dev image."""
    out = [(grid.GridPoint("sd15", "fp16", r, s, True, 1), "image", t)
           for (r, s), t in timings.image_s.items()]
    first = min(timings.image_s)
    out.append((grid.GridPoint("sd15", "fp16", first[0], first[1], True, 1), "text", timings.text_s))
    steps = min(s for _, s in timings.image_s)
    out += [(grid.GridPoint("sd15", "fp16", r, steps, True, 1), "vae", t) for r, t in timings.vae_s.items()]
    m, p, r, s, c, t = FLUX_REFERENCE
    out.append((grid.GridPoint(m, p, r, s, c, 1), "image", t))
    return out


def timed(times: pd.DataFrame, targets: list[tuple[grid.GridPoint, str, float]]) -> list[float]:
    """The modelled seconds of each target (``stage_times`` rows are keyed, not in input order)."""
    keyed = times.set_index(["model", "precision", "resolution", "steps", "cfg", "batch"])
    return [float(keyed.loc[(p.model, p.precision, p.resolution, p.steps, p.cfg, p.batch), what])
            for p, what, _ in targets]


def calibrate(table: pd.DataFrame, targets: list[tuple[grid.GridPoint, str, float]]) -> TimeModel:
    """The three rates and the dispatch cost that reproduce the H200 times (least squares on logs)."""
    points = sorted({p for p, _, _ in targets})
    measured = np.log([t for *_, t in targets])

    def model_of(z: np.ndarray) -> TimeModel:
        return TimeModel(*np.exp(z))

    def resid(z: np.ndarray) -> np.ndarray:
        return np.log(timed(stage_times(points, table, model_of(z)), targets)) - measured

    fit = least_squares(resid, x0=np.log([3e14, 1.5e14, 5e14, 3e-5]))
    return model_of(fit.x)


@dataclass(frozen=True)
class Windows:
    """What the protocol makes a job do, in seconds (older protocols lack the newer keys)."""

    idle_s: float
    warmup: int
    warmup_s: float
    repeats: int
    image_window_s: float
    stage_window_s: float

    @classmethod
    def of(cls, protocol: Any) -> Windows:
        updates = getattr(protocol, "min_window_updates", 0) * COUNTER_PERIOD_S
        image = max(protocol.min_window_s, updates)
        stage = max(getattr(protocol, "stage_window_s", protocol.min_window_s), updates / 2)
        return cls(protocol.idle_s, protocol.warmup, protocol.warmup_s, protocol.repeats, image, stage)


def window_s(call_s: float, min_window_s: float) -> float:
    return calls_to_fill(call_s, min_window_s) * call_s


def warm_up_s(call_s: float, windows: Windows) -> float:
    """A cold first call, then warm calls until ``warmup`` calls and ``warmup_s`` seconds."""
    calls = max(1, windows.warmup, math.ceil(windows.warmup_s / call_s) if call_s > 0 else 1)
    return max(COLD_CALL_S, call_s) + calls * call_s


def job_seconds(points: Sequence[grid.GridPoint], times: pd.DataFrame, windows: Windows,
                reuse_warm_shapes: bool = True) -> dict[str, float]:
    """Wall time of one measurement job: fixed (start-up, build, idle, text/VAE windows and every
    warm-up) and the image and denoise windows of its points. A point after one of the same shape
    is not warmed up again (``reuse_warm_shapes``: what ``measure.py`` does)."""
    t = times.set_index(["model", "precision", "resolution", "steps", "cfg", "batch"])
    out = {"startup_build_s": STARTUP_S + BUILD_S, "idle_s": windows.idle_s, "text_vae_s": 0.0,
           "warmup_s": 0.0, "windows_s": 0.0}
    seen_text, seen_vae, warm = set(), set(), set()
    for p in points:
        row = t.loc[(p.model, p.precision, p.resolution, p.steps, p.cfg, p.batch)]
        for seen, key, s in ((seen_text, (p.cfg, p.batch), row["text"]),
                             (seen_vae, (p.resolution, p.batch), row["vae"])):
            if key not in seen:
                seen.add(key)
                out["warmup_s"] += warm_up_s(s, windows)
                out["text_vae_s"] += windows.repeats * window_s(s, windows.stage_window_s)
        image_s = row["image"]
        if p.shape not in warm or not reuse_warm_shapes:
            out["warmup_s"] += warm_up_s(image_s, windows)
            warm.add(p.shape)
        calls = calls_to_fill(image_s, windows.image_window_s)
        per_repeat = calls * image_s + (calls * row["denoise"] if calls > 1 else 0.0)
        out["windows_s"] += windows.repeats * per_repeat
    out["fixed_s"] = out["startup_build_s"] + out["idle_s"] + out["text_vae_s"] + out["warmup_s"]
    out["total_s"] = out["fixed_s"] + out["windows_s"]
    return out


def observed_sd15_job(path: Path = WINDOWS_CSV) -> tuple[float, int]:
    """Seconds from the SD 1.5 job's idle window to the end of its last complete point, and how many
    points were complete (three image and three denoise windows each; the last was cut short)."""
    w = pd.read_csv(path).sort_values("start_time", ignore_index=True)
    w["end"] = w["start_time"] + w["elapsed_time"]
    point = {f"{stage}-{r}" for stage in ("image", "denoise") for r in range(3)}
    complete = [i for i in w.index[w["window_name"] == "image-0"]
                if set(w["window_name"].iloc[i:i + 6]) == point and len(w.iloc[i:i + 6]) == 6]
    last = w.iloc[complete[-1]:complete[-1] + 6]["end"].max()
    return float(last - w["start_time"].iloc[0]), len(complete)


def run_windows() -> Windows:
    """The windows of the measured run (its protocol had no text/VAE window of its own)."""
    run = RUN_PROTOCOL
    return Windows(run["idle_s"], run["warmup"], run["warmup_s"], run["repeats"], run["min_window_s"],
                   run["min_window_s"])


def measured_times(timings: ShippedTimings, points: Sequence[grid.GridPoint]) -> pd.DataFrame:
    """``stage_times``' table for measured SD 1.5 points, from their measured call times."""
    rows = [{"model": p.model, "precision": p.precision, "resolution": p.resolution, "steps": p.steps,
             "cfg": p.cfg, "batch": p.batch, "text": timings.text_s, "vae": timings.vae_s[p.resolution],
             "image": timings.image_s[(p.resolution, p.steps)]} for p in points]
    frame = pd.DataFrame(rows)
    frame["denoise"] = frame["image"] - frame["text"] - frame["vae"]
    return frame


def in_windows_s(points: Sequence[grid.GridPoint], times: pd.DataFrame) -> float:
    """The run's job from its idle window to its last window (no start-up, no build)."""
    return job_seconds(points, times, run_windows())["total_s"] - STARTUP_S - BUILD_S


def validate(table: pd.DataFrame, model: TimeModel, timings: ShippedTimings) -> str:
    """Both halves of the estimate on the measured SD 1.5 job: its windows counted from its measured
    call times, and from the time model's."""
    span, n = observed_sd15_job()
    points = sorted(grid.GridPoint("sd15", "fp16", r, s, True, 1) for r, s in timings.image_s)[:n]
    return (f"check on the measured SD 1.5 job (run 2, {n} points, from its idle window to its last window): "
            f"{span:.0f} s measured; {in_windows_s(points, measured_times(timings, points)):.0f} s counted "
            f"from its measured call times, {in_windows_s(points, stage_times(points, table, model)):.0f} s "
            "from the time model's")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--command-s", type=float, default=600.0,
                        help="seconds one GPU command may run (the device tool's limit: 10 minutes)")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    protocol = measure.Protocol.from_config(config.get("protocol"))
    windows = Windows.of(protocol)
    points = grid.grid_points(config)
    timings = ShippedTimings.read()
    t0 = time.perf_counter()
    models = sorted({p.model for p in points} | {"sd15", FLUX_REFERENCE[0]})
    resolutions = sorted({p.resolution for p in points} | {r for r, _ in timings.image_s})
    table, _ = simulate.count_flops(models, resolutions)
    print(f"per-op counts of {len(models)} architectures on meta: {time.perf_counter() - t0:.1f} s")
    targets = calibration_targets(timings)
    model = calibrate(table, targets)
    print(f"H200 calibration ({len(targets)} times): dispatch {model.dispatch_s * 1e6:.1f} us per counted "
          f"kernel; compute {model.unet_flop_per_s / 1e12:.0f} TFLOP/s (U-Net), "
          f"{model.vae_flop_per_s / 1e12:.0f} (VAE), {model.transformer_flop_per_s / 1e12:.0f} (transformer)")
    fitted = timed(stage_times(sorted({p for p, _, _ in targets}), table, model), targets)
    errors = [f"{p.model} {p.resolution}/{p.steps} {what} {f / t - 1:+.0%}"
              for f, (p, what, t) in zip(fitted, targets, strict=True)]
    print("  fit, model / measured - 1: " + ", ".join(errors))
    print("  " + validate(table, model, timings))
    print(f"protocol: idle {windows.idle_s:g} s, image windows >= {windows.image_window_s:g} s, text/VAE "
          f"windows >= {windows.stage_window_s:g} s, {windows.repeats} repeats, warm-up {windows.warmup} "
          f"call(s) and {windows.warmup_s:g} s after a {COLD_CALL_S:g} s cold call")
    times = stage_times(points, table, model)
    groups = grid.measurement_groups(points)
    priority = grid.measure_priorities(config, groups)
    rows = []
    for (m, precision), group in sorted(groups.items(), key=lambda kv: -priority[kv[0]]):
        est = job_seconds(group, times, windows)
        every = job_seconds(group, times, windows, reuse_warm_shapes=False)["total_s"]
        rows.append({"model": m, "precision": precision, "points": len(group), **est,
                     "warm_every_point_s": every})
    frame = pd.DataFrame(rows)
    frame["fixed_share"] = frame["fixed_s"] / frame["total_s"]
    frame["cumulative_s"] = frame["total_s"].cumsum()
    frame["fits"] = np.where(frame["cumulative_s"] <= args.command_s, "yes", "no")
    print(f"jobs in measure_order (fits: done within one {args.command_s:.0f} s command, in this order):")
    print(frame[["model", "precision", "points", "startup_build_s", "idle_s", "text_vae_s", "warmup_s",
                 "fixed_s", "windows_s", "total_s", "fixed_share", "cumulative_s", "fits"]].to_string(
        index=False, float_format=lambda v: f"{v:.2f}" if v < 1 else f"{v:.1f}"))
    total, fixed = frame["total_s"].sum(), frame["fixed_s"].sum()
    print(f"grid: {len(points)} points in {len(frame)} jobs, estimated {total:.0f} s ({total / 60:.1f} min) "
          f"on one H200; fixed cost {fixed:.0f} s = {fixed / total:.1%} (goal <= 15%), "
          f"per job {frame['fixed_s'].min():.0f}-{frame['fixed_s'].max():.0f} s; warming up every point: "
          f"{frame['warm_every_point_s'].sum() / 60:.1f} min")
    done = frame[frame["fits"] == "yes"]
    print(f"one {args.command_s:.0f} s command measures {len(done)} of {len(frame)} jobs "
          f"({int(done['points'].sum())} of {len(points)} points, {done['total_s'].sum():.0f} s): "
          + (", ".join(f"{r.model} {r.precision}" for r in done.itertuples()) or "none"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
