"""The analysis steps the workflow runs: cross-validate the pooled models, then fit every law.

Which points enter what (``law_points``): the pooled models and their
cross-validation use single-GPU points of raw data, this workflow's and the
published sources' (ML.ENERGY v2, v3). Sources are pooled with the source as a
factor (``beta_source`` in the OLS laws, a launch cost, time factor and power
per source in the roofline model): every source measured raw whole-GPU energy,
but each software stack spends a little differently on the same work, and one
factor per source keeps that apart without throwing away the shared physics.
Figures quoted from a paper are not raw data: they get their own
per-architecture law (the paper's law on the paper's numbers) and never train
a pooled model. Multi-GPU rows are kept for their own figure.

``crossval`` fits each candidate without one architecture (leave-one-model-out,
reported per GPU kind) or without one GPU kind (leave-one-GPU-out, the kind
entering only through its datasheet). ``fit`` fits the paper's law per
architecture and source, the per-stage laws and every pooled candidate on all
points, picks one candidate for every GPU kind, measured or not: the smallest
90th-percentile error over all held-out points pooled (architectures left out
and GPU kinds left out), and writes what ``predict`` needs into one JSON: each
candidate's held-out interval rule (``intervals``) and, per GPU kind, the
newest software stack measured there (what an answer speaks for by default).
Baselines are scored on the same held-out points: the FLOPs-only law, the
paper's law and EcoLogits' constant energy per FLOP (``baselines``). Our own
candidates (the roofline across kinds, the law in FLOPs and kernels) carry a
shrunk offset per architecture in their fit (``offsets``), fitted fold by fold
like the rest; ``own_or_pooled`` tells ``predict`` whether an architecture this
workflow measured is answered by its own paper-form law or by the pooled model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ..sources import gpu_datasheets
from ..sources.schema import THIS_WORKFLOW, V1_DEFAULTS, single_gpu_raw
from . import baselines, crossval, intervals, offsets, powerlaw, roofline
from .analysis_io import LAWS_SCHEMA_VERSION
from .blend import BlendFit, heldout_blend, inverse_mse_weights, load_law, predict_law
from .crossval import ALL, Candidate
from .powerlaw import NotIdentifiable
from .targets import IMAGE_TARGETS, STAGE_TARGETS, TARGETS, Prediction, Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """The ``analysis:`` block of the config."""

    bootstrap: int = 1000
    seed: int = 20261126
    min_points: int = 4
    prediction_level: float = 0.90


#: Pooled OLS candidates: name -> optional terms besides log_A and alpha. A GPU kind enters through
#: its indicator (``beta_gpu``) where every kind predicted was in the fit; for a kind left out (or
#: never measured) the same candidate sees the GPU through its datasheet instead (``unseen_gpu_terms``).
POOLED_OLS: dict[str, tuple[str, ...]] = {
    "flops": ("beta_dtype", "beta_gpu", "beta_source"),
    "paper": (*powerlaw.PAPER_TERMS, "beta_source"),
    "flops_kernels": ("beta_dtype", "beta_gpu", "beta_source", "gamma_kernels"),
}
#: The terms of the mixed model's fixed part.
MIXED_TERMS = ("beta_dtype", "beta_gpu", "beta_source", "beta_res")
DESCRIPTIONS = {
    "flops": "pooled FLOPs-only power law (OLS; precision, GPU and source shifts)",
    "paper": "pooled paper-form law (OLS; precision, GPU kind, log(HW/256), source)",
    "flops_kernels": "pooled power law in FLOPs and kernel launches (OLS; precision, GPU and source shifts)",
    "mixed": "pooled law with a random intercept per architecture (MixedLM, REML)",
    "roofline": "roofline energy model, constants per GPU kind (time-fitted rates, static power fitted)",
    "roofline_idle": "roofline energy model per GPU kind, static power = measured idle power",
    "roofline_datasheet": "roofline energy model across GPU kinds: rates and powers in datasheet units, a "
                          "time factor per measured kind, trends in peak FLOP/s and J/FLOP for the others",
    "roofline_kernels": "the roofline model across GPU kinds and the power law in FLOPs and kernel launches, "
                        "averaged in logs, each weighted by its inverse held-out squared error",
    "ecologits": "EcoLogits' draft constant energy per FLOP (FLOPs x 1.1 x 3.73e-18 kWh; nothing fitted)",
}
#: Blends: name -> the candidates whose predictions it averages in logs (``blend``).
BLENDS = {"roofline_kernels": ("roofline_datasheet", "flops_kernels")}
#: Our candidates that carry an offset per architecture measured (``offsets``); the baselines do not.
WITH_OFFSETS = ("roofline_datasheet", "flops_kernels")
#: Candidates that fit nothing: scored held out beside the laws, never chosen.
UNFITTED = ("ecologits",)
#: The baselines every law is compared with in the tables: FLOPs only, the paper's law, EcoLogits.
BASELINES = ("flops", "paper", "ecologits")
#: The roofline candidates: (name, variant, constants per GPU kind). The one across kinds has a time
#: factor per measured kind and trends across kinds (``roofline.fit_roofline(gpu_factors=True)``).
ROOFLINES = (("roofline", "fitted_static", True), ("roofline_idle", "idle_static", True),
             ("roofline_datasheet", "fitted_static", False))
#: The FLOPs-only baseline every other candidate is compared with.
BASELINE = "flops"
#: Optional terms of per-stage laws: the text encoders do not see the resolution.
STAGE_OPTIONAL = {"text": ("beta_dtype", "beta_gpu"), "denoise": powerlaw.PAPER_TERMS,
                  "vae": powerlaw.PAPER_TERMS}

LAW_COLUMNS = [
    "target", "law", "scope", "source", "model", "kind", "status", "n_points", "r2_log", "sigma_log", "alpha",
    "alpha_se_hc3", "alpha_ci_low", "alpha_ci_high", "terms", "dropped", "condition_number", "n_bootstrap",
]
TERM_COLUMNS = ["target", "law", "scope", "source", "model", "term", "estimate", "se_hc3", "ci_low",
                "ci_high", "multiplier"]
ROOFLINE_COLUMNS = roofline.ROOFLINE_COLUMNS


class _BoundRoofline:
    """A roofline fit with the inputs of the points it predicts."""

    def __init__(self, fit: roofline.RooflineFit, inputs: roofline.RooflineInputs) -> None:
        self.fit, self.inputs = fit, inputs

    def predict(self, frame: pd.DataFrame, level: float) -> Prediction:
        return self.fit.predict(frame, self.inputs, level)


def with_offsets(fit: Any, frame: pd.DataFrame, target: Target, inputs: roofline.RooflineInputs) -> Any:
    """``fit`` with the shrunk offset of each architecture in ``frame`` from its residuals there."""
    pred = predict_law(fit, frame, inputs, 0.5)
    return replace(fit, model_offsets=offsets.residual_offsets(frame, target, pred.energy_j))


def prepare(energy: pd.DataFrame, flops_table: pd.DataFrame | None, ops: pd.DataFrame | None,
            sheets: Mapping[str, gpu_datasheets.Datasheet] | None = None
            ) -> tuple[pd.DataFrame, roofline.RooflineInputs]:
    """Points numbered 0..n-1 (``point_id``), with their GPU's datasheet, and their roofline inputs."""
    points = energy.reset_index(drop=True).assign(point_id=lambda f: np.arange(len(f)))
    for col in ("source", "quoted", "num_gpus"):
        if col not in points:
            points[col] = V1_DEFAULTS[col]
    points = gpu_datasheets.with_datasheets(points, sheets or {})
    inputs = roofline.build_inputs(points, ops, flops_table)
    if len(points) and inputs.granularity == "op":
        ids = points["point_id"].to_numpy()
        mismatch = np.abs(inputs.total_flops(ids) / points["flops"].astype(float).to_numpy() - 1)
        if np.nanmax(mismatch) > 1e-6:
            log.warning("per-op FLOPs differ from the energy table's by up to %.2g", np.nanmax(mismatch))
    return points, inputs


