"""A roofline model of energy: time from every kernel's work, energy from time, FLOPs and bytes.

    T_hat = sum over the kernels of an image of max(g * FLOPs / R_class, g * bytes / W, t_launch,source)
    E     = P_idle * T_hat + P_ref * (pi_static * T_hat + pi_flop * FLOPs / R_ref + pi_byte * bytes / W_ref
                                     + pi_source * T_hat)

``P_idle`` is the measured idle power where the data have it (this workflow's);
where they do not (published sources), ``pi_static`` carries all static power.
The ``idle_static`` variant fixes ``pi_static`` to 0 (the issue's exact form).

Each kernel runs at the slowest of its roofs: compute at the rate of its class
(matrix multiplies, fused attention and convolutions reach different fractions
of the peak; kernels without FLOPs are memory-bound; a fused attention also
pays one exponential per score, FLOPs / (4 x head dimension), at a rate of its
own), memory at the bandwidth, or the cost of launching it from Python, which
depends on the software stack (a data source). Rates are fractions (efficiencies) of the GPU's datasheet
peaks and powers are in units of its power limit, so one fit spans GPU kinds
and a kind nobody measured is predicted from its datasheet (``by_gpu=False``);
fitted per GPU kind (``by_gpu=True``) the datasheet only sets the units.
Across kinds, time follows a trend in the datasheet peak (fitted first, every
kind's factor at 1) and each measured kind a factor around it; no kind's average
power exceeds its power limit (energy capped where the kind's times were fitted,
time stretched where it is known by its datasheet only).

Physics bounds every rate: ``g`` (a software stack's time factor times a GPU
kind's factor and trend) slows a kernel's work, never its launch (a property of
the host and the stack), and no kernel runs faster than its GPU's datasheet,
whatever the fitted efficiencies (at most 1), factors and trend: its FLOPs take
at least FLOPs / peak, its bytes at least bytes / bandwidth, its exponentials at
least scores / (``SOFTMAX_MAX`` x peak).

Why: energy per FLOP varies threefold between a launch-bound SD 1.5 at batch 1
and a compute-bound FLUX.1-dev; a FLOPs-only law cannot see kernel launches, nor
that a batch shares them, this model can. Its inputs come from the per-op table
counted on the meta device (``counting.flops``); without it, each stage is one
"op" with the stage's FLOPs, bytes and kernel count (``granularity`` "stage").

Fitting: the rates are fitted (``scipy.optimize.least_squares``, from a few
starting points) on the log errors of the measured time per image; for those
rates the energy is linear in the ``pi`` coefficients, solved by non-negative
least squares on relative errors. Time is what pins the rates down: from energy
alone, scaling every rate by k and every power by 1/k predicts the same joules.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..counting.op_names import attention_head_dim
from ..sources import dataset
from ..sources.gpu_datasheets import TF32_PER_HALF
from .powerlaw import NotIdentifiable
from .quantiles import t_ppf
from .targets import TARGETS, Prediction, Target

log = logging.getLogger(__name__)

VARIANTS = ("fitted_static", "idle_static")
KEYS = ["model", "resolution", "cfg", "batch"]
#: Kernel classes with their own compute efficiency; "other" kernels (no FLOPs) are memory-bound.
OP_CLASSES = ("matmul", "attention", "conv", "other")
#: Units of a GPU kind without a datasheet (a per-kind fit only: they cancel there).
NOMINAL = {"peak_flop_s": 1e15, "peak_half_flop_s": 1e15, "peak_fp32_flop_s": 1e14, "peak_tf32_flop_s": 5e14,
           "peak_bandwidth_byte_s": 2e12, "power_limit_sheet_w": 700.0}
#: Where an fp32 kernel runs under PyTorch's defaults (PyTorch notes, "CUDA semantics", TensorFloat-32
#: on Ampere and later devices: ``torch.backends.cuda.matmul.allow_tf32`` defaults to False since
#: PyTorch 1.12, ``torch.backends.cudnn.allow_tf32`` to True): matrix multiplies on the fp32 (non-tensor)
#: units at the datasheet's fp32 peak, convolutions on the TF32 tensor cores, and the fused attention SDPA
#: picks for fp32 (the memory-efficient kernel: FlashAttention takes half precision only) as three TF32
#: products per fp32 product on compute capability 8.0 and later (CUTLASS's ``OpMultiplyAddFastF32`` in
#: PyTorch's ``mem_eff_attention/gemm_kernel_utils.h``): a third of the TF32 peak.
FP32_ATTENTION_TF32_PASSES = 3.0
#: Bounds of the fitted quantities: efficiencies (fractions of a datasheet peak: never above 1), launch
#: cost (s), time factor.
EFFICIENCY_BOUNDS = (1e-3, 1.0)
#: Attention's exponentials run on the special-function units, far slower than the tensor cores: 16
#: results per clock per SM (the CUDA C++ Programming Guide's arithmetic-instruction throughput table,
#: compute capability 8.x-10.x), 1/128 of an A100's dense fp16 tensor peak (108 SMs x 1.41 GHz x 16 =
#: 2.4 T/s against 312 TFLOP/s), 1/256 of an H100's (FlashAttention-3, Shah et al. 2024: 3.9 TFLOPS of
#: exponential against 989 TFLOPS of matmul). No kind runs them faster than the loosest of these.
SOFTMAX_MAX = 1.0 / 128
SOFTMAX_BOUNDS = (1e-4, SOFTMAX_MAX)
LAUNCH_BOUNDS = (1e-7, 1e-3)
FACTOR_BOUNDS = (0.2, 5.0)
#: The unit of the peak-rate trend across GPU kinds, FLOP/s, and the bounds of its exponent.
PEAK_UNIT = 1e15
#: The unit of the energy trend across GPU kinds (datasheet J/FLOP), and the exponents tried.
JPF_UNIT = 1e-12
ENERGY_EXPONENTS = np.linspace(-0.6, 0.6, 25)
PEAK_EXPONENT_BOUNDS = (-1.0, 1.0)
#: Weight of the pull of log time factors towards 0 (against the log errors of the times).
FACTOR_RIDGE = 0.05
#: Relative tolerances of the fit (log rates): 1e-6 gives the same held-out predictions as scipy's
#: default 1e-8 to four digits in half the evaluations.
TOLERANCE = 1e-6
#: Starting points, tried in turn until one converges: (efficiency of compute, of memory, launch cost in s).
STARTS = ((0.5, 0.6, 2e-5), (0.2, 0.3, 5e-6), (0.8, 1.0, 4e-5))


def op_classes(op: pd.Series, flops: np.ndarray) -> np.ndarray:
    """Index into ``OP_CLASSES`` of every op: ``sdpa`` attention, convolutions, other FLOPs, none."""
    name = op.astype(str).to_numpy()
    conv = np.char.find(name.astype(str), "convolution") >= 0
    attention = np.char.startswith(name.astype(str), "sdpa")
    return np.where(attention, 1, np.where(conv, 2, np.where(flops > 0, 0, 3)))


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RooflineInputs:
    """Per-point work, as entries ``(point_id, flops, bytes, kernels, executions, fp32, op_class)``.

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
    op_class: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    #: Head dimension of each fused attention entry (NaN elsewhere, and where the table has none).
    head_dim: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if len(self.op_class) != len(self.point_id):
            object.__setattr__(self, "op_class", np.where(self.flops > 0, 0, 3))
        if len(self.head_dim) != len(self.point_id):
            object.__setattr__(self, "head_dim", np.full(len(self.point_id), np.nan))

    def subset(self, ids: np.ndarray) -> RooflineInputs:
        """The entries of the points ``ids`` only (the same point ids): what a fit on those points reads,
        so that its every pass over the entries skips the other points'."""
        keep = np.isin(self.point_id, np.asarray(ids, dtype=int))
        return RooflineInputs(self.point_id[keep], self.flops[keep], self.bytes[keep], self.kernels[keep],
                              self.executions[keep], self.fp32[keep], self.granularity, self.op_class[keep],
                              self.head_dim[keep])

    @functools.cached_property
    def _scores(self) -> np.ndarray:
        d = self.head_dim
        known = (self.op_class == 1) & np.isfinite(d) & (d > 0)
        return np.where(known, self.flops / (4.0 * np.where(known, d, 1.0)), 0.0)

    def scores(self) -> np.ndarray:
        """Attention scores (one exponential each) per execution of each entry: FLOPs / (4 x head dim)
        for fused attention with a known head dimension, else 0."""
        return self._scores

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

    def class_flops(self, ids: np.ndarray) -> np.ndarray:
        """FLOPs per image of each op class: an array (points, classes)."""
        return np.column_stack([self.per_point(np.where(self.op_class == k, self.flops, 0) * self.executions,
                                               ids) for k in range(len(OP_CLASSES))])

    def time_s(self, ids: np.ndarray, compute: float | np.ndarray, compute_fp32: float | np.ndarray,
               bandwidth: float | np.ndarray, launch: float | np.ndarray,
               attention: float | np.ndarray | None = None, conv: float | np.ndarray | None = None,
               exponentials: float | np.ndarray | None = None, tf32: float | np.ndarray | None = None
               ) -> np.ndarray:
        """Predicted GPU time per image of each point in ``ids``.

        Every rate and the launch cost is a number, or an array indexed by point id
        (each point at its own GPU's rates and its source's launch cost); ``exponentials`` (per s) adds
        fused attention's exponentials to its compute time. ``tf32``: the TF32 tensor rate at which fp32
        convolutions run, and fp32 attention at a ``FP32_ATTENTION_TF32_PASSES`` th of it (else every fp32
        FLOP at ``compute_fp32``).
        """
        def at(value: float | np.ndarray) -> Any:
            return value[self.point_id] if isinstance(value, np.ndarray) else value

        rates = [at(compute), at(compute if attention is None else attention),
                 at(compute if conv is None else conv), at(compute)]
        half = np.choose(self.op_class, [np.broadcast_to(r, self.flops.shape) for r in rates])
        fp32 = np.broadcast_to(at(compute_fp32), self.flops.shape)
        if tf32 is not None:
            t32 = np.broadcast_to(at(tf32), self.flops.shape)
            fp32 = np.choose(self.op_class, [fp32, t32 / FP32_ATTENTION_TF32_PASSES, t32, fp32])
        rate = np.where(self.fp32, fp32, half)
        exps = self.scores() / at(exponentials) if exponentials is not None else 0.0
        compute_t = self.flops / rate + exps
        per = np.maximum(np.maximum(compute_t, self.bytes / at(bandwidth)), self.kernels * at(launch))
        return self.per_point(per * self.executions, ids)


