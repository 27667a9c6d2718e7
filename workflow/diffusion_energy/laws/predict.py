"""Energy of one image for any architecture, batch size and GPU kind, from the fitted laws.

The FLOPs, kernels and bytes of the asked point (any batch size) are the
workflow's own counts where the package ships them, else counted on the meta
device as the workflow counts them (``counting.lookup``). The answer comes from:

* an architecture this workflow measured itself (its own paper-form law), where
  that law covers the GPU kind and precision and fits the architecture's points
  better than the pooled model does (``analysis.own_or_pooled``: for SD 1.5 on
  our H200, launch-bound, the pooled model fits better and answers);
* otherwise the one pooled model chosen for every GPU kind by held-out error,
  with an empirical prediction interval (the quantiles of log(measured /
  predicted) over held-out architectures on that kind, or on every kind where
  that kind has few), widened with the point's distance outside the fitted data
  (``intervals``);
* for a GPU kind nobody measured, given by its datasheet (in the config or on
  the command line), the same model seeing the kind through its datasheet, its
  interval from the GPU kinds left out.

Published sources are pooled with the source as a factor, so an answer speaks
for one software stack (``sources.stacks``): ``diffusers`` on one GPU unless
``--stack`` says otherwise, the same for every model on every GPU kind, answered
with the constants of the stack's source that measured that kind (else of its
reference source); ``--source`` names one source instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..counting import lookup
from ..counting.features import Point, point_features
from ..errors import UsageError
from ..models import zoo
from ..sources import gpu_datasheets, stacks
from ..sources.schema import THIS_WORKFLOW
from . import fp32_extrapolation, intervals, parallelism, predict_parallel, roofline
from .analysis_io import NoLawError
from .blend import BlendFit, load_law, predict_law
from .choice import MIN_EMPIRICAL
from .crossval import ALL
from .targets import TARGETS, Prediction

log = logging.getLogger(__name__)

J_PER_WH = 3600.0
J_PER_KWH = 3.6e6
ENERGY_TARGETS = {"raw": "image", "dynamic": "image_dynamic"}
LAW_CHOICES = ("auto", "architecture", "pooled")
#: ``--precision tf32``: fp32 with matrix multiplies on the TF32 tensor cores (not a zoo precision: no
#: model runs it by default, and the grid measures fp32 and half precision).
TF32 = "tf32"
#: Largest steps, batch or image count a prediction takes: FLOPs are counted in float64.
MAX_COUNT = 2**53


@dataclass(frozen=True)
class CountedPoint:
    """A point to predict: its per-image features (one row), its roofline inputs and the counts they were
    made from (FLOPs table, per-op table: what a prediction on several GPUs reads again)."""

    features: pd.DataFrame
    inputs: roofline.RooflineInputs
    table: pd.DataFrame | None = None
    ops: pd.DataFrame | None = None

    def attention(self, precision: str) -> pd.DataFrame:
        """The denoiser's attention work per output with tensors in ``precision``
        (``parallelism.attention_work``)."""
        if self.table is None or self.ops is None:
            raise ValueError("a point counted without its tables has no attention work")
        return parallelism.attention_work(self.features.assign(precision=precision), self.ops, self.table)


@dataclass(frozen=True)
class EnergyPrediction:
    """The answer: median energy per image and its prediction interval, J."""

    model: str
    gpu: str
    precision: str
    resolution: int
    steps: int
    cfg: bool
    batch: int
    energy: str
    energy_j: float
    low_j: float
    high_j: float
    level: float
    flops: float
    law: str
    interval: str
    data: str
    source: str
    notes: tuple[str, ...]
    grid_intensity_g_per_kwh: float | None = None
    images: int = 1
    #: The laws file that answered (``results/laws/...``, or the copy shipped with the package).
    laws_file: str = ""
    #: The software stack the answer speaks for (``sources.stacks``).
    stack: str = ""
    #: GPUs one image ran on (energy summed over them) and their sequence-parallel split.
    num_gpus: int = 1
    ulysses_degree: int = 1
    ring_degree: int = 1

    @property
    def on(self) -> str:
        """The GPUs, as a person says it: ``h100``, or ``4 x h100 (Ulysses 2 x ring 2)``."""
        if self.num_gpus == 1:
            return self.gpu
        return f"{self.num_gpus} x {self.gpu} (Ulysses {self.ulysses_degree} x ring {self.ring_degree})"

    @property
    def energy_wh(self) -> float:
        return self.energy_j / J_PER_WH

    @property
    def low_wh(self) -> float:
        return self.low_j / J_PER_WH

    @property
    def high_wh(self) -> float:
        return self.high_j / J_PER_WH

    def grams(self, joules: float) -> float | None:
        """gCO2e of ``joules`` at the grid intensity (None when none was given)."""
        g = self.grid_intensity_g_per_kwh
        return None if g is None else joules / J_PER_KWH * g

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(energy_wh=self.energy_wh, low_wh=self.low_wh, high_wh=self.high_wh, notes=list(self.notes),
                 total_j=self.energy_j * self.images, total_kwh=self.energy_j * self.images / J_PER_KWH,
                 co2e_g_per_image=self.grams(self.energy_j),
                 co2e_g_total=None if self.grid_intensity_g_per_kwh is None
                 else self.grams(self.energy_j * self.images))
        return d

    def describe(self) -> str:
        pct = round(self.level * 100)
        kind = "dynamic (idle-subtracted)" if self.energy == "dynamic" else "GPU"
        lines = [
            f"{self.model}: {self.resolution} px, {self.steps} steps, {self.precision}, "
            f"CFG {'on' if self.cfg else 'off'}, batch {self.batch}, on {self.on}",
            f"  FLOPs per image: {self.flops / 1e12:,.1f} TFLOP",
            f"  {kind} energy: {self.energy_j:,.0f} J/image = {self.energy_wh:.4g} Wh/image",
            f"  {pct}% prediction interval: [{self.low_j:,.0f}, {self.high_j:,.0f}] J/image"
            f" = [{self.low_wh:.4g}, {self.high_wh:.4g}] Wh/image ({self.interval})",
        ]
        if self.grid_intensity_g_per_kwh is not None:
            lines.append(f"  emissions at {self.grid_intensity_g_per_kwh:g} gCO2e/kWh: "
                         f"{self.grams(self.energy_j):.3g} gCO2e/image "
                         f"[{self.grams(self.low_j):.3g}, {self.grams(self.high_j):.3g}]")
        if self.images > 1:
            total = self.energy_j * self.images
            low, high = (x * self.images / J_PER_KWH for x in (self.low_j, self.high_j))
            line = f"  {self.images:,} images: {total / J_PER_KWH:.4g} kWh [{low:.4g}, {high:.4g}]"
            if self.grid_intensity_g_per_kwh is not None:
                line += f", {self.grams(total) / 1000:.4g} kgCO2e"
            lines.append(line)
        lines += [f"  model: {self.law}", f"  data: {self.data}", f"  {self.stack_line()}"]
        lines += [f"  laws: {self.laws_file}"] if self.laws_file else []
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def stack_line(self) -> str:
        """``software stack: diffusers (...), with the constants of mlenergy-v2``."""
        known = stacks.STACKS.get(self.stack)
        what = f"{self.stack} ({known.description})" if known else (self.stack or "as measured")
        return f"software stack: {what}, with the constants of {self.source}"


def count_point(spec: zoo.ModelSpec, gpu: str, precision: str, resolution: int, steps: int, cfg: bool,
                batch: int = 1) -> CountedPoint:
    """FLOPs, kernels and bytes of one pipeline call of ``batch`` images (shipped, or counted on the meta
    device: ``counting.lookup``)."""
    table, ops = lookup.count_batch(spec, resolution, cfg, batch)
    point = Point(gpu, spec.name, spec.architecture, precision, resolution, steps, cfg, batch,
                  spec.denoiser_evaluations(steps))
    feats = point_features([point], table).assign(point_id=0)
    if feats.empty:
        raise ValueError(f"no FLOPs counted for {spec.name} at {resolution} px")
    return CountedPoint(feats, roofline.inputs_from_ops(feats, ops, table), table, ops)


def _half(p: str) -> str:
    return "fp32" if p == "fp32" else "half precision (fp16/bf16)"


def law_object(d: dict[str, Any]) -> Any:
    return load_law(d)


def _covers_precision(law: Any, precision: str) -> bool:
    if getattr(law, "kind", "") == "roofline" and precision != "fp32":
        return True
    return _half(precision) in {_half(p) for p in law.precisions}


def _why_no_pooled(entry: Mapping[str, Any], target: str, payload: Mapping[str, Any] | None = None) -> str:
    reasons = entry.get("not_fitted", {})
    why = "; ".join(f"{c}: {r}" for c, r in reasons.items()) or "too few architectures measured"
    no_dynamic = (payload or {}).get("left_out", {}).get("dynamic", [])
    if target == "image_dynamic" and no_dynamic:
        return (f"{len(no_dynamic)} point(s) of this workflow have no dynamic (idle-subtracted) energy and "
                f"are left out of the dynamic laws (first: {no_dynamic[0]}); the published sources report "
                f"raw whole-GPU energy only ({why})")
    if target == "image_dynamic":
        return ("no dynamic (idle-subtracted) energy in the data: the published sources report raw whole-GPU "
                f"energy only, and idle power is measured only by this workflow on a GPU ({why})")
    return why


@dataclass(frozen=True)
class _Choice:
    scope: str
    candidate: str
    law: dict[str, Any]
    description: str
    entry: dict[str, Any]


def _choose(payload: dict[str, Any], target: str, spec_name: str, from_path: bool, choice: str, gpu: str,
            measured: bool, precision: str) -> _Choice:
    """The law that answers: the model's own, or the pooled candidate chosen for this GPU kind."""
    own = payload.get("per_architecture", {}).get(target, {}).get(THIS_WORKFLOW, {}).get(spec_name)
    versus = payload.get("own_or_pooled", {}).get(target, {}).get(spec_name)
    has_pooled = bool(payload.get("pooled", {}).get(target, {}).get("candidates"))
    if choice == "auto" and own and not from_path and has_pooled:
        # Never the own law by default: which of the two answers is the fit's verdict, or nothing.
        answer = versus.get("answer") if isinstance(versus, Mapping) else None
        if answer not in ("architecture", "pooled"):
            what = ("missing" if versus is None else "empty" if not versus
                    else f"answer {answer!r}, not 'architecture' or 'pooled'")
            raise NoLawError(f"laws file: own_or_pooled.{target}.{spec_name} is {what}: it says whether "
                             f"{spec_name}'s own law or the pooled model answers; the file is damaged or was "
                             "written by another version: refit (`snakemake results/laws/laws.json`)")
    versus = versus or {}
    pooled_fits_better = choice == "auto" and versus.get("answer") == "pooled"
    if choice in ("auto", "architecture") and not from_path and own and not pooled_fits_better:
        law = law_object(own)
        if gpu in law.gpus and _covers_precision(law, precision):
            return _Choice("architecture", "paper", own, f"per-architecture paper law of {spec_name} "
                           f"(measured by this workflow)", own)
        if choice == "architecture":
            raise NoLawError(f"{spec_name}'s own law covers {', '.join(law.gpus)} / "
                             f"{', '.join(law.precisions)}, not {gpu} / {precision}")
    if choice == "architecture":
        raise NoLawError("--law architecture and --model <architecture file> conflict: an architecture file "
                         "is never a measured model (use --law auto or --law pooled)" if from_path else
                         f"no per-architecture law for {spec_name!r} measured by this workflow")
    pooled = payload.get("pooled", {}).get(target, {})
    if not pooled.get("candidates"):
        raise NoLawError(f"no pooled law for {target}: {_why_no_pooled(pooled, target, payload)}")
    if measured:
        cand = pooled.get("selected_by_gpu", {}).get(gpu) or pooled.get("selected")
        why = pooled.get("selection") or "chosen on architectures left out"
    else:
        cand = pooled.get("selected_unmeasured_gpu")
        why = pooled.get("selection_unmeasured_gpu") or "a GPU kind nobody measured, by its datasheet"
        if not cand:
            raise NoLawError(f"GPU kind {gpu!r} is not in the fitted data "
                             f"({', '.join(payload.get('gpus', []))}) and no model was cross-validated "
                             "across GPU kinds (measure a second kind first)")
    entry = pooled["candidates" if measured else "unseen_gpu_candidates"][cand]
    if pooled_fits_better and own and not from_path:
        why += (f"; on {spec_name}'s {versus['n_points']} points measured by this workflow its RMS log "
                f"error is {versus['pooled_rms_log']:.3f} against {versus['own_rms_log']:.3f} for its own "
                "paper-form law (--law architecture answers with that)")
    return _Choice("pooled", cand, entry["law"], f"pooled {cand}: {entry.get('description', '')} ({why})",
                   entry)