def enough(frame: pd.DataFrame, target: Target, settings: Settings) -> pd.DataFrame:
    """``frame``, or NotIdentifiable when it holds fewer than ``analysis.min_points`` points that
    ``target`` can be fitted on: every model (OLS, mixed, roofline) heeds the same minimum."""
    n = int(target.valid(frame).sum())
    if n < settings.min_points:
        raise NotIdentifiable(f"{n} points < min_points {settings.min_points}")
    return frame


def law_points(points: pd.DataFrame) -> pd.DataFrame:
    """Single-GPU points of raw data: what the pooled models are fitted and cross-validated on."""
    if points.empty:
        return points
    return points[single_gpu_raw(points).to_numpy()]


def unseen_gpu_terms(terms: tuple[str, ...]) -> tuple[str, ...]:
    """A law's terms for GPU kinds it never saw: the datasheet term in place of the GPU indicator."""
    return tuple("delta_phys" if t == "beta_gpu" else t for t in terms)


def candidates(target: Target, inputs: roofline.RooflineInputs, settings: Settings, unseen_gpu: bool = False
               ) -> list[Candidate]:
    """The pooled candidates for ``target``, ready for cross-validation (no bootstrap).

    ``unseen_gpu``: the forms that can predict a GPU kind left out of the fit (the
    datasheet term in place of the GPU indicator; the roofline model across kinds).
    """
    out = []

    def offset(name: str, fit: Any, train: pd.DataFrame) -> Any:
        return with_offsets(fit, train, target, inputs) if name in WITH_OFFSETS else fit

    for name, optional in POOLED_OLS.items():
        if unseen_gpu:
            optional = unseen_gpu_terms(optional)
        out.append(Candidate(name, DESCRIPTIONS[name], lambda tr, name=name, optional=optional: offset(
            name, powerlaw.fit_law(tr, target, scope="pooled", name=name, optional=optional, n_boot=0,
                                   rng=np.random.default_rng(0), min_points=settings.min_points), tr)))
    mixed_terms = unseen_gpu_terms(MIXED_TERMS) if unseen_gpu else MIXED_TERMS
    out.append(Candidate("mixed", DESCRIPTIONS["mixed"],
                         lambda tr: powerlaw.fit_mixed(enough(tr, target, settings), target, mixed_terms)))
    for name, variant, by_gpu in ROOFLINES:
        if unseen_gpu and by_gpu:
            continue
        cache: dict = {}
        out.append(Candidate(name, DESCRIPTIONS[name], lambda tr, v=variant, n=name, g=by_gpu, c=cache:
                             _BoundRoofline(offset(n, roofline.fit_roofline(
                                 enough(tr, target, settings), inputs, target, v, by_gpu=g, name=n,
                                 gpu_factors=not g, cache=c), tr), inputs)))
    if not target.dynamic:
        out.append(Candidate("ecologits", DESCRIPTIONS["ecologits"],
                             lambda tr: baselines.fit_ecologits(tr, target)))
    return out


