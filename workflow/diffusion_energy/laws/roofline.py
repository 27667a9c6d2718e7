"""A roofline model of energy, shared by every architecture on one GPU kind.

    E = (P_idle + P_static) T_hat + e_flop FLOPs + e_byte bytes
    T_hat = sum over the ops of an image of max(FLOPs / R, bytes / W, t_launch)

``R`` is the compute rate (a separate ``R_fp32`` when fp32 points are in the
data), ``W`` the memory bandwidth, ``t_launch`` the cost of one kernel launch.
``P_idle`` is the measured idle power of the GPU kind (median over its points),
``P_static`` the extra power drawn while generating beyond idle (fitted, >= 0;
the ``idle_static`` variant fixes it to 0, the issue's exact form). For the
dynamic (idle-subtracted) energy the ``P_idle`` term is absent.

Why: energy per FLOP varies threefold between a launch-bound SD 1.5 at 512 px
and a compute-bound FLUX.1-dev at 1024 px; a FLOPs-only law cannot see kernel
launches, this model can. Its inputs come from the per-op table counted on the
meta device (``flops.count_model_ops``); without it, each stage is one "op"
with the stage's FLOPs, bytes and kernel count (``granularity`` "stage").

Fitting: for given (R, W, t_launch) energy is linear in (P_static, e_flop,
e_byte), solved by non-negative least squares on relative errors; the three
or four rates are fitted by ``scipy.optimize.least_squares`` (from a few
starting points) on the log errors of energy and of the measured time per
image together. Time is what pins the rates down: from energy alone, scaling
every rate by k and the power by 1/k predicts the same joules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .powerlaw import NotIdentifiable
from .targets import TARGETS, Prediction, Target

log = logging.getLogger(__name__)

VARIANTS = ("fitted_static", "idle_static")
KEYS = ["model", "resolution", "cfg", "batch"]

#: Bounds of the fitted rates: FLOP/s, B/s, s per kernel.
RATE_BOUNDS = {"compute": (1e11, 1e16), "bandwidth": (1e10, 1e14), "launch": (1e-7, 1e-3),
               "compute_fp32": (1e10, 1e16)}
#: Starting points (compute FLOP/s, bandwidth B/s, launch s): a few plausible GPUs.
STARTS = ((3e14, 2e12, 5e-6), (8e14, 3e12, 1.5e-5), (1e14, 8e11, 2e-6))
#: Starting fp32 rate relative to the half-precision one.
FP32_START_RATIO = 0.1


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RooflineInputs:
    """Per-point work, as entries ``(point_id, flops, bytes, kernels, executions, fp32)``.

    One entry is an op (or, at stage granularity, a whole stage) executed
    ``executions`` times per image; ``flops``/``bytes``/``kernels`` are per
    execution, bytes already scaled for the point's precision.
    """

    point_id: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray
    kernels: np.ndarray
    executions: np.ndarray
    fp32: np.ndarray
    granularity: str

    def subset(self, ids: Sequence[int] | np.ndarray) -> RooflineInputs:
        keep = np.isin(self.point_id, np.asarray(ids))
        return RooflineInputs(self.point_id[keep], self.flops[keep], self.bytes[keep], self.kernels[keep],
                              self.executions[keep], self.fp32[keep], self.granularity)

    def per_point(self, values: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Sum ``values`` (one per entry) per point, in the order of ``ids``."""
        ids = np.asarray(ids, dtype=int)
        if len(ids) == 0:
            return np.zeros(0)
        size = int(max(ids.max(), self.point_id.max() if len(self.point_id) else 0)) + 1
        return np.bincount(self.point_id, weights=values, minlength=size)[ids]

    def total_flops(self, ids: np.ndarray) -> np.ndarray:
        return self.per_point(self.flops * self.executions, ids)

    def total_bytes(self, ids: np.ndarray) -> np.ndarray:
        return self.per_point(self.bytes * self.executions, ids)

    def time_s(self, ids: np.ndarray, compute: float, compute_fp32: float, bandwidth: float,
               launch: float) -> np.ndarray:
        """Predicted GPU time per image of each point in ``ids``."""
        rate = np.where(self.fp32, compute_fp32, compute)
        per = np.maximum(np.maximum(self.flops / rate, self.bytes / bandwidth), self.kernels * launch)
        return self.per_point(per * self.executions, ids)