def _fitted_sources(law: Any) -> set[str]:
    if isinstance(law, roofline.RooflineFit):
        return {s for c in law.constants for s in c.sources}
    if isinstance(law, BlendFit):
        return set(law.sources)
    return set(getattr(law, "sources", ()) or [])


def _source_for(payload: dict[str, Any], law: Any, spec: zoo.ModelSpec, gpu: str, asked: str | None,
                stack_name: str | None) -> tuple[str, str, list[str]]:
    """(the source whose constants answer, the stack it speaks for, notes): ``--source`` where given,
    else the asked (or default) stack's source for this GPU kind (``stacks.answering_source``): never
    the model's own, so the same network under two names gets the same answer."""
    sources = _fitted_sources(law)
    measured_by = payload.get("measured_by", {})
    if asked:
        if sources and asked not in sources:
            raise NoLawError(f"source {asked!r} is not in the fitted data ({', '.join(sorted(sources))})")
        return asked, stacks.stack_of(asked) or "", []
    stack = stacks.get(stack_name)
    video = spec.video is not None
    source = stacks.answering_source(stack, gpu, sources, measured_by,
                                     prefer=payload.get("video_source") if video else None)
    notes = []
    archs = payload.get("architecture_by_model", {})
    if video and payload.get("video_source") not in stack.sources:
        notes.append(f"the {stack.name} stack ran no video model in the fitted data: its launch and fusion "
                     "costs come from image models")
    elif not video and archs and spec.architecture not in stacks.architectures_run(stack, measured_by, archs):
        ran = sorted(stacks.architectures_run(stack, measured_by, archs))
        notes.append(f"the {stack.name} stack never ran a {spec.architecture} denoiser in the fitted data "
                     f"(it ran {', '.join(ran) or 'none'}): its launch and fusion costs come from other "
                     "kinds of denoiser")
    by = measured_by.get(f"{gpu}/{spec.name}")
    if by and by not in stack.sources:
        other = stacks.stack_of(by)
        notes.append(f"{spec.name} was measured on {gpu} by {by}, on another software stack "
                     f"({other or 'none named'}): {f'--stack {other}' if other else f'--source {by}'} "
                     "answers for it")
    return source, stack.name, notes