def with_blends(predictions: pd.DataFrame) -> pd.DataFrame:
    """Held-out predictions with every blend's (``BLENDS``), built from its parts' held-out predictions."""
    if predictions.empty:
        return predictions
    extra = [heldout_blend(predictions[predictions["target"] == t], name, parts)
             for t in sorted(set(predictions["target"])) for name, parts in BLENDS.items()]
    extra = [e for e in extra if len(e)]
    return pd.concat([predictions, *extra], ignore_index=True) if extra else predictions


def run_crossval(points: pd.DataFrame, inputs: roofline.RooflineInputs, settings: Settings
                 ) -> dict[str, pd.DataFrame]:
    """Leave-one-model-out (reported per GPU kind and batch size) and leave-one-GPU-out predictions
    and metrics, on ``law_points``."""
    rows = law_points(points)
    lomo, logo = [], []
    for name in IMAGE_TARGETS:
        target = TARGETS[name]
        lomo.append(crossval.leave_one_out(rows, "model", candidates(target, inputs, settings), target,
                                           settings.prediction_level))
        logo.append(crossval.leave_one_out(rows, "gpu", candidates(target, inputs, settings, unseen_gpu=True),
                                           target, settings.prediction_level))
    lomo_p = pd.concat(lomo, ignore_index=True) if lomo else pd.DataFrame(columns=crossval.PREDICTION_COLUMNS)
    logo_p = pd.concat(logo, ignore_index=True) if logo else pd.DataFrame(columns=crossval.PREDICTION_COLUMNS)
    # Intervals as predict gives them (held-out quantiles widened with the distance), each group's
    # calibrated without it: the coverage in the metrics is a held-out coverage. A GPU kind left out
    # gets a symmetric interval (its shift's sign is its own; see intervals).
    lomo_p = intervals.cross_calibrated(with_blends(lomo_p), settings.prediction_level)
    logo_p = intervals.cross_calibrated(with_blends(logo_p), settings.prediction_level, symmetric=True)
    return {"lomo_predictions": lomo_p, "lomo_metrics": crossval.metrics(lomo_p),
            "lomo_batch_metrics": crossval.batch_metrics(lomo_p),
            "logo_predictions": logo_p, "logo_metrics": crossval.metrics(logo_p)}