def _byte_scale(precision: pd.Series) -> np.ndarray:
    # Bytes were counted with 2-byte tensors; fp32 moves twice as many (as dataset.collect_energy).
    return np.where(precision.astype(str).to_numpy() == "fp32", 2.0, 1.0)


def inputs_from_ops(points: pd.DataFrame, ops: pd.DataFrame, flops_table: pd.DataFrame) -> RooflineInputs:
    """Op-level inputs for ``points`` (rows with ``point_id`` and the grid keys).

    ``ops`` is ``flops.OPS_COLUMNS`` (one call of a component); ``flops_table``
    gives each component's calls per image or per step. Raises ``ValueError``
    if a point has no ops.
    """
    calls = flops_table[KEYS + ["stage", "component", "calls", "per"]].drop_duplicates()
    o = ops.merge(calls, on=KEYS + ["stage", "component"], how="inner")
    pts = points[["point_id", *KEYS, "steps", "precision"]].copy()
    for frame in (pts, o):
        frame["cfg"] = frame["cfg"].astype(bool)
        frame["resolution"] = frame["resolution"].astype(int)
        frame["batch"] = frame["batch"].astype(int)
    m = pts.merge(o, on=KEYS, how="inner")
    missing = set(pts["point_id"]) - set(m["point_id"])
    if missing:
        lacking = pts[pts["point_id"].isin(missing)][KEYS].drop_duplicates().head(3).to_dict("records")
        raise ValueError(f"{len(missing)} point(s) have no per-op counts, e.g. {lacking}")
    # Per pipeline call (of ``batch`` images) -> per image.
    per_image = (np.where(m["per"].to_numpy() == "step", m["steps"].to_numpy(dtype=float), 1.0)
                 / m["batch"].to_numpy(dtype=float))
    return RooflineInputs(
        point_id=m["point_id"].to_numpy(dtype=int),
        flops=m["flops"].to_numpy(dtype=float),
        bytes=m["bytes"].to_numpy(dtype=float) * _byte_scale(m["precision"]),
        kernels=np.ones(len(m)),
        executions=m["count"].to_numpy(dtype=float) * m["calls"].to_numpy(dtype=float) * per_image,
        fp32=m["precision"].astype(str).to_numpy() == "fp32",
        granularity="op",
    )


def inputs_from_stages(points: pd.DataFrame) -> RooflineInputs:
    """Stage-level fallback: each stage one entry with its per-image FLOPs, bytes and kernels."""
    parts = []
    for stage in ("text", "denoise", "vae"):
        parts.append(pd.DataFrame({
            "point_id": points["point_id"].to_numpy(dtype=int),
            "flops": points[f"{stage}_flops"].to_numpy(dtype=float),
            "bytes": points[f"{stage}_bytes"].to_numpy(dtype=float),
            "kernels": points[f"{stage}_kernels"].to_numpy(dtype=float),
            "fp32": points["precision"].astype(str).to_numpy() == "fp32",
        }))
    e = pd.concat(parts, ignore_index=True)
    return RooflineInputs(e["point_id"].to_numpy(), e["flops"].to_numpy(), e["bytes"].to_numpy(),
                          e["kernels"].to_numpy(), np.ones(len(e)), e["fp32"].to_numpy(), "stage")


def build_inputs(points: pd.DataFrame, ops: pd.DataFrame | None, flops_table: pd.DataFrame | None
                 ) -> RooflineInputs:
    """Op-level inputs when the per-op table covers every point, else the stage-level fallback."""
    if ops is not None and flops_table is not None and len(ops) and len(points):
        try:
            return inputs_from_ops(points, ops, flops_table)
        except ValueError as exc:
            log.warning("roofline falls back to stage granularity: %s", exc)
    return inputs_from_stages(points)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class RooflineConstants:
    """The fitted constants of one GPU kind (``gpu`` "all" when fitted across kinds)."""

    gpu: str
    compute_flop_per_s: float
    compute_fp32_flop_per_s: float
    bandwidth_byte_per_s: float
    launch_s: float
    idle_power_w: float
    static_power_w: float
    energy_per_flop_j: float
    energy_per_byte_j: float
    sigma_log: float
    dof: int
    n_points: int
    precisions: tuple[str, ...]