def _confined_models(law: Any) -> set[str]:
    """Architectures a power law's GPU-kind or source shift is confined to (``powerlaw.DesignSpec``)."""
    parts = law.parts.values() if isinstance(law, BlendFit) else [law]
    return {m for p in parts for models in getattr(getattr(p, "design", None), "confined", {}).values()
            for m in models}


def _same_network(spec: zoo.ModelSpec, names: set[str]) -> str | None:
    """The first of ``names`` (zoo architectures) that is ``spec``'s network under another name."""
    for name in sorted(names - {spec.name}):
        try:
            if zoo.load_spec(name).network() == spec.network():
                return name
        except zoo.ZooError:
            continue
    return None


def check_counts(**counts: int) -> None:
    """``--steps``, ``--batch``, ``--images``: positive and countable, checked before any FLOPs count."""
    for name, value in counts.items():
        if value <= 0:
            raise UsageError(f"--{name} must be positive, not {value}")
        if value > MAX_COUNT:
            raise UsageError(f"--{name} {value:,} is more than can be counted exactly (at most "
                             f"2**53 = {MAX_COUNT:,}, float64's exact integers)")


def predict_energy(
    payload: dict[str, Any],
    spec: zoo.ModelSpec,
    *,
    resolution: int,
    steps: int,
    precision: str = "default",
    gpu: str | None = None,
    cfg: bool | None = None,
    batch: int = 1,
    energy: str = "raw",
    law: str = "auto",
    from_path: bool = False,
    datasheet: gpu_datasheets.Datasheet | None = None,
    source: str | None = None,
    grid_intensity: float | None = None,
    images: int = 1,
    counted: CountedPoint | None = None,
    stack: str | None = None,
    several: predict_parallel.SeveralGpus | None = None,
) -> EnergyPrediction:
    """Predict the energy of one image on one GPU, or on ``several`` (``predict_parallel``); ``counted``
    skips FLOP counting (tests); ``stack`` names the software stack (``sources.stacks``; None: the
    default on one GPU)."""
    if payload.get("status") != "ok":
        raise NoLawError(f"the fitted laws hold no law: {payload.get('reason', 'no data')} "
                         "(no measurements yet?)")
    if energy not in ENERGY_TARGETS:
        raise UsageError(f"energy must be one of {sorted(ENERGY_TARGETS)}, not {energy!r}")
    if law not in LAW_CHOICES:
        raise UsageError(f"law must be one of {LAW_CHOICES}, not {law!r}")
    check_counts(steps=steps, batch=batch, images=images)
    if grid_intensity is not None and not (math.isfinite(grid_intensity) and grid_intensity >= 0):
        raise UsageError(f"--grid-intensity must be a non-negative number of gCO2e/kWh, not "
                         f"{grid_intensity}")
    target = ENERGY_TARGETS[energy]
    # TF32: fp32 tensors, matrix multiplies on the TF32 tensor cores (allow_tf32 on): carried from the
    # model's half precision by the roofline as fp32 is, at the TF32 peak.
    tf32 = precision == TF32
    prec = "fp32" if tf32 else spec.precision(precision)
    use_cfg = spec.effective_cfg(cfg)
    spec.check_resolution(resolution)

    measured_gpus = list(payload.get("gpus", []))
    sheets = {k: gpu_datasheets.Datasheet.from_config(v) for k, v in payload.get("datasheets", {}).items()}
    if datasheet is not None:
        if gpu in measured_gpus or gpu in sheets:
            what = ("was measured (it is in the fitted data)" if gpu in measured_gpus
                    else "has a datasheet in the config (gpu_kinds)")
            raise UsageError(f"--gpu {gpu} and --gpu-datasheet conflict: {gpu} {what}; give --gpu {gpu} "
                             "alone, or give the datasheet a new name with --gpu <name>")
        gpu = gpu or "custom"
        sheets[gpu] = datasheet
        measured = False
    elif gpu is None:
        if len(measured_gpus) == 1:
            gpu = measured_gpus[0]
        else:
            raise NoLawError(f"the laws were fitted on several GPU kinds ({', '.join(measured_gpus)}): "
                             "choose one with --gpu (or give a datasheet with --gpu-datasheet)")
        measured = True
    else:
        measured = gpu in measured_gpus
        if not measured and gpu not in sheets:
            raise NoLawError(f"GPU kind {gpu!r} is not in the fitted data ({', '.join(measured_gpus)}) and "
                             f"has no datasheet: add gpu_kinds.{gpu}.datasheet to the config, or pass "
                             "--gpu-datasheet")
    chosen = _choose(payload, target, spec.name, from_path, law, gpu, measured, prec)
    fit = law_object(chosen.law)
    # fp32 where the law was fitted on half precision only: carried over by its roofline (below).
    extrapolated = (prec == "fp32" and (tf32 or not _covers_precision(fit, prec))
                    and bool(fp32_extrapolation.roofline_parts(fit)))
    if tf32 and not extrapolated:
        raise NoLawError(f"--precision tf32 is carried from half precision by a roofline model, and "
                         f"{chosen.description} holds none")
    if not _covers_precision(fit, prec) and not extrapolated:
        raise NoLawError(f"precision {prec} is not in the fitted data ({', '.join(fit.precisions)})")
    # The precision the law answers at: the model's half precision where fp32 is extrapolated.
    at = (spec.default_precision if spec.default_precision != "fp32" else "fp16") if extrapolated else prec
    is_roof = getattr(fit, "kind", "") in ("roofline", "blend")  # these predict from the counted kernels
    if is_roof and fit.by_gpu and gpu not in fit.gpus:
        raise NoLawError(f"GPU kind {gpu!r} is not in the fitted data of {chosen.description} "
                         f"(fitted: {', '.join(fit.gpus)})")

    if counted is None or (extrapolated and counted.inputs.fp32.any()):
        counted = count_point(spec, gpu, at, resolution, steps, use_cfg, batch)
    point = counted
    answer_source, answer_stack, stack_notes = _source_for(payload, fit, spec, gpu, source, stack)
    feats = point.features.assign(gpu=gpu, precision=at, steps=steps, source=answer_source,
                                  quoted=False, num_gpus=1)
    feats = gpu_datasheets.with_datasheets(feats, sheets)
    if from_path:
        # Never the random effect of a measured model that happens to share the file's name.
        feats = feats.assign(model=f"file:{spec.source}")
    twin = _same_network(spec, _confined_models(fit))
    if twin:
        # A shift the law confines to one measured architecture is that network's: the same network
        # under another name (or in another file) gets it too.
        feats = feats.assign(model=twin)
    level = float(payload["settings"]["prediction_level"])
    pred: Prediction = predict_law(fit, feats, point.inputs, level)
    interval = "from the law's residuals"
    if chosen.scope == "pooled":
        held, what = (chosen.entry.get("lomo", {}).get(ALL, {}), "unseen architectures on every GPU kind") \
            if measured else (chosen.entry.get("logo_interval", {}), "GPU kinds and architectures left out")
        rule = _interval_rule(held, level)
        if rule is not None and rule.n_points >= MIN_EMPIRICAL:
            # Held-out errors can lean one way; the interval still contains the law's own estimate, and
            # it widens with the point's distance outside the fitted data.
            fitted = payload.get("ranges", {})
            dist = intervals.distance(fitted.get(gpu if measured else ALL) or fitted.get(ALL, {}), feats,
                                      TARGETS[target])
            low, high = rule.bounds(pred.energy_j, dist)
            pred = Prediction(pred.energy_j, low, high, level)
            interval = f"empirical: held-out errors on {rule.n_points} points of {what}"
            if dist[0] > 0:
                interval += (f", widened by {rule.slope:.2f} per unit of log distance outside the fitted "
                             f"data (here {dist[0]:.2f})")
    notes: list[str] = list(stack_notes)
    if twin:
        notes.append(f"{spec.name} is {twin}'s network (the same components): answered as {twin}, whose "
                     "measured points alone carry the shifts of their GPU kind and source in the law")
    if extrapolated:
        pred, note = _carried_to_fp32(fit, feats, point.inputs, pred, sheets, at, tf32)
        interval += (f"; {'tf32' if tf32 else 'fp32'} carried over from {at}: widened "
                     f"{fp32_extrapolation.FP32_WIDENING:g}x either way until such points are measured")
        notes.append(note)
    values = {"FLOPs per image": float(feats["flops"].iloc[0]), "energy": float(pred.energy_j[0]),
              "interval low": float(pred.low_j[0]), "interval high": float(pred.high_j[0])}
    bad = {k: v for k, v in values.items() if not (math.isfinite(v) and v > 0)}
    if bad:
        raise NoLawError(f"{spec.name} at {resolution} px, {steps:,} steps, batch {batch:,}: "
                         + ", ".join(f"{k} {v:g}" for k, v in bad.items())
                         + f" (not a positive finite number): {chosen.description} cannot answer here")
    notes += _range_notes(payload, gpu if measured else ALL, feats)
    notes += _fitted_notes(chosen, spec.name, gpu, measured, target, payload)
    if not measured:
        notes.append(f"{gpu} has no points in the fitted data: it enters only through its datasheet "
                     f"({sheets[gpu].source or 'given on the command line'})")
    answer = EnergyPrediction(
        model=spec.name, gpu=gpu, precision=TF32 if tf32 else prec, resolution=resolution, steps=steps,
        cfg=use_cfg,
        batch=batch,
        energy=energy, energy_j=float(pred.energy_j[0]), low_j=float(pred.low_j[0]),
        high_j=float(pred.high_j[0]), level=level, flops=float(feats["flops"].iloc[0]),
        law=chosen.description, interval=interval, data=_data_line(payload, chosen, gpu, measured, target),
        source=answer_source, notes=tuple(notes), grid_intensity_g_per_kwh=grid_intensity, images=images,
        stack=answer_stack,
    )
    if several is None:
        return answer
    # The activations exchanged are in the precision asked (fp32's for tf32), from the same counts.
    return predict_parallel.on_several_gpus(answer, several, "video" if spec.video else "image",
                                            point.attention(prec), sheets.get(gpu))