def _byte_scale(precision: pd.Series) -> np.ndarray:
    # Bytes were counted with 2-byte tensors; fp32 moves twice as many (as dataset.per_image_costs).
    return np.where(precision.astype(str).to_numpy() == "fp32", 2.0, 1.0)


def inputs_from_ops(points: pd.DataFrame, ops: pd.DataFrame, flops_table: pd.DataFrame) -> RooflineInputs:
    """Op-level inputs for ``points`` (rows with ``point_id`` and the grid keys).

    ``ops`` is ``flops.OPS_COLUMNS`` (one call of a component); ``flops_table``
    gives each component's calls per pipeline call or per step. Raises ``ValueError``
    if a point has no ops.
    """
    calls = flops_table[KEYS + ["stage", "component", "calls", "per"]].drop_duplicates()
    o = ops.merge(calls, on=KEYS + ["stage", "component"], how="inner")
    pts = points[["point_id", *KEYS, "steps", "precision"]].assign(
        denoiser_evaluations=dataset.denoiser_evaluations(points))
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
    # A per-step call runs once per denoiser evaluation (steps + 1 for PNDM), as dataset.per_image_costs.
    per_image = (np.where(m["per"].to_numpy() == "step", m["denoiser_evaluations"].to_numpy(dtype=float), 1.0)
                 / m["batch"].to_numpy(dtype=float))
    flops = m["flops"].to_numpy(dtype=float)
    return RooflineInputs(
        point_id=m["point_id"].to_numpy(dtype=int),
        flops=flops,
        bytes=m["bytes"].to_numpy(dtype=float) * _byte_scale(m["precision"]),
        kernels=np.ones(len(m)),
        executions=m["count"].to_numpy(dtype=float) * m["calls"].to_numpy(dtype=float) * per_image,
        fp32=m["precision"].astype(str).to_numpy() == "fp32",
        granularity="op",
        op_class=op_classes(m["op"], flops),
        head_dim=np.array([np.nan if d is None else float(d)
                           for d in map(attention_head_dim, m["op"].astype(str))]),
    )