@dataclass(frozen=True)
class RooflineFit:
    target: str
    variant: str
    granularity: str
    by_gpu: bool
    constants: tuple[RooflineConstants, ...]
    name: str = "roofline"
    scope: str = "pooled"
    kind: str = "roofline"

    @property
    def gpus(self) -> tuple[str, ...]:
        return tuple(c.gpu for c in self.constants)

    @property
    def models(self) -> tuple[str, ...]:
        return ()

    def for_gpu(self, gpu: str) -> RooflineConstants:
        for c in self.constants:
            if not self.by_gpu or c.gpu == gpu:
                return c
        raise KeyError(gpu)

    def _energy(self, c: RooflineConstants, t: np.ndarray, f: np.ndarray, b: np.ndarray) -> np.ndarray:
        idle = 0.0 if TARGETS[self.target].dynamic else c.idle_power_w
        return (idle + c.static_power_w) * t + c.energy_per_flop_j * f + c.energy_per_byte_j * b

    def predict(self, frame: pd.DataFrame, inputs: RooflineInputs, level: float) -> Prediction:
        """Energies of ``frame``'s points (``point_id`` into ``inputs``)."""
        ids = frame["point_id"].to_numpy(dtype=int)
        n = len(ids)
        mean, sigma, dof = np.full(n, np.nan), np.full(n, np.nan), np.ones(n)
        gpus = frame["gpu"].astype(str).to_numpy()
        for gpu in sorted(set(gpus)):
            rows = np.flatnonzero(gpus == gpu) if self.by_gpu else np.arange(n)
            c = self.for_gpu(gpu)
            sub = ids[rows]
            t = inputs.time_s(sub, c.compute_flop_per_s, c.compute_fp32_flop_per_s,
                              c.bandwidth_byte_per_s, c.launch_s)
            e = self._energy(c, t, inputs.total_flops(sub), inputs.total_bytes(sub))
            mean[rows] = np.maximum(e, 1e-9)
            sigma[rows], dof[rows] = c.sigma_log, c.dof
            if not self.by_gpu:
                break
        half = stats.t.ppf(0.5 + level / 2, np.maximum(dof, 1)) * sigma
        return Prediction(mean, mean * np.exp(-half), mean * np.exp(half), level)

    def time_s(self, frame: pd.DataFrame, inputs: RooflineInputs) -> np.ndarray:
        ids = frame["point_id"].to_numpy(dtype=int)
        out = np.full(len(ids), np.nan)
        for i, (pid, gpu) in enumerate(zip(ids, frame["gpu"].astype(str), strict=True)):
            c = self.for_gpu(gpu)
            out[i] = inputs.time_s(np.array([pid]), c.compute_flop_per_s, c.compute_fp32_flop_per_s,
                                   c.bandwidth_byte_per_s, c.launch_s)[0]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "variant": self.variant, "granularity": self.granularity,
                "by_gpu": self.by_gpu, "name": self.name, "scope": self.scope, "kind": self.kind,
                "constants": [asdict(c) for c in self.constants]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RooflineFit:
        consts = tuple(
            RooflineConstants(**{**{k: (np.nan if v is None else v) for k, v in c.items()},
                                 "precisions": tuple(c["precisions"])})
            for c in d["constants"])
        return cls(d["target"], d["variant"], d["granularity"], bool(d["by_gpu"]), consts, d["name"])