def _carried_to_fp32(fit: Any, feats: pd.DataFrame, inputs: roofline.RooflineInputs, pred: Prediction,
                     sheets: Mapping[str, gpu_datasheets.Datasheet], at: str, tf32: bool = False
                     ) -> tuple[Prediction, str]:
    """The half-precision answer ``pred`` (of ``feats`` at precision ``at``) carried to fp32 (``tf32``:
    its matrix multiplies at the TF32 tensor peak) by the roofline's ratio (``fp32_extrapolation``), and
    the note that says so."""
    fp32 = gpu_datasheets.with_datasheets(feats.assign(precision="fp32"), sheets)
    if tf32:
        fp32 = fp32.assign(peak_fp32_flop_s=fp32["peak_tf32_flop_s"], peak_flop_s=fp32["peak_tf32_flop_s"])
    ratio = fp32_extrapolation.energy_ratio(fit, feats, inputs, fp32, roofline.as_fp32(inputs), pred.level)
    w = fp32_extrapolation.FP32_WIDENING
    carried = Prediction(pred.energy_j * ratio, pred.low_j * ratio / w, pred.high_j * ratio * w, pred.level)
    if tf32:
        return carried, (
            f"tf32 is extrapolated from laws fitted on half precision: the {at} answer times the roofline's "
            f"tf32/{at} energy ratio {float(ratio[0]):.2f} (fp32 tensors, twice the bytes; matrix "
            "multiplies and convolutions on the TF32 tensor cores at the datasheet's dense TF32 peak, as "
            "with torch.backends.cuda.matmul.allow_tf32 = True; attention as 3xTF32; the half-precision "
            "efficiencies carried over); no published TF32 point checks it")
    note = (f"fp32 is extrapolated from laws fitted on half precision: the {at} answer times the roofline's "
            f"fp32/{at} energy ratio {float(ratio[0]):.2f} (fp32 matrix multiplies at the datasheet's fp32 "
            "peak, PyTorch's default allow_tf32=False; convolutions on TF32; attention as 3xTF32; the "
            "half-precision efficiencies carried over); checked against arXiv 2511.17031's fp32 shift for "
            "FLUX.1-dev and SD 3.5 Large on an A100 (within 25%)")
    return carried, note


