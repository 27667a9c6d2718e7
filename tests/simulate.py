"""Measurement tables simulated from a known law, FOR TESTS AND BENCHMARKS ONLY.

The workflow never calls this module (it lives with the tests, outside the package): it fits
real measurements or nothing.
Tests use it to check that a fit recovers the law it was simulated from, and
the analysis benchmark to time the analysis before real data exist. FLOPs,
kernels and bytes are the real ones, counted on the meta device for the zoo's
architectures; only the joules are invented, and every simulated table says
so in its ``weights_source`` and ``flag`` columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from diffusion_energy.counting import flops
from diffusion_energy.counting.features import Point, point_features
from diffusion_energy.laws.roofline import inputs_from_ops
from diffusion_energy.models import zoo
from diffusion_energy.sources import dataset

SIMULATED = "SIMULATED (not a measurement)"


def count_flops(models: Iterable[str], resolutions: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """FLOPs table and per-op table of ``models`` (default CFG, batch 1) on meta."""
    tables, op_tables = [], []
    for name in models:
        spec = zoo.load_spec(name)
        res = [r for r in resolutions if r % spec.resolution_multiple == 0
               and (not spec.max_resolution or r <= spec.max_resolution)]
        f, o = flops.count_model_ops(spec, res, [spec.cfg], [1])
        tables.append(f)
        op_tables.append(o)
    return pd.concat(tables, ignore_index=True), pd.concat(op_tables, ignore_index=True)


def grid(
    flops_table: pd.DataFrame,
    steps: Sequence[int],
    gpus: Sequence[str] = ("h100",),
    fp32_models: Sequence[str] = (),
    fp32_resolutions: Sequence[int] | None = None,
) -> list[Point]:
    """Every (gpu, model, resolution, steps) in the FLOPs table at the model's default precision,
    plus fp32 points for ``fp32_models`` (at ``fp32_resolutions``, default all)."""
    points = []
    for (model, res, cfg, batch), _ in flops_table.groupby(["model", "resolution", "cfg", "batch"]):
        spec = zoo.load_spec(model)
        precisions = [spec.default_precision]
        if model in fp32_models and (fp32_resolutions is None or res in fp32_resolutions):
            precisions.append("fp32")
        for gpu in gpus:
            for s in steps:
                for prec in precisions:
                    points.append(Point(gpu, model, spec.architecture, prec, int(res), int(s), bool(cfg),
                                        int(batch)))
    return points


@dataclass(frozen=True)
class PaperTruth:
    """A paper-form law per model: log E = log_a + alpha log F + betas (natural logs, J)."""

    log_a: Mapping[str, float]
    alpha: Mapping[str, float]
    beta_dtype: float = 0.0
    beta_gpu: Mapping[str, float] = field(default_factory=dict)
    beta_res: float = 0.0
    sigma_log: float = 0.02

    def log_energy(self, frame: pd.DataFrame) -> np.ndarray:
        m = frame["model"].astype(str)
        res = frame["resolution"].astype(float).to_numpy()
        log_flops = np.log(frame["flops"].astype(float).to_numpy())
        return (m.map(self.log_a).to_numpy() + m.map(self.alpha).to_numpy() * log_flops
                + self.beta_dtype * (frame["precision"] == "fp32").to_numpy()
                + frame["gpu"].map(lambda g: self.beta_gpu.get(g, 0.0)).to_numpy()
                + self.beta_res * np.log(res * res / 256.0))


@dataclass(frozen=True)
class RooflineTruth:
    """Roofline constants of one GPU kind (see ``roofline``)."""

    compute_flop_per_s: float = 6e14
    #: fp32 matrix multiplies (on the fp32 units) and convolutions (TF32 tensor cores; attention at a
    #: third of it), at the half-precision rate's share of each datasheet peak (1000, 100, 500 TFLOP/s).
    compute_fp32_flop_per_s: float = 6e13
    compute_tf32_flop_per_s: float = 3e14
    bandwidth_byte_per_s: float = 1.6e12
    launch_s: float = 8e-6
    idle_power_w: float = 120.0
    static_power_w: float = 90.0
    energy_per_flop_j: float = 0.6e-12
    energy_per_byte_j: float = 30e-12
    sigma_log: float = 0.02
    #: Attention's exponentials per second (an H100's special-function units: ~3.9e12, FlashAttention-3).
    exponential_per_s: float = 3.9e12


def _measurement_rows(
    features: pd.DataFrame,
    stage_energy: Mapping[str, np.ndarray],
    stage_time: Mapping[str, np.ndarray],
    idle_w: np.ndarray,
    rng: np.random.Generator,
    sigma_log: float,
    repeats: int,
) -> pd.DataFrame:
    """Measurement rows (stage x repeat) whose whole image is the sum of the stages."""
    n = len(features)
    point_noise = np.exp(rng.normal(0, sigma_log, n))
    rows = []
    for r in range(repeats):
        jitter = point_noise * np.exp(rng.normal(0, 0.002, n))
        parts = {s: stage_energy[s] * jitter for s in ("text", "denoise", "vae")}
        times = {s: stage_time[s] for s in ("text", "denoise", "vae")}
        parts["image"] = sum(parts[s] for s in ("text", "denoise", "vae"))
        times["image"] = sum(times[s] for s in ("text", "denoise", "vae"))
        for s in dataset.STAGES:
            for i in range(n):
                f = features.iloc[i]
                rows.append({
                    "gpu": f["gpu"], "model": f["model"], "architecture": f["architecture"],
                    "precision": f["precision"], "resolution": int(f["resolution"]), "steps": int(f["steps"]),
                    "cfg": bool(f["cfg"]), "batch": int(f["batch"]), "stage": s, "repeat": r,
                    "status": "ok", "energy_status": "measured", "energy_j": parts[s][i],
                    "dynamic_energy_j": parts[s][i] - idle_w[i] * times[s][i], "time_s": times[s][i],
                    "idle_power_w": idle_w[i], "stage_sum_error": 0.0 if s == "image" else np.nan,
                    "flag": SIMULATED, "gpu_name": f"simulated {f['gpu']}", "weights_source": SIMULATED,
                })
    return dataset.conform(pd.DataFrame(rows))


def simulate_paper_law(
    points: Sequence[Point],
    flops_table: pd.DataFrame,
    truth: PaperTruth,
    rng: np.random.Generator,
    repeats: int = 3,
    mean_power_w: float = 450.0,
    idle_w: float = 120.0,
) -> pd.DataFrame:
    """Measurement rows whose whole-image energy follows ``truth`` exactly, times lognormal noise.

    Stages share the image's energy in proportion to their FLOPs; time is
    energy / ``mean_power_w``.
    """
    feats = point_features(points, flops_table)
    energy = np.exp(truth.log_energy(feats))
    total = feats["flops"].astype(float).to_numpy()
    stage_e = {s: energy * feats[f"{s}_flops"].astype(float).to_numpy() / total for s in ("text", "denoise",
                                                                                          "vae")}
    stage_t = {s: e / mean_power_w for s, e in stage_e.items()}
    return _measurement_rows(feats, stage_e, stage_t, np.full(len(feats), idle_w), rng, truth.sigma_log,
                             repeats)


def simulate_roofline(
    points: Sequence[Point],
    flops_table: pd.DataFrame,
    ops: pd.DataFrame,
    truth: Mapping[str, RooflineTruth],
    rng: np.random.Generator,
    repeats: int = 3,
) -> pd.DataFrame:
    """Measurement rows from the roofline model of each GPU kind in ``truth``, per stage."""
    feats = point_features(points, flops_table).assign(point_id=lambda f: np.arange(len(f)))
    n = len(feats)
    stage_e = {s: np.zeros(n) for s in ("text", "denoise", "vae")}
    stage_t = {s: np.zeros(n) for s in ("text", "denoise", "vae")}
    idle = feats["gpu"].map(lambda g: truth[g].idle_power_w).to_numpy(dtype=float)
    ids = feats["point_id"].to_numpy()
    for s in ("text", "denoise", "vae"):
        inputs = inputs_from_ops(feats, ops[ops["stage"] == s], flops_table)
        for gpu, c in truth.items():
            rows = np.flatnonzero(feats["gpu"].to_numpy() == gpu)
            if not len(rows):
                continue
            t = inputs.time_s(ids[rows], c.compute_flop_per_s, c.compute_fp32_flop_per_s,
                              c.bandwidth_byte_per_s, c.launch_s, exponentials=c.exponential_per_s,
                              tf32=c.compute_tf32_flop_per_s)
            # A FLOP costs what its units spend at their rate: an fp32 one on the fp32 units ten half ones.
            work = c.compute_flop_per_s * inputs.time_s(ids[rows], c.compute_flop_per_s,
                                                        c.compute_fp32_flop_per_s, np.inf, 0.0,
                                                        tf32=c.compute_tf32_flop_per_s)
            e = ((c.idle_power_w + c.static_power_w) * t + c.energy_per_flop_j * work
                 + c.energy_per_byte_j * inputs.total_bytes(ids[rows]))
            stage_e[s][rows], stage_t[s][rows] = e, t
    sigma = max(c.sigma_log for c in truth.values())
    return _measurement_rows(feats, stage_e, stage_t, idle, rng, sigma, repeats)
