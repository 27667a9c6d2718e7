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
a pooled model. Multi-GPU rows feed the multi-GPU law (``parallelism``) and its figure.

``crossval`` cross-validates every candidate, nested (``nested``): each
architecture left out in turn (reported per GPU kind), and each GPU kind left
out in turn (the kind entering only through its datasheet), every choice made
from data made inside the outer fold (``choice``); the non-nested held-out
predictions stay beside as a diagnostic. ``fit`` fits the paper's law per
architecture and source, the per-stage laws and every pooled candidate on all
points, makes the same choice (``choice``) on all held-out errors: one law for
every GPU kind, the simplest within one standard error of the best, a kind
known by its datasheet only answered by the same law; and writes what
``predict`` needs into one JSON: each candidate's held-out interval rules
(``intervals``) and, per GPU kind, the newest software stack measured there
(what an answer speaks for by default). Baselines are scored on the same folds:
one energy per FLOP per GPU kind, the FLOPs-only law, the paper's law and
EcoLogits' constant energy per FLOP (``baselines``). ``own_or_pooled`` tells
``predict`` whether an architecture this workflow measured is answered by its
own paper-form law or by the pooled model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..sources import gpu_datasheets
from ..sources.schema import THIS_WORKFLOW, V1_DEFAULTS, single_gpu_raw
from . import baselines, choice, crossval, intervals, nested, powerlaw, roofline
from .analysis_io import LAWS_SCHEMA_VERSION
from .blend import BlendFit, load_law, predict_law
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
    #: Processes the cross-validation's fits run in (not a setting of the laws: never stored).
    workers: int = 1


#: Pooled OLS candidates: name -> optional terms besides log_A and alpha. A GPU kind enters through
#: its indicator (``beta_gpu``) where every kind predicted was in the fit; for a kind left out (or
#: never measured) the same candidate sees the GPU through its datasheet instead (``unseen_gpu_terms``).
POOLED_OLS: dict[str, tuple[str, ...]] = {
    "flops": ("beta_dtype", "beta_gpu", "beta_source"),
    "paper": (*powerlaw.PAPER_TERMS, "beta_source"),
    "flops_kernels": ("beta_dtype", "beta_gpu", "beta_source", "gamma_kernels"),
}
DESCRIPTIONS = {
    "flops": "pooled FLOPs-only power law (OLS; precision, GPU and source shifts)",
    "paper": "pooled paper-form law (OLS; precision, GPU kind, log(HW/256), source)",
    "flops_kernels": "pooled power law in FLOPs and kernel launches (OLS; precision, GPU and source shifts)",
    "roofline_datasheet": "roofline energy model across GPU kinds: rates and powers in datasheet units, a "
                          "time factor per measured kind, trends in peak FLOP/s and J/FLOP for the others",
    "roofline_kernels": "the roofline model across GPU kinds and the power law in FLOPs and kernel launches, "
                        "averaged in logs, each weighted by its inverse held-out squared error",
    "ecologits": "EcoLogits' draft constant energy per FLOP (FLOPs x 1.1 x 3.73e-18 kWh; nothing fitted)",
    "jpf": "one constant energy per FLOP per GPU kind (a kind outside the fit: scaled by its datasheet's "
           "power limit / peak)",
}
#: Candidates that fit nothing: scored held out beside the laws, never chosen.
UNFITTED = choice.UNFITTED
#: The baselines every law is compared with in the tables: one J/FLOP per GPU kind, FLOPs only, the
#: paper's law, EcoLogits.
BASELINES = ("jpf", "flops", "paper", "ecologits")
#: The roofline model: one fit across GPU kinds in datasheet units, a time factor per measured kind and
#: trends across kinds for the others (``roofline.fit_roofline(gpu_factors=True)``), static power fitted.
ROOFLINE = "roofline_datasheet"
ROOFLINE_VARIANT = "fitted_static"
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