def fitted_on(law: Mapping[str, Any]) -> dict[str, Any]:
    """The points a stored law was fitted on: ``n_points``, ``models``, ``gpus``, ``sources`` (None
    where the law does not record one: a roofline names no architectures, a pooled one no GPU kinds)."""
    if law.get("kind") == "blend":
        parts = [fitted_on(p) for p in law.get("parts", {}).values()]

        def union(key: str) -> list[str] | None:
            known = [set(p[key]) for p in parts if p[key] is not None]
            return sorted(set().union(*known)) if known else None

        counts = [p["n_points"] for p in parts if p["n_points"] is not None]
        return {"n_points": max(counts) if counts else None, "models": union("models"),
                "gpus": union("gpus"), "sources": union("sources")}
    if law.get("kind") == "roofline":
        consts = list(law.get("constants", []))
        gpus = sorted(str(c["gpu"]) for c in consts if c.get("gpu") not in (None, ALL))
        return {"n_points": sum(int(c.get("n_points") or 0) for c in consts) or None, "models": None,
                "gpus": gpus if law.get("by_gpu") else None,
                "sources": sorted({str(x) for c in consts for x in c.get("sources", [])}) or None}
    return {k: law.get(k) for k in ("n_points", "models", "gpus", "sources")}


def _listed(names: list[str] | None, most: int = 4) -> str:
    names = list(names or [])
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:most])} and {len(names) - most} more"