# --------------------------------------------------------------------------- fit


def _law_row(fit: Any, target: str, law: str, scope: str, source: str, model: str) -> dict[str, Any]:
    coef = fit.coefficients
    terms = list(fit.design.terms)
    i = terms.index("alpha")
    se = fit.se_hc3 if hasattr(fit, "se_hc3") else fit.se
    ci_lo = fit.ci_low[i] if hasattr(fit, "ci_low") else np.nan
    ci_hi = fit.ci_high[i] if hasattr(fit, "ci_high") else np.nan
    return {"target": target, "law": law, "scope": scope, "source": source, "model": model, "kind": fit.kind,
            "status": "fitted", "n_points": fit.n_points, "r2_log": fit.r2_log,
            "sigma_log": getattr(fit, "sigma_log", np.sqrt(getattr(fit, "resid_var", np.nan))),
            "alpha": coef["alpha"], "alpha_se_hc3": se[i], "alpha_ci_low": ci_lo, "alpha_ci_high": ci_hi,
            "terms": " ".join(terms), "dropped": "; ".join(f"{t}: {r}" for t, r in fit.design.dropped),
            "condition_number": fit.design.condition_number, "n_bootstrap": getattr(fit, "n_bootstrap", 0)}


def _term_rows(fit: Any, target: str, law: str, scope: str, source: str, model: str) -> list[dict[str, Any]]:
    se = fit.se_hc3 if hasattr(fit, "se_hc3") else fit.se
    lo = getattr(fit, "ci_low", [np.nan] * len(fit.coef))
    hi = getattr(fit, "ci_high", [np.nan] * len(fit.coef))
    return [{"target": target, "law": law, "scope": scope, "source": source, "model": model, "term": t,
             "estimate": c, "se_hc3": s, "ci_low": a, "ci_high": b,
             "multiplier": float(np.exp(c)) if t.startswith(("beta_", "log_A")) else np.nan}
            for t, c, s, a, b in zip(fit.design.terms, fit.coef, se, lo, hi, strict=True)]


def _skip_row(target: str, law: str, scope: str, source: str, model: str, reason: str) -> dict[str, Any]:
    return {"target": target, "law": law, "scope": scope, "source": source, "model": model, "kind": "",
            "status": f"not fitted: {reason}", "n_points": 0}


def newest_stack(sources: pd.Series) -> str:
    """The newest software stack among ``sources``: this workflow's own where present (measured with the
    code at hand), else the latest release of a published source (``...-v3`` after ``...-v2``)."""
    def rank(name: str) -> tuple[bool, int, str]:
        version = re.search(r"-v(\d+)$", name)
        return (name == THIS_WORKFLOW, int(version.group(1)) if version else -1, name)

    names = sorted(set(sources.astype(str)), key=rank)
    return names[-1] if names else ""