def candidates(target: Target, inputs: roofline.RooflineInputs, settings: Settings, unseen_gpu: bool = False,
               starts: dict[str, Any] | None = None) -> list[Candidate]:
    """The pooled candidates for ``target``, ready for cross-validation (no bootstrap).

    ``unseen_gpu``: the forms that can predict a GPU kind left out of the fit (the
    datasheet term in place of the GPU indicator; the roofline model across kinds).
    ``starts``: shared between calls, where the roofline model's fit on all points is kept once made
    (``Candidate.warm``): every fold's fit starts from it.
    """
    out = []
    starts = {} if starts is None else starts

    for name, optional in POOLED_OLS.items():
        if unseen_gpu:
            optional = unseen_gpu_terms(optional)
        out.append(Candidate(name, DESCRIPTIONS[name], lambda tr, name=name, optional=optional:
                             powerlaw.fit_law(tr, target, scope="pooled", name=name, optional=optional,
                                              n_boot=0, rng=np.random.default_rng(0),
                                              min_points=settings.min_points)))

    def roof(train: pd.DataFrame) -> roofline.RooflineFit:
        return roofline.fit_roofline(enough(train, target, settings), inputs, target, ROOFLINE_VARIANT,
                                     by_gpu=False, name=ROOFLINE, gpu_factors=True,
                                     start=starts.get(target.name))

    def warm(rows: pd.DataFrame) -> None:
        if target.name not in starts:
            try:
                starts[target.name] = roof(rows)
            except NotIdentifiable:
                starts[target.name] = None

    out.append(Candidate(ROOFLINE, DESCRIPTIONS[ROOFLINE],
                         lambda tr: _BoundRoofline(roof(tr), inputs), warm))
    out.append(Candidate("jpf", DESCRIPTIONS["jpf"],
                         lambda tr: baselines.fit_jpf(enough(tr, target, settings), target)))
    if not target.dynamic:
        out.append(Candidate("ecologits", DESCRIPTIONS["ecologits"],
                             lambda tr: baselines.fit_ecologits(tr, target)))
    return out


def with_blends(predictions: pd.DataFrame) -> pd.DataFrame:
    """Held-out predictions with every blend's (``choice.BLENDS``), from its parts' held-out predictions."""
    if predictions.empty:
        return predictions
    parts = [choice.with_blends(predictions[predictions["target"] == t])
             for t in sorted(set(predictions["target"]))]
    return pd.concat(parts, ignore_index=True)


#: The tables ``run_crossval`` writes: the nested ones (the headline) and the non-nested diagnostics.
CROSSVAL_TABLES = ("nested_lomo_predictions", "nested_lomo_metrics", "nested_logo_predictions",
                   "nested_logo_metrics", "lomo_predictions", "lomo_metrics", "lomo_batch_metrics",
                   "logo_predictions", "logo_metrics")


def run_crossval(points: pd.DataFrame, inputs: roofline.RooflineInputs, settings: Settings
                 ) -> dict[str, pd.DataFrame]:
    """Nested leave-one-model-out and leave-one-GPU-out (the headline: ``nested``), and the non-nested
    held-out predictions beside them as a diagnostic, on ``law_points``.

    Non-nested: every group predicted by fits without it, blends weighted and intervals calibrated on
    the other groups' errors (as every earlier design was judged). A GPU kind left out gets a symmetric
    interval (its shift's sign is its own; see ``intervals``)."""
    rows = law_points(points)
    inputs = inputs.subset(rows["point_id"].to_numpy()) if len(rows) else inputs
    level = settings.prediction_level
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in CROSSVAL_TABLES}
    for name in IMAGE_TARGETS:
        target = TARGETS[name]
        starts: dict[str, Any] = {}

        def folds(frame: pd.DataFrame, by: str, unseen: bool, inner: bool = True,
                  target: Target = target, starts: dict[str, Any] = starts) -> pd.DataFrame:
            return nested.fold_predictions(frame, by, candidates(target, inputs, settings, unseen, starts),
                                           target, level, inner, settings.workers)

        lomo, logo = folds(rows, "model", False), folds(rows, "gpu", True)
        kinds = sorted(set(logo["held_out"].astype(str))) if len(logo) else []
        without = {k: folds(rows[(rows["gpu"].astype(str) != k).to_numpy()], "model", False, inner=False)
                   for k in kinds}
        tables["lomo_predictions"].append(nested.diagnostic_predictions(lomo, level))
        tables["logo_predictions"].append(nested.diagnostic_predictions(logo, level, symmetric=True))
        tables["nested_lomo_predictions"].append(nested.nested_predictions(lomo, level))
        tables["nested_logo_predictions"].append(nested.nested_unseen(logo, without, level))
    out = {}
    for name in (n for n in CROSSVAL_TABLES if n.endswith("predictions")):
        parts = [p for p in tables[name] if len(p)]
        out[name] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=crossval.PREDICTION_COLUMNS)
    for prefix in ("nested_lomo", "nested_logo", "lomo", "logo"):
        out[f"{prefix}_metrics"] = crossval.metrics(out[f"{prefix}_predictions"])
    out["lomo_batch_metrics"] = crossval.batch_metrics(out["lomo_predictions"])
    return out


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