def _data_line(payload: dict[str, Any], chosen: _Choice, gpu: str, measured: bool, target: str) -> str:
    """The points the answering law was fitted on: the payload's points where the law holds them all,
    else the law's own (the dynamic laws rest on the points with idle power measured)."""
    if chosen.scope == "architecture":
        law = chosen.law
        return f"{law.get('n_points')} points of {', '.join(law.get('models', []))} measured by this workflow"
    counts = payload.get("points_by_source", {})
    on = fitted_on(chosen.law)
    same = (on["n_points"] in (None, payload.get("n_points"))
            and (on["sources"] is None or set(on["sources"]) == set(counts)))
    if same:
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        line = (f"{payload.get('n_points', 0)} single-GPU points ({parts}), {len(payload.get('models', []))} "
                f"architectures, GPU kinds {', '.join(payload.get('gpus', []))}")
    else:
        models = on["models"]
        sources = ", ".join(on["sources"] or []) or "sources not recorded"
        line = (f"{on['n_points']} single-GPU points ({sources})"
                + (f" of {len(models)} architecture(s) ({_listed(models)})" if models else "")
                + (f", GPU kind(s) {', '.join(on['gpus'])}" if on["gpus"] else ""))
        if target == "image_dynamic":
            line += ": the points with dynamic (idle-subtracted) energy"
    return line if measured else line + f" (not {gpu})"