def _fit_one(
    gpu: str,
    frame: pd.DataFrame,
    inputs: RooflineInputs,
    target: Target,
    variant: str,
) -> RooflineConstants:
    ids = frame["point_id"].to_numpy(dtype=int)
    energy = target.energy_j(frame)
    has_fp32 = int((frame["precision"].astype(str) == "fp32").sum()) >= 2
    n_linear = 3 if variant == "fitted_static" else 2
    n_rates = 4 if has_fp32 else 3
    if len(ids) < n_linear + n_rates + 1:
        raise NotIdentifiable(f"{gpu}: {len(ids)} points for {n_linear + n_rates} roofline constants")
    idle = float(np.nanmedian(frame["idle_power_w"].astype(float))) if frame["idle_power_w"].notna().any() \
        else float("nan")
    if not target.dynamic and not np.isfinite(idle):
        raise NotIdentifiable(f"{gpu}: no idle power measured")
    idle_term = 0.0 if target.dynamic else idle
    flops_total = inputs.total_flops(ids)
    bytes_total = inputs.total_bytes(ids)

    def rates(z: np.ndarray) -> tuple[float, float, float, float]:
        r = np.exp(z)
        return r[0], (r[3] if has_fp32 else r[0]), r[1], r[2]

    def solve(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        compute, compute32, bandwidth, launch = rates(z)
        t = inputs.time_s(ids, compute, compute32, bandwidth, launch)
        cols = [t] if variant == "fitted_static" else []
        A = np.column_stack(cols + [flops_total, bytes_total]) / energy[:, None]
        b = 1.0 - idle_term * t / energy
        scale = np.linalg.norm(A, axis=0)
        scale[scale == 0] = 1.0
        u, _ = optimize.nnls(A / scale, b)
        u = u / scale
        linear = np.concatenate([[0.0] if variant != "fitted_static" else [], u])
        pred = idle_term * t + np.column_stack([t, flops_total, bytes_total]) @ linear
        return linear, pred

    time_meas = frame["time_s"].astype(float).to_numpy()
    use_time = bool(np.all(np.isfinite(time_meas) & (time_meas > 0)))
    if not use_time:
        log.warning("%s: measured times missing; the rates are fitted on energy alone, where static "
                    "power and the rates trade off", gpu)

    def resid(z: np.ndarray) -> np.ndarray:
        r = np.log(np.maximum(solve(z)[1], 1e-12) / energy)
        if not use_time:
            return r
        t = inputs.time_s(ids, *rates(z))
        return np.concatenate([r, np.log(t / time_meas)])

    names = ["compute", "bandwidth", "launch"] + (["compute_fp32"] if has_fp32 else [])
    lo = np.log([RATE_BOUNDS[k][0] for k in names])
    hi = np.log([RATE_BOUNDS[k][1] for k in names])
    best = None
    for start in STARTS:
        z0 = np.log(list(start) + ([start[0] * FP32_START_RATIO] if has_fp32 else []))
        sol = optimize.least_squares(resid, np.clip(z0, lo, hi), bounds=(lo, hi), diff_step=1e-4,
                                     x_scale=1.0, max_nfev=400)
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    linear, _ = solve(best.x)
    compute, compute32, bandwidth, launch = rates(best.x)
    r = resid(best.x)[: len(ids)]
    dof = max(len(ids) - n_linear - (0 if use_time else n_rates), 1)
    return RooflineConstants(
        gpu=gpu, compute_flop_per_s=float(compute),
        compute_fp32_flop_per_s=float(compute32) if has_fp32 else float("nan"),
        bandwidth_byte_per_s=float(bandwidth), launch_s=float(launch), idle_power_w=idle,
        static_power_w=float(linear[0]), energy_per_flop_j=float(linear[1]),
        energy_per_byte_j=float(linear[2]), sigma_log=float(np.sqrt((r ** 2).sum() / dof)), dof=dof,
        n_points=len(ids), precisions=tuple(sorted(set(frame["precision"].astype(str)))),
    )


def fit_roofline(
    frame: pd.DataFrame,
    inputs: RooflineInputs,
    target: Target,
    variant: str = "fitted_static",
    by_gpu: bool = True,
    name: str = "roofline",
) -> RooflineFit:
    """Fit the constants of each GPU kind (or one set across kinds, ``by_gpu=False``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown roofline variant {variant!r}; allowed: {VARIANTS}")
    rows = frame[target.valid(frame)]
    if rows.empty:
        raise NotIdentifiable("no points")
    if by_gpu:
        consts = tuple(_fit_one(str(g), part, inputs, target, variant)
                       for g, part in rows.groupby("gpu", sort=True))
    else:
        consts = (_fit_one("all", rows, inputs, target, variant),)
    return RooflineFit(target.name, variant, inputs.granularity, by_gpu, consts, name)