def architectures_of(rows: pd.DataFrame) -> dict[str, str]:
    """Model -> its kind of denoiser (``unet``, ``dit``, ``mmdit``): what a software stack has run."""
    if "architecture" not in rows or rows.empty:
        return {}
    return {str(m): str(a) for m, a in rows.groupby("model")["architecture"].first().items()}


def _coverage(rows: pd.DataFrame) -> dict[str, Any]:
    """What the pooled laws rest on: points per source, who measured each model on each kind, and the
    range of every setting (per GPU kind and overall), so ``predict`` can say when it extrapolates."""
    def ranges(frame: pd.DataFrame) -> dict[str, list[float]]:
        return intervals.ranges(frame, TARGETS["image"]) if len(frame) else {}

    measured_by = {f"{g}/{m}": str(part["source"].value_counts().index[0])
                   for (g, m), part in rows.groupby(["gpu", "model"])} if len(rows) else {}
    return {"points_by_source": {str(s): int(n) for s, n in rows["source"].value_counts().items()}
            if len(rows) else {},
            "measured_by": measured_by,
            "architecture_by_model": architectures_of(rows),
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
            for cand in POOLED_OLS:
                try:
                    fit = _fit_pooled(rows, target, cand, settings, unseen)
                except NotIdentifiable as exc:
                    law_rows.append(_skip_row(name, cand, scope, "all", "all", str(exc)))
                    entry.setdefault("not_fitted", {})[f"{cand} ({scope})"] = str(exc)
                    continue
                store[cand] = {"law": fit.to_dict(), "description": DESCRIPTIONS[cand]}
                law_rows.append(_law_row(fit, name, cand, scope, "all", "all"))
                term_rows.extend(_term_rows(fit, name, cand, scope, "all", "all"))
        try:
            jpf = baselines.fit_jpf(enough(rows, target, settings), target)
            for store in (entry["candidates"], entry["unseen_gpu_candidates"]):
                store["jpf"] = {"law": jpf.to_dict(), "description": DESCRIPTIONS["jpf"]}
        except NotIdentifiable as exc:
            entry.setdefault("not_fitted", {})["jpf"] = str(exc)
        try:
            rf = roofline.fit_roofline(enough(rows, target, settings), inputs, target, ROOFLINE_VARIANT,
                                       by_gpu=False, name=ROOFLINE, gpu_factors=True)
            for store in (entry["candidates"], entry["unseen_gpu_candidates"]):
                store[ROOFLINE] = {"law": rf.to_dict(), "description": DESCRIPTIONS[ROOFLINE]}
            roof_rows.extend(roofline.constants_rows(rf, ROOFLINE))
        except NotIdentifiable as exc:
            law_rows.append(_skip_row(name, ROOFLINE, "pooled", "all", "all", str(exc)))
            entry.setdefault("not_fitted", {})[ROOFLINE] = str(exc)
        # One procedure for every GPU kind: the candidate and the blends' weights from architectures left
        # out (many groups); a kind known by its datasheet only gets the same candidate's datasheet form,
        # its interval also bounded by the kinds left out (``choice.unseen_rules``).
        measured = _decide(lomo_predictions, name, settings.prediction_level)
        kinds = _decide(logo_predictions, name, settings.prediction_level, symmetric=True)
        for store in (entry["candidates"], entry["unseen_gpu_candidates"]):
            for cand, parts in choice.BLENDS.items():
                if all(p in store for p in parts):
                    blend = BlendFit(name, cand, {p: load_law(store[p]["law"]) for p in parts},
                                     measured.weights.get(cand) or {})
                    store[cand] = {"law": blend.to_dict(), "description": DESCRIPTIONS[cand]}
        _select(entry, name, rows, measured, measured.with_rules(choice.unseen_rules(measured, kinds.rules)),
                lomo_metrics, logo_metrics)
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
    its launch costs, can.
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


def _decide(predictions: pd.DataFrame | None, target: str, level: float, symmetric: bool = False
            ) -> choice.Choice:
    """The procedure (``choice.choose``) on every held-out prediction of ``target`` (blends left out: the
    procedure builds them from their parts)."""
    if predictions is None or predictions.empty:
        return choice.Choice(None, "no cross-validation (fewer than 2 groups)")
    p = predictions[(predictions["target"] == target) & ~predictions["candidate"].isin(list(choice.BLENDS))]
    return choice.choose(p, level, symmetric=symmetric)


def rule_dict(rule: intervals.IntervalRule | None) -> dict[str, Any]:
    """An interval rule as the laws file stores it (``predict`` reads it back)."""
    if rule is None:
        return {"n_points": 0}
    return {"log_ratio_low": rule.lo, "log_ratio_high": rule.hi, **rule.to_dict()}


def _select(entry: dict[str, Any], target: str, rows: pd.DataFrame, measured: choice.Choice,
            unmeasured: choice.Choice, lomo_metrics: pd.DataFrame | None,
            logo_metrics: pd.DataFrame | None) -> None:
    """The procedure's answers on all held-out errors: the candidate for measured GPU kinds (architectures
    left out) and for kinds known by their datasheet only (kinds left out), every candidate's interval
    rules, and the held-out metrics beside them."""
    names = list(entry["candidates"])
    gpus = sorted(set(rows["gpu"].astype(str))) if len(rows) else []
    for cand, d in entry["candidates"].items():
        d["description"] = DESCRIPTIONS[cand]
        rule = measured.rules.get(cand)
        d["lomo"] = {gpu: {**rule_dict(rule),
                           **_metric(lomo_metrics, target, cand, gpu)}
                     for gpu in [ALL, *gpus]}
    for cand, d in entry["unseen_gpu_candidates"].items():
        d["logo"] = _metric(logo_metrics, target, cand, ALL)
        d["logo_interval"] = rule_dict(unmeasured.rules.get(cand))
    fallback = BASELINE if BASELINE in names else (sorted(names)[0] if names else None)
    chosen = measured.candidate if measured.candidate in names else fallback
    entry["selected"] = chosen
    entry["selection"] = measured.why if measured.candidate in names else \
        f"no cross-validation (fewer than 2 architectures): the {fallback} law"
    entry["selected_by_gpu"] = {g: chosen for g in gpus}
    unseen = list(entry["unseen_gpu_candidates"])
    if chosen in unseen:
        entry["selected_unmeasured_gpu"] = chosen
        entry["selection_unmeasured_gpu"] = ("the same candidate, the GPU kind through its datasheet; its "
                                             "interval also bounded by the GPU kinds left out")
    else:
        entry["selected_unmeasured_gpu"] = BASELINE if BASELINE in unseen else None
        entry["selection_unmeasured_gpu"] = f"the chosen law has no datasheet form: the {BASELINE} law"
    entry["baseline"] = BASELINE
    entry["baselines"] = list(BASELINES)


def _fit_pooled(points: pd.DataFrame, target: Target, cand: str, settings: Settings, unseen_gpu: bool = False
                ) -> powerlaw.LawFit:
    """A pooled law on all points, with a bootstrap that resamples whole architectures."""
    terms = POOLED_OLS[cand]
    if unseen_gpu:
        terms = unseen_gpu_terms(terms)
    return powerlaw.fit_law(points, target, scope="pooled", name=cand, optional=terms,
                            n_boot=settings.bootstrap, cluster_col="model", min_points=settings.min_points,
                            rng=powerlaw.child_rng(settings.seed, target.name, cand))