def as_fp32(inputs: RooflineInputs) -> RooflineInputs:
    """Half-precision ``inputs`` as the same work in fp32: every kernel fp32, twice the bytes."""
    if inputs.fp32.any():
        raise ValueError("as_fp32 takes half-precision inputs")
    return RooflineInputs(inputs.point_id, inputs.flops, inputs.bytes * 2.0, inputs.kernels,
                          inputs.executions, np.ones(len(inputs.fp32), dtype=bool), inputs.granularity,
                          inputs.op_class, inputs.head_dim)


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
class Terms:
    """The roofline model's optional terms, all on by default. ``benchmarks/law_terms.py`` judges each by
    the held-out error of the model without it: a term stays where it earns its place."""

    #: Attention and convolutions at rates of their own (else every FLOP at the matrix-multiply rate).
    class_efficiencies: bool = True
    #: Attention's exponentials at a fitted rate (else at the fastest the hardware allows, SOFTMAX_MAX).
    exponentials: bool = True
    #: A time factor per measured GPU kind, around the trend (across kinds only).
    kind_factors: bool = True
    #: Time as a power of the datasheet peak across kinds (across kinds only).
    trend: bool = True
    #: Energy as a power of the datasheet J/FLOP across kinds, beyond the power limit (across kinds only).
    energy_trend: bool = True
    #: A time factor per software stack (data source) beside its launch cost.
    stack_factors: bool = True



@dataclass(frozen=True)
class RooflineConstants:
    """The fitted constants of one GPU kind (``gpu`` "all": one fit across kinds, in datasheet units).

    Efficiencies are fractions of the reference peaks; ``pi_*`` are in units of
    the reference power limit (``reference``: the kind's datasheet, or nominal
    units where it has none; for "all", each point's own datasheet).
    """

    gpu: str
    efficiency: Mapping[str, float]
    launch_s: Mapping[str, float]
    time_factor: Mapping[str, float]
    pi_static: float
    pi_flop: float
    pi_byte: float
    pi_source: Mapping[str, float]
    idle_power_w: float
    reference: Mapping[str, float]
    source_reference: str
    sigma_log: float
    dof: int
    n_points: int
    precisions: tuple[str, ...]
    sources: tuple[str, ...]
    time_fitted: bool = True
    #: Time factor of each GPU kind in a fit across kinds (how far it runs from the trend below); a kind
    #: outside the fit gets 1, the trend alone.
    gpu_factor: Mapping[str, float] = field(default_factory=dict)
    #: Time scales as (peak FLOP/s / 1 PFLOP/s) ** peak_exponent across kinds: a newer, faster GPU reaches
    #: a smaller share of its datasheet peak on the same work (0: its datasheet says it all).
    peak_exponent: float = 0.0
    #: Energy scales as (datasheet J/FLOP / 1 pJ) ** energy_exponent across kinds, beyond the power limit
    #: that sets the units (0: the datasheet's power limit says it all).
    energy_exponent: float = 0.0

    def energy_factor(self, j_per_flop: np.ndarray) -> np.ndarray:
        if self.energy_exponent == 0.0:
            return np.ones(len(j_per_flop))
        return (np.asarray(j_per_flop, float) / JPF_UNIT) ** self.energy_exponent

    def gpu_time_factor(self, gpu: str, peak_flop_s: float) -> float:
        """How much slower than the datasheet ``gpu`` runs: its own factor times the trend; a kind never
        measured gets the typical (geometric mean) factor of the measured ones, not 1: the factors and
        the efficiencies share one scale, so 1 is not the typical kind's."""
        trend = (peak_flop_s / PEAK_UNIT) ** self.peak_exponent if np.isfinite(peak_flop_s) else 1.0
        typical = float(np.exp(np.mean(np.log(list(self.gpu_factor.values()))))) if self.gpu_factor else 1.0
        return float(self.gpu_factor.get(gpu, typical)) * trend

    # Absolute figures at the reference (what the roofline table reports).
    @property
    def compute_flop_per_s(self) -> float:
        return self.efficiency["matmul"] * self.reference["peak_flop_s"]

    @property
    def compute_fp32_flop_per_s(self) -> float:
        eff = self.efficiency.get("fp32")
        return eff * self.reference["peak_fp32_flop_s"] if eff is not None else float("nan")

    @property
    def bandwidth_byte_per_s(self) -> float:
        return self.efficiency["memory"] * self.reference["peak_bandwidth_byte_s"]

    @property
    def static_power_w(self) -> float:
        return self.pi_static * self.reference["power_limit_sheet_w"]

    @property
    def energy_per_flop_j(self) -> float:
        return self.pi_flop * self.reference["power_limit_sheet_w"] / self.reference["peak_flop_s"]

    @property
    def energy_per_byte_j(self) -> float:
        return self.pi_byte * self.reference["power_limit_sheet_w"] / self.reference["peak_bandwidth_byte_s"]

    @property
    def launch_default_s(self) -> float:
        return self.launch_s[self.source_reference]


def _scales(frame: pd.DataFrame, datasheet_units: bool, reference: Mapping[str, float] | None
            ) -> dict[str, np.ndarray]:
    """Per point (indexed like ``frame``): the reference peaks and power limit it is measured in."""
    out = {}
    for col in NOMINAL:
        if datasheet_units:
            out[col] = frame[col].astype(float).to_numpy() if col in frame else np.full(len(frame), np.nan)
        else:
            out[col] = np.full(len(frame), float((reference or NOMINAL).get(col, np.nan)))
    # Tables and laws written before the half-precision and TF32 columns: a half-precision point's peak
    # is its half peak, and TF32 the datasheets' usual share of it.
    half = out["peak_half_flop_s"]
    out["peak_half_flop_s"] = np.where(np.isfinite(half), half, out["peak_flop_s"])
    tf32 = out["peak_tf32_flop_s"]
    out["peak_tf32_flop_s"] = np.where(np.isfinite(tf32), tf32, TF32_PER_HALF * out["peak_half_flop_s"])
    return out