def _fitted_notes(chosen: _Choice, model: str, gpu: str, measured: bool, target: str,
                  payload: Mapping[str, Any]) -> list[str]:
    """A note when the answering law was fitted on points of neither this architecture nor this GPU
    kind, where no held-out check covers that step (a law of one architecture, a law without the kind)."""
    if chosen.scope != "pooled":
        return []
    on = fitted_on(chosen.law)
    models, gpus = on["models"], on["gpus"]
    other_model = models is not None and model not in models and len(models) < 2
    other_gpu = measured and gpus is not None and gpu not in gpus
    if not (other_model or other_gpu):
        return []
    outside = " and ".join(w for w, on_ in ((f"architecture {model}", other_model),
                                            (f"GPU kind {gpu}", other_gpu)) if on_)
    where = (f"{_listed(models) if models else 'its architectures'} on "
             f"{_listed(gpus) if gpus else 'its GPU kinds'}")
    if target == "image_dynamic":
        return [f"dynamic (idle-subtracted) energy was measured only for {where} ({on['n_points']} points; "
                "idle power is measured by this workflow alone, the published sources report raw energy): "
                f"the {outside} lie outside them, so this answer carries that law over without a held-out "
                f"check; --energy raw rests on {payload.get('n_points')} points"]
    return [f"the answering law was fitted on {where} ({on['n_points']} points): the {outside} lie outside "
            "them, with no held-out check of that step"]


