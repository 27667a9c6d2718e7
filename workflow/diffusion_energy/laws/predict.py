"""Energy of one image for any architecture, from the fitted laws and FLOPs counted on meta.

A measured architecture (a zoo name with a per-architecture law) is answered
by its own paper-form law and that law's prediction interval. Anything else
(a zoo model not measured, or a path to an architecture file) gets the pooled
model chosen by leave-one-model-out error, with an empirical prediction
interval: the quantiles of log(measured / predicted) over the held-out
architectures, which is what the error on an unseen architecture looks like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..counting import flops as flops_mod
from ..counting.features import Point, point_features
from ..models import zoo
from . import powerlaw, roofline
from .analysis_io import NoLawError
from .targets import Prediction

log = logging.getLogger(__name__)

J_PER_WH = 3600.0
#: Fewest held-out points for an empirical prediction interval; below it the model's own interval.
MIN_EMPIRICAL = 10
ENERGY_TARGETS = {"raw": "image", "dynamic": "image_dynamic"}
LAW_CHOICES = ("auto", "architecture", "pooled")


@dataclass(frozen=True)
class CountedPoint:
    """A point to predict: its per-image features (one row) and its roofline inputs."""

    features: pd.DataFrame
    inputs: roofline.RooflineInputs


@dataclass(frozen=True)
class EnergyPrediction:
    """The answer: median energy per image and its prediction interval, J."""

    model: str
    gpu: str
    precision: str
    resolution: int
    steps: int
    cfg: bool
    energy: str
    energy_j: float
    low_j: float
    high_j: float
    level: float
    flops: float
    law: str
    interval: str
    notes: tuple[str, ...]

    @property
    def energy_wh(self) -> float:
        return self.energy_j / J_PER_WH

    @property
    def low_wh(self) -> float:
        return self.low_j / J_PER_WH

    @property
    def high_wh(self) -> float:
        return self.high_j / J_PER_WH

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(energy_wh=self.energy_wh, low_wh=self.low_wh, high_wh=self.high_wh, notes=list(self.notes))
        return d

    def describe(self) -> str:
        pct = round(self.level * 100)
        lines = [
            f"{self.model}: {self.resolution} px, {self.steps} steps, {self.precision}, "
            f"CFG {'on' if self.cfg else 'off'}, batch 1, on {self.gpu}",
            f"  FLOPs per image: {self.flops / 1e12:,.1f} TFLOP",
            f"  {'dynamic (idle-subtracted)' if self.energy == 'dynamic' else 'GPU'} energy: "
            f"{self.energy_j:,.0f} J/image = {self.energy_wh:.4g} Wh/image",
            f"  {pct}% prediction interval: [{self.low_j:,.0f}, {self.high_j:,.0f}] J/image"
            f" = [{self.low_wh:.4g}, {self.high_wh:.4g}] Wh/image ({self.interval})",
            f"  law: {self.law}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def count_point(spec: zoo.ModelSpec, gpu: str, precision: str, resolution: int, steps: int, cfg: bool
                ) -> CountedPoint:
    """FLOPs, kernels and bytes of one image, counted on the meta device, as the workflow counts them."""
    table, ops = flops_mod.count_model_ops(spec, [resolution], [cfg], [1])
    point = Point(gpu, spec.name, spec.architecture, precision, resolution, steps, cfg, 1)
    feats = point_features([point], table).assign(point_id=0)
    if feats.empty:
        raise ValueError(f"no FLOPs counted for {spec.name} at {resolution} px")
    return CountedPoint(feats, roofline.inputs_from_ops(feats, ops, table))


def _half(p: str) -> str:
    return "fp32" if p == "fp32" else "half precision (fp16/bf16)"


def _law_object(d: dict[str, Any]) -> Any:
    return roofline.RooflineFit.from_dict(d) if d.get("kind") == "roofline" else powerlaw.law_from_dict(d)


def _gpus(law: Any) -> tuple[str, ...]:
    return tuple(law.gpus)


def _check_gpu(gpu: str | None, law: Any, what: str, by_gpu: bool = True) -> str:
    gpus = _gpus(law)
    if gpu is None:
        if len(gpus) == 1:
            return gpus[0]
        raise NoLawError(f"{what} was fitted on several GPU kinds ({', '.join(gpus)}): choose one with --gpu")
    if by_gpu and gpu not in gpus:
        raise NoLawError(f"GPU kind {gpu!r} is not in the fitted data of {what} (fitted: {', '.join(gpus)}); "
                         "measure it first")
    return gpu


def _covers_precision(law: Any, precision: str) -> bool:
    if getattr(law, "kind", "") == "roofline":
        return True
    classes = {_half(p) for p in law.precisions}
    return _half(precision) in classes


def _select(payload: dict[str, Any], target: str, spec_name: str, from_path: bool, choice: str
            ) -> tuple[str, dict[str, Any], str]:
    """(scope, law dict, description) of the law that answers."""
    per_arch = payload.get("per_architecture", {}).get(target, {})
    pooled = payload.get("pooled", {}).get(target, {})
    if choice in ("auto", "architecture") and not from_path and spec_name in per_arch:
        return "architecture", per_arch[spec_name], f"per-architecture paper law of {spec_name}"
    if choice == "architecture":
        why = "an architecture file is never a measured model" if from_path else \
            f"no per-architecture law for {spec_name!r} (measured: {', '.join(sorted(per_arch)) or 'none'})"
        raise NoLawError(why)
    selected = pooled.get("selected")
    if not selected:
        raise NoLawError(f"no pooled law was fitted for {target} (too few architectures measured)")
    entry = pooled["candidates"][selected]
    return "pooled", entry, f"pooled {selected}: {entry.get('description', '')}"


def predict_energy(
    payload: dict[str, Any],
    spec: zoo.ModelSpec,
    *,
    resolution: int,
    steps: int,
    precision: str = "default",
    gpu: str | None = None,
    cfg: bool | None = None,
    energy: str = "raw",
    law: str = "auto",
    from_path: bool = False,
    counted: CountedPoint | None = None,
) -> EnergyPrediction:
    """Predict the energy of one image; ``counted`` skips FLOP counting (tests)."""
    if payload.get("status") != "ok":
        raise NoLawError(f"the fitted laws hold no law: {payload.get('reason', 'no data')} "
                         "(no measurements yet?)")
    if energy not in ENERGY_TARGETS:
        raise ValueError(f"energy must be one of {sorted(ENERGY_TARGETS)}, not {energy!r}")
    if law not in LAW_CHOICES:
        raise ValueError(f"law must be one of {LAW_CHOICES}, not {law!r}")
    if steps <= 0:
        raise ValueError(f"steps must be positive, not {steps}")
    target = ENERGY_TARGETS[energy]
    prec = spec.precision(precision)
    use_cfg = spec.effective_cfg(cfg)
    spec.check_resolution(resolution)
    notes: list[str] = []

    scope, law_dict, description = _select(payload, target, spec.name, from_path, law)
    law_d = law_dict if scope == "architecture" else law_dict["law"]
    fit = _law_object(law_d)
    if not _covers_precision(fit, prec):
        if scope == "architecture" and law == "auto":
            notes.append(f"{spec.name}'s own law was fitted on {', '.join(fit.precisions)} only: "
                         f"{prec} comes from the pooled law")
            scope, law_dict, description = _select(payload, target, spec.name, True, "pooled")
            law_d = law_dict["law"]
            fit = _law_object(law_d)
        if not _covers_precision(fit, prec):
            raise NoLawError(f"precision {prec} is not in the fitted data ({', '.join(fit.precisions)})")
    is_roof = getattr(fit, "kind", "") == "roofline"
    gpu_kind = _check_gpu(gpu, fit, description, by_gpu=not is_roof or fit.by_gpu)
    if is_roof and prec == "fp32" and not np.isfinite(fit.for_gpu(gpu_kind).compute_fp32_flop_per_s):
        raise NoLawError(f"precision fp32 is not in the fitted data on {gpu_kind} (no fp32 compute rate)")

    point = counted or count_point(spec, gpu_kind, prec, resolution, steps, use_cfg)
    feats = point.features.assign(gpu=gpu_kind, precision=prec, steps=steps)
    if from_path:
        # Never the random effect of a measured model that happens to share the file's name.
        feats = feats.assign(model=f"file:{spec.source}")
    level = float(payload["settings"]["prediction_level"])
    pred: Prediction = fit.predict(feats, point.inputs, level) if is_roof else fit.predict(feats, level)
    interval = "from the law's residuals"
    if scope == "pooled":
        lomo = law_dict.get("lomo", {})
        lo, hi, n = lomo.get("log_ratio_low"), lomo.get("log_ratio_high"), lomo.get("n_points", 0)
        if lo is not None and hi is not None and n >= MIN_EMPIRICAL:
            # Held-out errors can lean one way; the interval still contains the law's own estimate.
            e = pred.energy_j
            pred = Prediction(e, e * np.exp(min(lo, 0.0)), e * np.exp(max(hi, 0.0)), level)
            interval = f"empirical: held-out errors on {n} points of unseen architectures"
    _extrapolation_notes(fit, feats, notes)
    return EnergyPrediction(
        model=spec.name, gpu=gpu_kind, precision=prec, resolution=resolution, steps=steps, cfg=use_cfg,
        energy=energy, energy_j=float(pred.energy_j[0]), low_j=float(pred.low_j[0]),
        high_j=float(pred.high_j[0]), level=level, flops=float(feats["flops"].iloc[0]), law=description,
        interval=interval, notes=tuple(notes),
    )


def _extrapolation_notes(fit: Any, feats: pd.DataFrame, notes: list[str]) -> None:
    f = float(feats["flops"].iloc[0])
    rng = getattr(fit, "flops", None)
    if rng and np.all(np.isfinite(rng)) and not (rng[0] <= f <= rng[1]):
        notes.append(f"{f / 1e12:,.1f} TFLOP is outside the fitted range "
                     f"[{rng[0] / 1e12:,.1f}, {rng[1] / 1e12:,.1f}] TFLOP: extrapolation")
    for col, attr, unit in (("resolution", "resolution_px", "px"), ("steps", "steps", "steps")):
        r = getattr(fit, attr, None)
        v = float(feats[col].iloc[0])
        if r and np.all(np.isfinite(r)) and not (r[0] <= v <= r[1]):
            notes.append(f"{v:g} {unit} is outside the fitted range [{r[0]:g}, {r[1]:g}] {unit}")


def resolve_model(model: str) -> tuple[zoo.ModelSpec, bool]:
    """(spec, from_path): a zoo name or a path to an architecture file."""
    from_path = Path(model).suffix in {".yaml", ".yml"}
    return zoo.load_spec(model), from_path