def _point_array(ids: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Values per point, as an array indexed by point id (for ``RooflineInputs.time_s``)."""
    arr = np.full(size, np.nan)
    arr[ids] = values
    return arr


#: Index of each efficiency in ``_TimeModel``'s vector: the half-precision classes, then the same in fp32.
_EFF_ORDER = ("matmul", "attention", "conv", "other",
              "fp32_matmul", "fp32_attention", "fp32_conv", "fp32_other")


def _efficiency_of(column: str, fitted: Any) -> str:
    """The fitted efficiency a column of ``_EFF_ORDER`` runs at: a class not fitted (and "other") at the
    matrix multiplies'; an fp32 class at the fp32 efficiency where fp32 points were fitted, else at its
    half-precision class's, each against its own peak (the half-precision efficiencies carried over)."""
    if column.startswith("fp32_"):
        if "fp32" in fitted:
            return "fp32"
        column = column[len("fp32_"):]
    return column if column in fitted and column != "other" else "matmul"


@dataclass(frozen=True)
class TimeParts:
    """Predicted time per image of some points, and its derivatives (per point) with respect to the log of
    every rate: what the fit's analytic Jacobian is assembled from."""

    time_s: np.ndarray
    d_efficiency: np.ndarray  # (points, len(_EFF_ORDER))
    d_memory: np.ndarray
    d_softmax: np.ndarray
    d_launch: np.ndarray  # (points, sources)
    d_slowdown: np.ndarray


class _TimeModel:
    """The predicted time per image of some points, for given efficiencies, launch costs and slowdowns.

    Every kernel runs at the slowest of three roofs: its FLOPs at its class's rate (and a fused attention's
    exponentials at theirs), its bytes at the memory bandwidth, or its launch from the host. A GPU kind's
    (or software stack's) slowdown scales the first two, never the launch (a property of the host and the
    software stack), and no kernel runs faster than the datasheet allows: its FLOPs never faster than the
    peak, its bytes never faster than the bandwidth, its exponentials never faster than ``SOFTMAX_MAX`` of
    the peak, whatever the fitted efficiencies and slowdowns.

    The fitting loop's hot path: each kernel's FLOPs and bytes are divided by its point's reference peaks
    once, so an evaluation is a few vector operations and one ``bincount`` over the kernels of just these
    points; the derivatives cost a few more ``bincount`` s.
    """

    def __init__(self, inputs: RooflineInputs, ids: np.ndarray, scales: Mapping[str, np.ndarray],
                 source_codes: np.ndarray) -> None:
        order = np.argsort(ids)
        keep = np.isin(inputs.point_id, ids)
        pos = order[np.searchsorted(ids[order], inputs.point_id[keep])]
        fp32 = inputs.fp32[keep]
        klass = inputs.op_class[keep]
        half = scales.get("peak_half_flop_s", scales["peak_flop_s"])[pos]
        tf32 = scales["peak_tf32_flop_s"][pos] if "peak_tf32_flop_s" in scales else TF32_PER_HALF * half
        fp32_peak = scales["peak_fp32_flop_s"][pos]
        # Each fp32 kernel against the peak of the units it runs on (FP32_ATTENTION_TF32_PASSES).
        fp32_ref = np.choose(klass, [fp32_peak, tf32 / FP32_ATTENTION_TF32_PASSES, tf32, fp32_peak])
        compute_ref = np.where(fp32, fp32_ref, half)
        self.pos, self.n = pos, len(ids)
        self.flops_s = inputs.flops[keep] / compute_ref  # seconds at the peak
        # Exponentials run on the special-function units whatever the precision: against the half peak
        # that SOFTMAX_MAX is a share of.
        self.scores_s = inputs.scores()[keep] / half
        self.exps_floor_s = self.scores_s / SOFTMAX_MAX
        self.bytes_s = inputs.bytes[keep] / scales["peak_bandwidth_byte_s"][pos]
        self.kernels = inputs.kernels[keep]
        self.executions = inputs.executions[keep]
        self.klass = np.where(fp32, klass + 4, klass)
        self.source = np.asarray(source_codes)[pos]

    def _roofs(self, efficiency: np.ndarray, memory: float, launch: np.ndarray, softmax: float,
               slowdown: np.ndarray | float) -> tuple[np.ndarray, ...]:
        g = slowdown[self.pos] if isinstance(slowdown, np.ndarray) else slowdown
        flops = g * self.flops_s / efficiency[self.klass]
        exps = g * self.scores_s / softmax
        mem = g * self.bytes_s / memory
        # No kernel faster than the datasheet: each roof at least its work at the peak rate.
        compute = np.maximum(flops, self.flops_s)
        compute += np.maximum(exps, self.exps_floor_s)
        memory_t = np.maximum(mem, self.bytes_s)
        launch_t = self.kernels * launch[self.source]
        per = np.maximum(np.maximum(compute, memory_t), launch_t)
        return per, compute, memory_t, launch_t, flops, exps, mem

    def ideal_compute_s(self) -> np.ndarray:
        """Time per image of each point's FLOPs at the peaks they run at: the work that dynamic energy
        per FLOP is counted on (an fp32 FLOP costs what the units it runs on spend at their peak)."""
        return np.bincount(self.pos, weights=self.flops_s * self.executions, minlength=self.n)

    def __call__(self, efficiency: np.ndarray, memory: float, launch: np.ndarray,
                 softmax: float = np.inf, slowdown: np.ndarray | float = 1.0) -> np.ndarray:
        """Time per image of each point; ``efficiency`` in ``_EFF_ORDER``, ``launch`` per source code,
        ``softmax`` the share of the peak at which attention's exponentials run (after its FLOPs),
        ``slowdown`` per point (indexed like ``ids``) or one number: how much slower than its efficiencies
        the point's GPU kind and software stack run their kernels."""
        per = self._roofs(efficiency, memory, launch, softmax, slowdown)[0]
        return np.bincount(self.pos, weights=per * self.executions, minlength=self.n)

    def parts(self, efficiency: np.ndarray, memory: float, launch: np.ndarray, softmax: float,
              slowdown: np.ndarray | float) -> TimeParts:
        """The time and its derivatives with respect to the log of every rate and of the slowdown."""
        per, compute, memory_t, launch_t, flops, exps, mem = self._roofs(efficiency, memory, launch, softmax,
                                                                          slowdown)
        x = self.executions
        on_compute = (compute >= memory_t) & (compute >= launch_t)
        on_memory = ~on_compute & (memory_t >= launch_t)
        on_launch = ~on_compute & ~on_memory
        # d per / d log(slowdown) of each roof, where it binds and is above its datasheet floor.
        d_flops = np.where(on_compute & (flops > self.flops_s), flops, 0.0) * x
        d_exps = np.where(on_compute & (exps > self.exps_floor_s), exps, 0.0) * x
        d_mem = np.where(on_memory & (mem > self.bytes_s), mem, 0.0) * x

        def total(w: np.ndarray) -> np.ndarray:
            return np.bincount(self.pos, weights=w, minlength=self.n)

        def by(column: np.ndarray, width: int, w: np.ndarray) -> np.ndarray:
            """Sums of ``w`` per (point, ``column``): an array (points, width)."""
            return np.bincount(self.pos * width + column, weights=w, minlength=self.n * width).reshape(
                self.n, width)

        d_eff = -by(self.klass, len(_EFF_ORDER), d_flops)
        d_launch = by(self.source, len(launch), np.where(on_launch, launch_t, 0.0) * x)
        return TimeParts(total(per * x), d_eff, -total(d_mem), -total(d_exps), d_launch,
                         total(d_flops + d_exps + d_mem))


def _efficiency_vector(eff: Mapping[str, float]) -> np.ndarray:
    """Efficiencies in ``_EFF_ORDER`` (``_efficiency_of``)."""
    return np.array([eff[_efficiency_of(k, eff)] for k in _EFF_ORDER])


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

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(sorted({p for c in self.constants for p in c.precisions}))

    def for_gpu(self, gpu: str) -> RooflineConstants:
        for c in self.constants:
            if not self.by_gpu or c.gpu == gpu:
                return c
        raise KeyError(gpu)

    def _parts(self, c: RooflineConstants, frame: pd.DataFrame, inputs: RooflineInputs
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(time, ideal compute time, ideal memory time, power limit, source, peak FLOP/s) per point."""
        ids = frame["point_id"].to_numpy(dtype=int)
        scales = _scales(frame, not self.by_gpu, c.reference)
        src = frame["source"].astype(str).to_numpy() if "source" in frame else np.full(len(frame), "")
        known = np.array([s if s in c.launch_s else c.source_reference for s in src])
        levels = sorted(c.launch_s)
        codes = np.array([levels.index(s) for s in known], dtype=int)
        model = _TimeModel(inputs, ids, scales, codes)
        # The software stack's and the GPU kind's slowdowns scale the kernels' work, never the launches.
        slowdown = np.array([c.time_factor.get(s, 1.0) for s in known])
        if c.gpu_factor:
            # A kind's factor and trend are the kind's (fitted on its half peak), whatever the precision.
            slowdown = slowdown * np.array([c.gpu_time_factor(g, p) for g, p in zip(
                frame["gpu"].astype(str), scales["peak_half_flop_s"], strict=True)])
        t = model(_efficiency_vector(c.efficiency), c.efficiency["memory"],
                  np.array([c.launch_s[s] for s in levels]), c.efficiency.get("softmax", np.inf), slowdown)
        ideal_c = model.ideal_compute_s()
        ideal_b = inputs.total_bytes(ids) / scales["peak_bandwidth_byte_s"]
        return t, ideal_c, ideal_b, scales["power_limit_sheet_w"], known, scales["peak_half_flop_s"]

    def time_s(self, frame: pd.DataFrame, inputs: RooflineInputs) -> np.ndarray:
        out = np.full(len(frame), np.nan)
        for rows, c in self._groups(frame):
            out[rows] = self._parts(c, frame.iloc[rows], inputs)[0]
        return out

    def _groups(self, frame: pd.DataFrame) -> list[tuple[np.ndarray, RooflineConstants]]:
        if not self.by_gpu:
            return [(np.arange(len(frame)), self.constants[0])]
        gpus = frame["gpu"].astype(str).to_numpy()
        out = []
        for gpu in sorted(set(gpus)):
            try:
                out.append((np.flatnonzero(gpus == gpu), self.for_gpu(gpu)))
            except KeyError:
                raise NotIdentifiable(f"the roofline model was fitted per GPU kind and has no constants for "
                                      f"{gpu} (fitted: {', '.join(self.gpus)})") from None
        return out

    def predict(self, frame: pd.DataFrame, inputs: RooflineInputs, level: float) -> Prediction:
        """Energies of ``frame``'s points (``point_id`` into ``inputs``)."""
        n = len(frame)
        mean, sigma, dof = np.full(n, np.nan), np.full(n, np.nan), np.ones(n)
        dynamic = TARGETS[self.target].dynamic
        for rows, c in self._groups(frame):
            part = frame.iloc[rows]
            if not self.by_gpu and not np.isfinite(part["peak_flop_s"].astype(float)).all():
                raise NotIdentifiable("a GPU kind without a datasheet: the shared roofline model sees a GPU "
                                      "only through its datasheet")
            t, ic, ib, plimit, known, ps = self._parts(c, part, inputs)
            src_power = np.array([c.pi_source.get(s, 0.0) for s in known])
            unit = plimit * c.energy_factor(plimit / ps)
            work = unit * (c.pi_flop * ic + c.pi_byte * ib)  # energy of the work itself, J
            static = unit * (c.pi_static + src_power)  # power drawn for as long as it runs, W
            if np.isfinite(c.idle_power_w) and not dynamic:
                idle = part["idle_power_w"].astype(float).to_numpy() if "idle_power_w" in part else \
                    np.full(len(part), np.nan)
                static = static + np.where(np.isfinite(idle), idle, c.idle_power_w)
            e = work + static * t
            if "power_limit_sheet_w" in part:
                # A GPU's average power never exceeds its power limit (FLUX.1-dev at 1024 px runs at it).
                # Where the kind's times were fitted, the time holds and the energy is capped; for a kind
                # known by its datasheet only, the time is the uncertain part: the work then takes as long
                # as the power limit allows (its clocks throttle), static power drawn all along.
                timed = np.array([self.by_gpu or g in c.gpu_factor for g in part["gpu"].astype(str)])
                limit = part["power_limit_sheet_w"].astype(float).to_numpy()
                over = np.isfinite(limit) & (e > limit * t)
                throttled = over & ~timed & (limit > static)
                t_limit = np.where(throttled, work / np.where(throttled, limit - static, 1.0), t)
                e = np.where(over & timed, limit * t, np.where(throttled, limit * t_limit, e))
            mean[rows] = np.maximum(e, 1e-9)
            sigma[rows], dof[rows] = c.sigma_log, c.dof
        half = t_ppf(0.5 + level / 2, np.maximum(dof, 1)) * sigma
        return Prediction(mean, mean * np.exp(-half), mean * np.exp(half), level)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "variant": self.variant, "granularity": self.granularity,
                "by_gpu": self.by_gpu, "name": self.name, "scope": self.scope, "kind": self.kind,
                "constants": [asdict(c) for c in self.constants]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RooflineFit:
        consts = tuple(
            RooflineConstants(**{**{k: (np.nan if v is None else v) for k, v in c.items()},
                                 "precisions": tuple(c["precisions"]), "sources": tuple(c["sources"])})
            for c in d["constants"])
        return cls(d["target"], d["variant"], d["granularity"], bool(d["by_gpu"]), consts, d["name"])


def _present_classes(inputs: RooflineInputs, ids: np.ndarray) -> list[str]:
    """Compute classes with a real share of the FLOPs (a class absent from the data shares matmul's rate)."""
    share = inputs.class_flops(ids).sum(axis=0)
    total = share[:3].sum()
    return ["matmul"] + [OP_CLASSES[k] for k in (1, 2) if total > 0 and share[k] / total > 0.01]


def _fit_one(gpu: str, frame: pd.DataFrame, inputs: RooflineInputs, target: Target, variant: str,
             datasheet_units: bool, gpu_factors: bool = False, start: RooflineConstants | None = None,
             terms: Terms = Terms()) -> RooflineConstants:
    ids = frame["point_id"].to_numpy(dtype=int)
    n = len(ids)
    energy = target.energy_j(frame)
    sources = frame["source"].astype(str).to_numpy() if "source" in frame else np.full(n, "")
    levels = sorted(set(sources), key=lambda s: (-int((sources == s).sum()), s))
    reference_source, others = levels[0], levels[1:]
    has_fp32 = int((frame["precision"].astype(str) == "fp32").sum()) >= 2
    classes = _present_classes(inputs, ids) if terms.class_efficiencies else ["matmul"]
    softmax = terms.exponentials and bool(inputs.scores()[np.isin(inputs.point_id, ids)].sum() > 0)
    eff_names = classes + (["fp32"] if has_fp32 else []) + (["softmax"] if softmax else []) + ["memory"]
    kinds = sorted(set(frame["gpu"].astype(str))) if gpu_factors and datasheet_units else []
    if len(kinds) < 2:
        kinds = []
    n_rates = len(eff_names) + len(levels) + len(others) + len(kinds)
    dynamic = target.dynamic
    idle = frame["idle_power_w"].astype(float).to_numpy()
    idle_known = bool(np.isfinite(idle).all())
    if variant == "idle_static" and not idle_known:
        raise NotIdentifiable(f"{gpu}: idle power not measured (the idle_static variant needs it)")
    if not idle_known:
        # No idle power (published sources): the fitted static power is all of it, idle included.
        idle = np.zeros(n)
    n_linear = (3 if variant == "fitted_static" else 2) + len(others)
    if n < n_linear + 2:
        raise NotIdentifiable(f"{gpu}: {n} points for {n_linear} energy coefficients")
    if datasheet_units:
        missing = sorted(set(frame.loc[~np.isfinite(frame["peak_flop_s"].astype(float)), "gpu"].astype(str)))
        if missing:
            raise NotIdentifiable(f"GPU kind(s) {missing} without a datasheet: a fit across kinds needs them")
        reference: dict[str, float] = {}
    else:
        first = frame.iloc[0]
        reference = {col: (float(first[col]) if col in frame and np.isfinite(float(first[col])) else nominal)
                     for col, nominal in NOMINAL.items()}
    scales = _scales(frame, datasheet_units, reference)
    time_meas = frame["time_s"].astype(float).to_numpy()
    use_time = bool(np.all(np.isfinite(time_meas) & (time_meas > 0))) and n > n_rates
    if not use_time:
        log.warning("%s: measured times missing or too few; the rates are fitted on energy alone, where "
                    "power and rates trade off", gpu)
    codes = np.array([levels.index(s) for s in sources], dtype=int)
    model = _TimeModel(inputs, ids, scales, codes)
    factor_of = np.array([0] * n) if not others else np.array([others.index(s) + 1 if s in others else 0
                                                                for s in sources])
    kind_of = np.array([kinds.index(g) for g in frame["gpu"].astype(str)]) if kinds else np.zeros(n, int)
    n_head = len(eff_names) + len(levels) + len(others)
    peak_rel = scales["peak_half_flop_s"] / PEAK_UNIT

    from scipy import optimize  # fitting only: predict, which imports this module, needs none of it

    def unpack(z: np.ndarray) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        r = np.exp(z)
        eff = dict(zip(eff_names, r[:len(eff_names)], strict=True))
        launch = dict(zip(levels, r[len(eff_names):len(eff_names) + len(levels)], strict=True))
        factor = {reference_source: 1.0, **dict(zip(others, r[len(eff_names) + len(levels):n_head],
                                                    strict=True))}
        return eff, launch, factor

    log_peak = np.log(peak_rel)
    # Which columns of the efficiency derivative (``_EFF_ORDER``) each fitted efficiency moves: a class
    # not fitted runs at the matrix-multiply rate.
    eff_columns = {name: [k for k, cls in enumerate(_EFF_ORDER) if _efficiency_of(cls, eff_names) == name]
                   for name in eff_names if name not in ("memory", "softmax")}

    def evaluate(z: np.ndarray, jacobian: bool = False) -> TimeParts | np.ndarray:
        r = np.exp(z)
        eff = dict(zip(eff_names, r[:len(eff_names)], strict=True))
        launch = r[len(eff_names):len(eff_names) + len(levels)]
        factors = np.concatenate([[1.0], r[len(eff_names) + len(levels):n_head]])
        slowdown = factors[factor_of] * (r[n_head:n_head + len(kinds)][kind_of] * peak_rel ** z[-1]
                                         if kinds else 1.0)
        args = (_efficiency_vector(eff), eff["memory"], launch, eff.get("softmax", np.inf), slowdown)
        return model.parts(*args) if jacobian else model(*args)

    def times(z: np.ndarray) -> np.ndarray:
        return evaluate(z)

    def jac(z: np.ndarray) -> np.ndarray:
        """d(log time) / dz of every point, then the ridge rows (analytic: the roofs are piecewise
        linear in the rates, so this is exact and costs about two evaluations)."""
        parts = evaluate(z, jacobian=True)
        cols = []
        for name in eff_names:
            if name == "memory":
                cols.append(parts.d_memory)
            elif name == "softmax":
                cols.append(parts.d_softmax)
            else:
                cols.append(parts.d_efficiency[:, eff_columns[name]].sum(axis=1))
        cols += [parts.d_launch[:, k] for k in range(len(levels))]
        cols += [parts.d_slowdown * (factor_of == j + 1) for j in range(len(others))]
        cols += [parts.d_slowdown * (kind_of == k) for k in range(len(kinds))]
        if kinds:
            cols.append(parts.d_slowdown * log_peak)
        J = np.column_stack(cols) / parts.time_s[:, None]
        ridge = np.zeros((n_head - len(eff_names) - len(levels) + len(kinds), len(z)))
        first = len(eff_names) + len(levels)
        ridge[np.arange(len(ridge)), first + np.arange(len(ridge))] = FACTOR_RIDGE
        return np.vstack([J, ridge])

    ideal_c = model.ideal_compute_s()
    ideal_b = inputs.total_bytes(ids) / scales["peak_bandwidth_byte_s"]
    plimit = scales["power_limit_sheet_w"]

    jpf_rel = plimit / scales["peak_half_flop_s"] / JPF_UNIT

    def solve(z: np.ndarray, exponents: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """Energy coefficients for the rates ``z`` (and the best energy exponent of ``exponents``)."""
        t = times(z)
        fixed = idle * t if not dynamic else np.zeros(n)
        b = 1.0 - fixed / energy
        best: tuple[float, np.ndarray, np.ndarray, float] | None = None
        for phi in (np.zeros(1) if exponents is None else exponents):
            m = plimit * jpf_rel ** phi
            cols = ([m * t] if variant == "fitted_static" else []) + [m * ideal_c, m * ideal_b]
            cols += [m * t * (sources == s) for s in others]
            A = np.column_stack(cols) / energy[:, None]
            scale = np.linalg.norm(A, axis=0)
            scale[scale == 0] = 1.0
            u, norm = optimize.nnls(A / scale, b)
            if best is None or norm < best[0]:
                best = (norm, u / scale, np.column_stack(cols), float(phi))
        assert best is not None
        _, u, cols_best, phi_best = best
        return u, fixed + cols_best @ u, phi_best

    def resid(z: np.ndarray) -> np.ndarray:
        if use_time:
            r = np.log(times(z) / time_meas)
        else:
            r = np.log(np.maximum(solve(z)[1], 1e-12) / energy)
        # A small pull of every time factor towards 1: where a factor is confounded with another (a kind
        # measured by one source only), the data decide only their product.
        return np.concatenate([r, FACTOR_RIDGE * z[len(eff_names) + len(levels):n_head + len(kinds)]])

    n_factors = len(others) + len(kinds)
    eff_bounds = [SOFTMAX_BOUNDS if name == "softmax" else EFFICIENCY_BOUNDS for name in eff_names]
    lo = np.log([b[0] for b in eff_bounds] + [LAUNCH_BOUNDS[0]] * len(levels)
                + [FACTOR_BOUNDS[0]] * n_factors)
    hi = np.log([b[1] for b in eff_bounds] + [LAUNCH_BOUNDS[1]] * len(levels)
                + [FACTOR_BOUNDS[1]] * n_factors)
    if kinds:
        lo, hi = np.append(lo, PEAK_EXPONENT_BOUNDS[0]), np.append(hi, PEAK_EXPONENT_BOUNDS[1])
    if not terms.stack_factors:  # every stack's time factor held at 1
        first = len(eff_names) + len(levels)
        lo[first:n_head], hi[first:n_head] = -1e-9, 1e-9
    if kinds and not terms.trend:  # no trend in the peak: its exponent held at 0
        lo[-1], hi[-1] = -1e-9, 1e-9

    def least_squares(lo: np.ndarray, hi: np.ndarray, start: np.ndarray | None = None) -> Any:
        """From ``start`` where given (a fit on nearly the same points), else from ``STARTS`` in turn; a
        start that does not converge falls back to the next."""
        best = None
        tries = [start] if start is not None else []
        tries += [np.log([compute] * (len(eff_names) - 1) + [memory] + [launch] * len(levels)
                         + [1.0] * n_factors + ([1.0] if kinds else []))  # log 1: exponent 0
                  for compute, memory, launch in STARTS]
        for z0 in tries:
            sol = optimize.least_squares(resid, np.clip(z0, lo + 1e-9, hi - 1e-9), bounds=(lo, hi),
                                         jac=jac if use_time else "2-point", diff_step=1e-4, x_scale=1.0,
                                         max_nfev=300, ftol=TOLERANCE, xtol=TOLERANCE, gtol=TOLERANCE)
            if best is None or sol.cost < best.cost:
                best = sol
            if sol.success:
                break  # the later starts are for a first start that did not converge
        assert best is not None
        return best

    warm = None
    if start is not None:
        warm = np.log([start.efficiency.get(k, EFFICIENCY_BOUNDS[1] / 2) for k in eff_names]
                      + [start.launch_s.get(s, STARTS[0][2]) for s in levels]
                      + [start.time_factor.get(s, 1.0) for s in others]
                      + [start.gpu_factor.get(k, 1.0) for k in kinds])
        if kinds:
            warm = np.append(warm, start.peak_exponent)
    if kinds:
        # The trend across kinds first, every kind's factor held at 1: with a free factor per kind the
        # factors absorb the trend and its exponent is not identified (it ran to a bound with the A100
        # left out). Then each kind's factor around that trend, the exponent held.
        held = lo.copy(), hi.copy()
        held[0][n_head:n_head + len(kinds)], held[1][n_head:n_head + len(kinds)] = -1e-9, 1e-9
        trend = least_squares(*held, start=None if warm is None else np.concatenate(
            [warm[:n_head], np.zeros(len(kinds)), warm[-1:]]))
        lo[-1], hi[-1] = trend.x[-1] - 1e-9, trend.x[-1] + 1e-9
        second = trend.x.copy()
        if warm is not None:
            second[n_head:n_head + len(kinds)] = warm[n_head:n_head + len(kinds)]
        best = least_squares(lo, hi, start=second) if terms.kind_factors else trend
    else:
        best = least_squares(lo, hi, start=warm)
    linear, predicted, energy_exponent = solve(best.x, ENERGY_EXPONENTS if kinds and terms.energy_trend
                                               else None)
    eff, launch, factor = unpack(best.x)
    pi_static = float(linear[0]) if variant == "fitted_static" else 0.0
    k = 1 if variant == "fitted_static" else 0
    pi_flop, pi_byte = float(linear[k]), float(linear[k + 1])
    pi_source = {s: float(v) for s, v in zip(others, linear[k + 2:], strict=True)}
    r = np.log(np.maximum(predicted, 1e-12) / energy)
    dof = max(n - n_linear - (n_rates if not use_time else 0), 1)
    idle_w = float(np.median(idle)) if idle_known else float("nan")
    return RooflineConstants(
        gpu=gpu, efficiency={k2: float(v) for k2, v in eff.items()}, launch_s={k2: float(v) for k2, v in
                                                                               launch.items()},
        time_factor={k2: float(v) for k2, v in factor.items()}, pi_static=pi_static, pi_flop=pi_flop,
        pi_byte=pi_byte, pi_source=pi_source, idle_power_w=idle_w, reference=reference,
        source_reference=reference_source, sigma_log=float(np.sqrt((r ** 2).sum() / dof)), dof=dof,
        n_points=n, precisions=tuple(sorted(set(frame["precision"].astype(str)))), sources=tuple(levels),
        time_fitted=use_time,
        gpu_factor={g: float(v) for g, v in zip(kinds, np.exp(best.x[n_head:n_head + len(kinds)]),
                                                strict=True)},
        peak_exponent=float(best.x[-1]) if kinds else 0.0, energy_exponent=energy_exponent,
    )


def fit_roofline(
    frame: pd.DataFrame,
    inputs: RooflineInputs,
    target: Target,
    variant: str = "fitted_static",
    by_gpu: bool = True,
    name: str = "roofline",
    gpu_factors: bool = False,
    cache: dict[Any, RooflineConstants] | None = None,
    start: RooflineFit | None = None,
    terms: Terms = Terms(),
) -> RooflineFit:
    """Fit the constants of each GPU kind (``by_gpu``), or one set across kinds in datasheet units.

    ``cache`` (per kind, keyed by the points fitted) spares cross-validation the refits of kinds a
    held-out architecture was never measured on: their points, and so their constants, are unchanged.
    ``start``: a fit on nearly the same points (all of them, for a cross-validation fold) to start
    from: the same optimum in a fraction of the iterations.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown roofline variant {variant!r}; allowed: {VARIANTS}")
    rows = frame[target.valid(frame)]
    if rows.empty:
        raise NotIdentifiable("no points")
    if by_gpu:
        fits = []
        for g, part in rows.groupby("gpu", sort=True):
            key = (str(g), target.name, variant, tuple(part["point_id"].astype(int)))
            if cache is None or key not in cache:
                one = _fit_one(str(g), part, inputs, target, variant, datasheet_units=False, terms=terms)
                if cache is None:
                    fits.append(one)
                    continue
                cache[key] = one
            fits.append(cache[key])
        consts = tuple(fits)
    else:
        consts = (_fit_one("all", rows, inputs, target, variant, datasheet_units=True,
                           gpu_factors=gpu_factors, start=start.constants[0] if start is not None else None,
                           terms=terms),)
    return RooflineFit(target.name, variant, inputs.granularity, by_gpu, consts, name)


def at_bounds(c: Mapping[str, Any]) -> list[str]:
    """The fitted constants (a ``RooflineConstants`` as a dict) that ended at a bound of their range: a
    warning that the data asked for more than the model allows (e.g. memory at the datasheet bandwidth)."""
    out = []

    def check(name: str, value: float, bounds: tuple[float, float], log_scale: bool = True) -> None:
        lo, hi = (np.log(b) for b in bounds) if log_scale else bounds
        v = np.log(value) if log_scale else value
        if abs(v - hi) < 1e-3:
            out.append(f"{name} {value:.3g} at its upper bound {bounds[1]:.3g}")
        elif abs(v - lo) < 1e-3:
            out.append(f"{name} {value:.3g} at its lower bound {bounds[0]:.3g}")

    for k, v in (c.get("efficiency") or {}).items():
        check(f"efficiency {k}", float(v), SOFTMAX_BOUNDS if k == "softmax" else EFFICIENCY_BOUNDS)
    for k, v in (c.get("launch_s") or {}).items():
        check(f"launch cost {k}", float(v), LAUNCH_BOUNDS)
    for k, v in {**(c.get("time_factor") or {}), **(c.get("gpu_factor") or {})}.items():
        if float(v) != 1.0:
            check(f"time factor {k}", float(v), FACTOR_BOUNDS)
    if c.get("gpu_factor"):
        check("trend exponent in the peak", float(c.get("peak_exponent", 0.0)), PEAK_EXPONENT_BOUNDS, False)
    return out


def constants_rows(fit: RooflineFit, law: str) -> list[dict[str, Any]]:
    """The roofline table's rows: one per GPU kind (or "all"), absolute figures at its reference."""
    rows = []
    for c in fit.constants:
        rows.append({
            "target": fit.target, "law": law, "variant": fit.variant, "granularity": fit.granularity,
            "gpu": c.gpu, "n_points": c.n_points, "time_fitted": c.time_fitted,
            **{f"efficiency_{k}": v for k, v in c.efficiency.items()},
            "compute_tflop_per_s": c.compute_flop_per_s / 1e12 if c.reference else np.nan,
            "compute_fp32_tflop_per_s": c.compute_fp32_flop_per_s / 1e12 if c.reference else np.nan,
            "bandwidth_gb_per_s": c.bandwidth_byte_per_s / 1e9 if c.reference else np.nan,
            "launch_us": "; ".join(f"{s}: {v * 1e6:.1f}" for s, v in c.launch_s.items()),
            "time_factor": "; ".join(f"{s}: {v:.3f}" for s, v in c.time_factor.items()),
            "idle_power_w": c.idle_power_w,
            "static_power_w": c.static_power_w if c.reference else np.nan,
            "pi_static": c.pi_static, "pi_flop": c.pi_flop, "pi_byte": c.pi_byte,
            "pi_source": "; ".join(f"{s}: {v:.3f}" for s, v in c.pi_source.items()),
            "energy_per_tflop_j": c.energy_per_flop_j * 1e12 if c.reference else np.nan,
            "energy_per_gb_j": c.energy_per_byte_j * 1e9 if c.reference else np.nan,
            "sigma_log": c.sigma_log,
        })
    return rows


ROOFLINE_COLUMNS = [
    "target", "law", "variant", "granularity", "gpu", "n_points", "time_fitted", "efficiency_matmul",
    "efficiency_attention", "efficiency_conv", "efficiency_fp32", "efficiency_memory", "compute_tflop_per_s",
    "compute_fp32_tflop_per_s", "bandwidth_gb_per_s", "launch_us", "time_factor", "idle_power_w",
    "static_power_w", "pi_static", "pi_flop", "pi_byte", "pi_source", "energy_per_tflop_j", "energy_per_gb_j",
    "sigma_log",
]