def _coverage(rows: pd.DataFrame) -> dict[str, Any]:
    """What the pooled laws rest on: points per source, who measured each model on each kind, and the
    range of every setting (per GPU kind and overall), so ``predict`` can say when it extrapolates."""
    def ranges(frame: pd.DataFrame) -> dict[str, list[float]]:
        return intervals.ranges(frame, TARGETS["image"]) if len(frame) else {}

    measured_by = {f"{g}/{m}": str(part["source"].value_counts().index[0])
                   for (g, m), part in rows.groupby(["gpu", "model"])} if len(rows) else {}
    stacks = {str(g): newest_stack(part["source"]) for g, part in rows.groupby("gpu")} if len(rows) else {}
    return {"points_by_source": {str(s): int(n) for s, n in rows["source"].value_counts().items()}
            if len(rows) else {},
            "measured_by": measured_by, "stack_by_gpu": stacks,
            "stack_newest": newest_stack(rows["source"]) if len(rows) else "",
            "ranges": {ALL: ranges(rows), **{str(g): ranges(part) for g, part in rows.groupby("gpu")}}}


def _summary(points: pd.DataFrame) -> dict[str, Any]:
    def levels(col: str) -> list[str]:
        return sorted(set(points[col].astype(str))) if col in points else []

    return {"n_points": len(points), "models": levels("model"), "gpus": levels("gpu"),
            "precisions": levels("precision"), "sources": levels("source")}