def _range_notes(payload: dict[str, Any], gpu: str, feats: pd.DataFrame) -> list[str]:
    """A note for every setting outside the range the laws were fitted on (for this GPU kind)."""
    ranges = payload.get("ranges", {}).get(gpu) or payload.get("ranges", {}).get(ALL, {})
    notes = []
    for col, unit, scale in (("flops", "TFLOP", 1e12), ("resolution", "px", 1), ("steps", "steps", 1),
                             ("batch", "images per batch", 1)):
        r = ranges.get(col)
        v = float(feats[col].iloc[0])
        if r and not (r[0] <= v <= r[1]):
            notes.append(f"{v / scale:,.4g} {unit} is outside the fitted range [{r[0] / scale:,.4g}, "
                         f"{r[1] / scale:,.4g}] {unit}: extrapolation")
    return notes


def _interval_rule(held: Mapping[str, Any], level: float) -> intervals.IntervalRule | None:
    """The interval rule stored with a candidate's held-out errors (older laws files: no widening)."""
    lo, hi = held.get("log_ratio_low"), held.get("log_ratio_high")
    if lo is None or hi is None:
        return None
    slope = float(held.get("slope") or intervals.MIN_SLOPE)
    return intervals.IntervalRule(float(lo), float(hi), slope, level, int(held.get("n_points", 0)),
                                  int(held.get("n_outside", 0)))


def resolve_model(model: str) -> tuple[zoo.ModelSpec, bool]:
    """(spec, from_path): a zoo name or a path to an architecture file."""
    from_path = Path(model).suffix in {".yaml", ".yml"}
    return zoo.load_spec(model), from_path