def run_fit(
    points: pd.DataFrame,
    inputs: roofline.RooflineInputs,
    lomo_predictions: pd.DataFrame,
    lomo_metrics: pd.DataFrame,
    settings: Settings,
    logo_predictions: pd.DataFrame | None = None,
    logo_metrics: pd.DataFrame | None = None,
    sheets: Mapping[str, gpu_datasheets.Datasheet] | None = None,
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Every law on all points: the laws JSON payload and the tables (laws, law_terms, roofline)."""
    rows = law_points(points)
    payload: dict[str, Any] = {
        "schema_version": LAWS_SCHEMA_VERSION, "settings": asdict(settings), **_summary(rows),
        "roofline_granularity": inputs.granularity, "per_architecture": {}, "stage_laws": {}, "pooled": {},
        "datasheets": {k: s.to_config() for k, s in (sheets or {}).items()},
        "targets": {n: {"energy_column": t.energy_col, "flops_column": t.flops_col, "unit": t.unit}
                    for n, t in TARGETS.items()},
    }
    law_rows: list[dict[str, Any]] = []
    term_rows: list[dict[str, Any]] = []
    roof_rows: list[dict[str, Any]] = []
    empty = {"laws": pd.DataFrame(columns=LAW_COLUMNS), "law_terms": pd.DataFrame(columns=TERM_COLUMNS),
             "roofline": pd.DataFrame(columns=ROOFLINE_COLUMNS)}
    if points.empty:
        payload.update(status="no data", reason="no measured points in the energy table")
        return payload, empty
    payload["status"] = "ok"
    payload.update(_coverage(rows))

    def per_model(frame: pd.DataFrame, target: Target, law: str, optional: Sequence[str],
                  store: dict[str, Any]) -> None:
        """The law per (source, model): within one source, where its FLOPs vary."""
        for (source, model), part in frame.groupby(["source", "model"], sort=True):
            try:
                fit = powerlaw.fit_law(part, target, scope="architecture", name=law, optional=optional,
                                       n_boot=settings.bootstrap,
                                       rng=powerlaw.child_rng(settings.seed, target.name, law, str(source),
                                                              str(model)),
                                       min_points=settings.min_points)
            except NotIdentifiable as exc:
                law_rows.append(_skip_row(target.name, law, "architecture", str(source), str(model),
                                          str(exc)))
                continue
            store.setdefault(str(source), {})[str(model)] = fit.to_dict()
            law_rows.append(_law_row(fit, target.name, law, "architecture", str(source), str(model)))
            term_rows.extend(_term_rows(fit, target.name, law, "architecture", str(source), str(model)))

    single = points[(points["num_gpus"].astype(float) == 1).to_numpy()]
    for name in IMAGE_TARGETS:
        payload["per_architecture"][name] = {}
        per_model(single, TARGETS[name], "paper", powerlaw.PAPER_TERMS, payload["per_architecture"][name])
    for name in STAGE_TARGETS:
        target = TARGETS[name]
        optional = STAGE_OPTIONAL[target.stage]
        store: dict[str, Any] = {"architecture": {}}
        per_model(rows, target, "stage", optional, store["architecture"])
        try:
            fit = powerlaw.fit_law(rows, target, scope="pooled", name="stage", optional=optional,
                                   n_boot=settings.bootstrap,
                                   rng=powerlaw.child_rng(settings.seed, name, "pooled"),
                                   cluster_col="model", min_points=settings.min_points)
            store["pooled"] = fit.to_dict()
            law_rows.append(_law_row(fit, name, "stage", "pooled", "all", "all"))
            term_rows.extend(_term_rows(fit, name, "stage", "pooled", "all", "all"))
        except NotIdentifiable as exc:
            law_rows.append(_skip_row(name, "stage", "pooled", "all", "all", str(exc)))
        payload["stage_laws"][name] = store

    for name in IMAGE_TARGETS:
        target = TARGETS[name]
        entry: dict[str, Any] = {"candidates": {}}
        entry["unseen_gpu_candidates"] = {}
        for unseen, store, scope in ((False, entry["candidates"], "pooled"),
                                     (True, entry["unseen_gpu_candidates"], "pooled, GPU by datasheet")):
            for cand in [*POOLED_OLS, "mixed"]:
                try:
                    fit = _fit_pooled(rows, target, cand, settings, unseen)
                    if cand in WITH_OFFSETS:
                        fit = with_offsets(fit, rows, target, inputs)
                except NotIdentifiable as exc:
                    law_rows.append(_skip_row(name, cand, scope, "all", "all", str(exc)))
                    entry.setdefault("not_fitted", {})[f"{cand} ({scope})"] = str(exc)
                    continue
                store[cand] = {"law": fit.to_dict(), "description": DESCRIPTIONS[cand]}
                law_rows.append(_law_row(fit, name, cand, scope, "all", "all"))
                term_rows.extend(_term_rows(fit, name, cand, scope, "all", "all"))
        for cand, variant, by_gpu in ROOFLINES:
            try:
                rf = roofline.fit_roofline(enough(rows, target, settings), inputs, target, variant,
                                           by_gpu=by_gpu, name=cand,
                                           gpu_factors=not by_gpu)
                if cand in WITH_OFFSETS:
                    rf = with_offsets(rf, rows, target, inputs)
            except NotIdentifiable as exc:
                law_rows.append(_skip_row(name, cand, "pooled", "all", "all", str(exc)))
                entry.setdefault("not_fitted", {})[cand] = str(exc)
                continue
            entry["candidates"][cand] = {"law": rf.to_dict()}
            if not by_gpu:
                entry["unseen_gpu_candidates"][cand] = {"law": rf.to_dict(),
                                                        "description": DESCRIPTIONS[cand]}
            roof_rows.extend(roofline.constants_rows(rf, cand))
        held = pooled_heldout(lomo_predictions, logo_predictions, name)
        for cand, parts in BLENDS.items():
            weights = inverse_mse_weights(held, parts) if len(held) else None
            for store in (entry["candidates"], entry["unseen_gpu_candidates"]):
                if all(p in store for p in parts):
                    blend = BlendFit(name, cand, {p: load_law(store[p]["law"]) for p in parts}, weights or {})
                    store[cand] = {"law": blend.to_dict(), "description": DESCRIPTIONS[cand]}
        _select(entry, name, rows, lomo_predictions, lomo_metrics, logo_predictions, logo_metrics, settings)
        payload["pooled"][name] = entry
        payload.setdefault("own_or_pooled", {})[name] = own_or_pooled(
            rows, inputs, target, payload["per_architecture"][name].get(THIS_WORKFLOW, {}), entry)
    tables = {
        "laws": pd.DataFrame(law_rows).reindex(columns=LAW_COLUMNS),
        "law_terms": pd.DataFrame(term_rows).reindex(columns=TERM_COLUMNS),
        "roofline": pd.DataFrame(roof_rows).reindex(columns=ROOFLINE_COLUMNS),
    }
    return payload, tables


def own_or_pooled(rows: pd.DataFrame, inputs: roofline.RooflineInputs, target: Target,
                  own_laws: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per architecture this workflow measured: the RMS log error on its own points of its paper-form
    law and of the chosen pooled model, and which of the two ``predict`` answers with (the smaller).

    Why: the paper's form, one power of FLOPs and of the image area, cannot follow a launch-bound
    architecture (SD 1.5 on our H200 is off by 13-16% at 512 and 1024 px), where the pooled model,
    its launch costs and its offset for that architecture, can.
    """
    chosen = entry.get("selected")
    if not chosen or chosen not in entry.get("candidates", {}):
        return {}
    pooled = load_law(entry["candidates"][chosen]["law"])
    out: dict[str, dict[str, Any]] = {}
    ours = rows[(rows["source"].astype(str) == THIS_WORKFLOW).to_numpy()]
    for model, law_dict in own_laws.items():
        part = ours[(ours["model"].astype(str) == model).to_numpy()]
        part = part[target.valid(part)]
        if part.empty:
            continue
        measured = np.log(target.energy_j(part))
        own = powerlaw.law_from_dict(law_dict).predict(part, 0.9).energy_j
        other = predict_law(pooled, part, inputs, 0.9).energy_j
        rms = {k: float(np.sqrt(np.mean((measured - np.log(v)) ** 2))) for k, v in (("own", own),
                                                                                     ("pooled", other))}
        out[model] = {"own_rms_log": rms["own"], "pooled_rms_log": rms["pooled"], "pooled": chosen,
                      "n_points": len(part), "answer": "architecture" if rms["own"] <= rms["pooled"]
                      else "pooled"}
    return out


_LOMO_KEYS = ("spearman", "kendall", "r2_log", "median_ape", "p90_ape", "max_ape", "coverage")


def _metric(metrics: pd.DataFrame | None, target: str, cand: str, gpu: str) -> dict[str, float]:
    if metrics is None or metrics.empty:
        return {}
    m = metrics[(metrics["target"] == target) & (metrics["candidate"] == cand)
                & (metrics["held_out"] == ALL) & (metrics["gpu"].astype(str) == gpu)]
    return {k: float(m.iloc[0][k]) for k in (*_LOMO_KEYS, "n_points")} if len(m) else {}


def _rule(predictions: pd.DataFrame | None, target: str, cand: str, level: float, gpu: str = ALL,
          symmetric: bool = False) -> dict[str, Any]:
    """The interval rule of ``cand`` from its held-out errors (on ``gpu``'s points, or all)."""
    if predictions is None or predictions.empty:
        return {"n_points": 0}
    p = predictions[(predictions["target"] == target) & (predictions["candidate"] == cand)]
    if gpu != ALL:
        p = p[p["gpu"].astype(str) == gpu]
    dist = p["distance"] if "distance" in p else pd.Series(0.0, index=p.index)
    rule = intervals.calibrate(p["log_ratio"].to_numpy(float), dist.to_numpy(float), level, symmetric,
                               None if symmetric else p["held_out"].astype(str).to_numpy())
    if rule is None:
        return {"n_points": 0}
    return {"log_ratio_low": rule.lo, "log_ratio_high": rule.hi, "n_groups": int(p["held_out"].nunique()),
            **rule.to_dict()}


def pooled_heldout(lomo_predictions: pd.DataFrame, logo_predictions: pd.DataFrame | None, target: str
                   ) -> pd.DataFrame:
    """Every held-out prediction of ``target``: architectures left out and GPU kinds left out together."""
    parts = [p[p["target"] == target] for p in (lomo_predictions, logo_predictions)
             if p is not None and not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=crossval.PREDICTION_COLUMNS)


def choose_one(lomo_predictions: pd.DataFrame, logo_predictions: pd.DataFrame | None, target: str,
               fitted: Sequence[str], unseen: Sequence[str]) -> tuple[str | None, str]:
    """The one model for every GPU kind: the smallest P90 (then median) absolute percentage error over
    all held-out points pooled (left out by architecture and by GPU kind), among the fitted candidates
    that predict both; without a leave-one-GPU-out, by leave-one-model-out alone."""
    pooled = pooled_heldout(lomo_predictions, logo_predictions, target)
    both = [c for c in fitted if c in unseen and c not in UNFITTED]
    has_logo = logo_predictions is not None and not logo_predictions.empty and len(both)
    names = both if has_logo else [c for c in fitted if c not in UNFITTED]
    if not has_logo:
        pooled = lomo_predictions[lomo_predictions["target"] == target] if not lomo_predictions.empty \
            else pooled
    scores = []
    for cand in names:
        ape = pooled.loc[pooled["candidate"] == cand, "ape"].astype(float).to_numpy()
        if len(ape):
            scores.append((-len(ape), float(np.percentile(ape, 90)), float(np.median(ape)), cand))
    if not scores:
        return None, "no cross-validation (fewer than 2 architectures): the FLOPs-only law"
    best = min(scores)
    what = ("architectures and GPU kinds left out, pooled over kinds" if has_logo
            else "architectures left out, pooled over kinds")
    return best[3], f"smallest P90 absolute percentage error over {-best[0]} held-out points ({what})"


def _select(entry: dict[str, Any], target: str, rows: pd.DataFrame, lomo_predictions: pd.DataFrame,
            lomo_metrics: pd.DataFrame, logo_predictions: pd.DataFrame | None,
            logo_metrics: pd.DataFrame | None, settings: Settings) -> None:
    """One candidate for every GPU kind (``choose_one``), and every candidate's interval rules."""
    names = list(entry["candidates"])
    gpus = sorted(set(rows["gpu"].astype(str))) if len(rows) else []
    level = settings.prediction_level
    for cand, d in entry["candidates"].items():
        d["description"] = DESCRIPTIONS[cand]
        d["lomo"] = {gpu: {**_rule(lomo_predictions, target, cand, level, gpu),
                           **_metric(lomo_metrics, target, cand, gpu)} for gpu in [ALL, *gpus]}
    for cand, d in entry["unseen_gpu_candidates"].items():
        d["logo"] = _metric(logo_metrics, target, cand, ALL)
        d["logo_interval"] = _rule(logo_predictions, target, cand, level, symmetric=True)
    unseen = list(entry["unseen_gpu_candidates"])
    chosen, why = choose_one(lomo_predictions, logo_predictions, target, names, unseen)
    fallback = BASELINE if BASELINE in names else (sorted(names)[0] if names else None)
    entry["selected"] = chosen or fallback
    entry["selection"] = why
    entry["selected_by_gpu"] = {g: entry["selected"] for g in gpus}
    logo_best = (crossval.select_candidate(logo_metrics, target, [c for c in unseen if c not in UNFITTED])
                 if logo_metrics is not None and not logo_metrics.empty else None)
    entry["selected_unmeasured_gpu"] = (entry["selected"] if entry["selected"] in unseen
                                        else logo_best or (BASELINE if BASELINE in unseen else None))
    entry["selection_unmeasured_gpu"] = (
        "the same model, the GPU kind through its datasheet" if entry["selected"] in unseen
        else "smallest leave-one-GPU-out P90 absolute percentage error" if logo_best
        else "no leave-one-GPU-out (one GPU kind): the FLOPs-only law")
    entry["baseline"] = BASELINE
    entry["baselines"] = list(BASELINES)


def _fit_pooled(points: pd.DataFrame, target: Target, cand: str, settings: Settings, unseen_gpu: bool = False
                ) -> powerlaw.LawFit | powerlaw.MixedFit:
    """A pooled law on all points; OLS ones with a bootstrap that resamples whole architectures."""
    terms = MIXED_TERMS if cand == "mixed" else POOLED_OLS[cand]
    if unseen_gpu:
        terms = unseen_gpu_terms(terms)
    if cand == "mixed":
        return powerlaw.fit_mixed(enough(points, target, settings), target, terms)
    return powerlaw.fit_law(points, target, scope="pooled", name=cand, optional=terms,
                            n_boot=settings.bootstrap, cluster_col="model", min_points=settings.min_points,
                            rng=powerlaw.child_rng(settings.seed, target.name, cand))
