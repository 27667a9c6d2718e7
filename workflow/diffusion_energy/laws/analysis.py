"""The analysis steps the workflow runs: cross-validate the pooled models, then fit every law.

``crossval`` fits each candidate pooled model without one architecture (or
GPU kind) at a time. ``fit`` fits the paper's law per architecture, the
per-stage laws and every pooled candidate on all points, picks the pooled
model with the smallest held-out error, and writes what ``predict`` needs
into one JSON. Both return plain tables and dicts; the CLI writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import crossval, powerlaw, roofline
from .analysis_io import LAWS_SCHEMA_VERSION
from .crossval import Candidate
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


#: Pooled OLS candidates: name -> optional terms besides log_A and alpha.
POOLED_OLS: dict[str, tuple[str, ...]] = {
    "flops": ("beta_dtype", "beta_gpu"),
    "paper": powerlaw.PAPER_TERMS,
    "flops_kernels": ("beta_dtype", "beta_gpu", "gamma_kernels"),
}
DESCRIPTIONS = {
    "flops": "pooled FLOPs-only power law (OLS; precision and GPU shifts)",
    "paper": "pooled paper-form law (OLS; + log(HW/256))",
    "flops_kernels": "pooled power law in FLOPs and kernel launches (OLS)",
    "mixed": "paper-form law, random intercept per architecture (MixedLM, REML)",
    "roofline": "roofline energy model, static power fitted",
    "roofline_idle": "roofline energy model, static power = idle power (the issue's form)",
}
#: The FLOPs-only baseline every other candidate is compared with.
BASELINE = "flops"
#: Optional terms of per-stage laws: the text encoders do not see the resolution.
STAGE_OPTIONAL = {"text": ("beta_dtype", "beta_gpu"), "denoise": powerlaw.PAPER_TERMS,
                  "vae": powerlaw.PAPER_TERMS}

LAW_COLUMNS = [
    "target", "law", "scope", "model", "kind", "status", "n_points", "r2_log", "sigma_log", "alpha",
    "alpha_se_hc3", "alpha_ci_low", "alpha_ci_high", "terms", "dropped", "condition_number", "n_bootstrap",
]
TERM_COLUMNS = ["target", "law", "scope", "model", "term", "estimate", "se_hc3", "ci_low", "ci_high",
                "multiplier"]
ROOFLINE_COLUMNS = [
    "target", "law", "variant", "granularity", "gpu", "n_points", "compute_tflop_per_s",
    "compute_fp32_tflop_per_s", "bandwidth_gb_per_s", "launch_us", "idle_power_w", "static_power_w",
    "energy_per_tflop_j", "energy_per_gb_j", "sigma_log",
]


class _BoundRoofline:
    """A roofline fit with the inputs of the points it predicts."""

    def __init__(self, fit: roofline.RooflineFit, inputs: roofline.RooflineInputs) -> None:
        self.fit, self.inputs = fit, inputs

    def predict(self, frame: pd.DataFrame, level: float) -> Prediction:
        return self.fit.predict(frame, self.inputs, level)


def prepare(energy: pd.DataFrame, flops_table: pd.DataFrame | None, ops: pd.DataFrame | None
            ) -> tuple[pd.DataFrame, roofline.RooflineInputs]:
    """Points numbered 0..n-1 (``point_id``) and their roofline inputs (op level when possible)."""
    points = energy.reset_index(drop=True).assign(point_id=lambda f: np.arange(len(f)))
    inputs = roofline.build_inputs(points, ops, flops_table)
    if len(points) and inputs.granularity == "op":
        ids = points["point_id"].to_numpy()
        mismatch = np.abs(inputs.total_flops(ids) / points["flops"].astype(float).to_numpy() - 1)
        if np.nanmax(mismatch) > 1e-6:
            log.warning("per-op FLOPs differ from the energy table's by up to %.2g", np.nanmax(mismatch))
    return points, inputs


def candidates(target: Target, inputs: roofline.RooflineInputs, settings: Settings, by_gpu: bool = True,
               ) -> list[Candidate]:
    """The pooled candidates for ``target``, ready for cross-validation (no bootstrap)."""
    out = []
    for name, optional in POOLED_OLS.items():
        out.append(Candidate(name, DESCRIPTIONS[name], lambda tr, name=name, optional=optional:
                             powerlaw.fit_law(tr, target, scope="pooled", name=name, optional=optional,
                                              n_boot=0, rng=np.random.default_rng(0),
                                              min_points=settings.min_points)))
    out.append(Candidate("mixed", DESCRIPTIONS["mixed"], lambda tr: powerlaw.fit_mixed(tr, target)))
    for name, variant in (("roofline", "fitted_static"), ("roofline_idle", "idle_static")):
        out.append(Candidate(name, DESCRIPTIONS[name], lambda tr, v=variant, n=name: _BoundRoofline(
            roofline.fit_roofline(tr, inputs, target, v, by_gpu=by_gpu, name=n), inputs)))
    return out


def run_crossval(points: pd.DataFrame, inputs: roofline.RooflineInputs, settings: Settings
                 ) -> dict[str, pd.DataFrame]:
    """Leave-one-model-out and (with several GPU kinds) leave-one-GPU-out predictions and metrics."""
    lomo, logo = [], []
    for name in IMAGE_TARGETS:
        target = TARGETS[name]
        lomo.append(crossval.leave_one_out(points, "model", candidates(target, inputs, settings),
                                           target, settings.prediction_level))
        logo.append(crossval.leave_one_out(points, "gpu", candidates(target, inputs, settings, by_gpu=False),
                                           target, settings.prediction_level))
    lomo_p = pd.concat(lomo, ignore_index=True) if lomo else pd.DataFrame(columns=crossval.PREDICTION_COLUMNS)
    logo_p = pd.concat(logo, ignore_index=True) if logo else pd.DataFrame(columns=crossval.PREDICTION_COLUMNS)
    return {"lomo_predictions": lomo_p, "lomo_metrics": crossval.metrics(lomo_p),
            "logo_predictions": logo_p, "logo_metrics": crossval.metrics(logo_p)}


# --------------------------------------------------------------------------- fit


def _law_row(fit: Any, target: str, law: str, scope: str, model: str) -> dict[str, Any]:
    coef = fit.coefficients
    terms = list(fit.design.terms)
    i = terms.index("alpha")
    se = fit.se_hc3 if hasattr(fit, "se_hc3") else fit.se
    ci_lo = fit.ci_low[i] if hasattr(fit, "ci_low") else np.nan
    ci_hi = fit.ci_high[i] if hasattr(fit, "ci_high") else np.nan
    return {"target": target, "law": law, "scope": scope, "model": model, "kind": fit.kind,
            "status": "fitted", "n_points": fit.n_points, "r2_log": fit.r2_log,
            "sigma_log": getattr(fit, "sigma_log", np.sqrt(getattr(fit, "resid_var", np.nan))),
            "alpha": coef["alpha"], "alpha_se_hc3": se[i], "alpha_ci_low": ci_lo, "alpha_ci_high": ci_hi,
            "terms": " ".join(terms), "dropped": "; ".join(f"{t}: {r}" for t, r in fit.design.dropped),
            "condition_number": fit.design.condition_number, "n_bootstrap": getattr(fit, "n_bootstrap", 0)}


def _term_rows(fit: Any, target: str, law: str, scope: str, model: str) -> list[dict[str, Any]]:
    se = fit.se_hc3 if hasattr(fit, "se_hc3") else fit.se
    lo = getattr(fit, "ci_low", [np.nan] * len(fit.coef))
    hi = getattr(fit, "ci_high", [np.nan] * len(fit.coef))
    return [{"target": target, "law": law, "scope": scope, "model": model, "term": t, "estimate": c,
             "se_hc3": s, "ci_low": a, "ci_high": b,
             "multiplier": float(np.exp(c)) if t.startswith(("beta_", "log_A")) else np.nan}
            for t, c, s, a, b in zip(fit.design.terms, fit.coef, se, lo, hi, strict=True)]


def _skip_row(target: str, law: str, scope: str, model: str, reason: str) -> dict[str, Any]:
    return {"target": target, "law": law, "scope": scope, "model": model, "kind": "", "status":
            f"not fitted: {reason}", "n_points": 0}


def _roofline_rows(fit: roofline.RooflineFit, law: str) -> list[dict[str, Any]]:
    return [{"target": fit.target, "law": law, "variant": fit.variant, "granularity": fit.granularity,
             "gpu": c.gpu, "n_points": c.n_points, "compute_tflop_per_s": c.compute_flop_per_s / 1e12,
             "compute_fp32_tflop_per_s": c.compute_fp32_flop_per_s / 1e12,
             "bandwidth_gb_per_s": c.bandwidth_byte_per_s / 1e9, "launch_us": c.launch_s * 1e6,
             "idle_power_w": c.idle_power_w, "static_power_w": c.static_power_w,
             "energy_per_tflop_j": c.energy_per_flop_j * 1e12, "energy_per_gb_j": c.energy_per_byte_j * 1e9,
             "sigma_log": c.sigma_log} for c in fit.constants]


def _summary(points: pd.DataFrame) -> dict[str, Any]:
    return {"n_points": len(points), "models": sorted(set(points["model"].astype(str))),
            "gpus": sorted(set(points["gpu"].astype(str))),
            "precisions": sorted(set(points["precision"].astype(str)))}


def run_fit(
    points: pd.DataFrame,
    inputs: roofline.RooflineInputs,
    lomo_predictions: pd.DataFrame,
    lomo_metrics: pd.DataFrame,
    settings: Settings,
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Every law on all points: the laws JSON payload and the tables (laws, law_terms, roofline)."""
    payload: dict[str, Any] = {
        "schema_version": LAWS_SCHEMA_VERSION, "settings": asdict(settings), **_summary(points),
        "roofline_granularity": inputs.granularity, "per_architecture": {}, "stage_laws": {}, "pooled": {},
        "targets": {n: {"energy_column": t.energy_col, "flops_column": t.flops_col, "unit": t.unit}
                    for n, t in TARGETS.items()},
    }
    law_rows: list[dict[str, Any]] = []
    term_rows: list[dict[str, Any]] = []
    roof_rows: list[dict[str, Any]] = []
    if points.empty:
        payload.update(status="no data", reason="no measured grid points in the energy table")
        return payload, {"laws": pd.DataFrame(columns=LAW_COLUMNS), "law_terms": pd.DataFrame(
            columns=TERM_COLUMNS), "roofline": pd.DataFrame(columns=ROOFLINE_COLUMNS)}
    payload["status"] = "ok"

    def per_model(target: Target, law: str, optional: Sequence[str], store: dict[str, Any]) -> None:
        for model, part in points.groupby("model", sort=True):
            try:
                rng = powerlaw.child_rng(settings.seed, target.name, law, str(model))
                fit = powerlaw.fit_law(part, target, scope="architecture", name=law, optional=optional,
                                       n_boot=settings.bootstrap, rng=rng, min_points=settings.min_points)
            except NotIdentifiable as exc:
                law_rows.append(_skip_row(target.name, law, "architecture", str(model), str(exc)))
                continue
            store[str(model)] = fit.to_dict()
            law_rows.append(_law_row(fit, target.name, law, "architecture", str(model)))
            term_rows.extend(_term_rows(fit, target.name, law, "architecture", str(model)))

    for name in IMAGE_TARGETS:
        target = TARGETS[name]
        payload["per_architecture"][name] = {}
        per_model(target, "paper", powerlaw.PAPER_TERMS, payload["per_architecture"][name])
    for name in STAGE_TARGETS:
        target = TARGETS[name]
        optional = STAGE_OPTIONAL[target.stage]
        store: dict[str, Any] = {"architecture": {}}
        per_model(target, "stage", optional, store["architecture"])
        try:
            fit = powerlaw.fit_law(points, target, scope="pooled", name="stage", optional=optional,
                                   n_boot=settings.bootstrap,
                                   rng=powerlaw.child_rng(settings.seed, name, "pooled"),
                                   cluster_col="model", min_points=settings.min_points)
            store["pooled"] = fit.to_dict()
            law_rows.append(_law_row(fit, name, "stage", "pooled", "all"))
            term_rows.extend(_term_rows(fit, name, "stage", "pooled", "all"))
        except NotIdentifiable as exc:
            law_rows.append(_skip_row(name, "stage", "pooled", "all", str(exc)))
        payload["stage_laws"][name] = store

    for name in IMAGE_TARGETS:
        target = TARGETS[name]
        entry: dict[str, Any] = {"candidates": {}}
        for cand in [*POOLED_OLS, "mixed"]:
            try:
                fit = _fit_pooled(points, target, cand, settings)
            except NotIdentifiable as exc:
                law_rows.append(_skip_row(name, cand, "pooled", "all", str(exc)))
                continue
            entry["candidates"][cand] = {"law": fit.to_dict()}
            law_rows.append(_law_row(fit, name, cand, "pooled", "all"))
            term_rows.extend(_term_rows(fit, name, cand, "pooled", "all"))
        for cand, variant in (("roofline", "fitted_static"), ("roofline_idle", "idle_static")):
            try:
                rf = roofline.fit_roofline(points, inputs, target, variant, by_gpu=True, name=cand)
            except NotIdentifiable as exc:
                law_rows.append(_skip_row(name, cand, "pooled", "all", str(exc)))
                continue
            entry["candidates"][cand] = {"law": rf.to_dict()}
            roof_rows.extend(_roofline_rows(rf, cand))
        for cand, d in entry["candidates"].items():
            d["description"] = DESCRIPTIONS[cand]
            lo, hi, n = crossval.log_ratio_quantiles(lomo_predictions, name, cand, settings.prediction_level)
            m = lomo_metrics[(lomo_metrics["target"] == name) & (lomo_metrics["candidate"] == cand)
                             & (lomo_metrics["held_out"] == crossval.ALL)]
            d["lomo"] = {"n_points": n, "log_ratio_low": lo, "log_ratio_high": hi,
                         **({k: float(m.iloc[0][k]) for k in ("spearman", "kendall", "r2_log", "median_ape",
                                                               "p90_ape", "max_ape", "coverage")}
                            if len(m) else {})}
        selected = crossval.select_candidate(lomo_metrics, name, list(entry["candidates"]))
        if selected is None and entry["candidates"]:
            selected = BASELINE if BASELINE in entry["candidates"] else sorted(entry["candidates"])[0]
            entry["selection"] = "no cross-validation (fewer than 2 architectures): the FLOPs-only law"
        else:
            entry["selection"] = "smallest leave-one-model-out P90 absolute percentage error"
        entry["selected"] = selected
        entry["baseline"] = BASELINE
        payload["pooled"][name] = entry
    tables = {
        "laws": pd.DataFrame(law_rows).reindex(columns=LAW_COLUMNS),
        "law_terms": pd.DataFrame(term_rows).reindex(columns=TERM_COLUMNS),
        "roofline": pd.DataFrame(roof_rows).reindex(columns=ROOFLINE_COLUMNS),
    }
    return payload, tables


def _fit_pooled(points: pd.DataFrame, target: Target, cand: str, settings: Settings
                ) -> powerlaw.LawFit | powerlaw.MixedFit:
    """A pooled law on all points; OLS ones with a bootstrap that resamples whole architectures."""
    if cand == "mixed":
        return powerlaw.fit_mixed(points, target)
    return powerlaw.fit_law(points, target, scope="pooled", name=cand, optional=POOLED_OLS[cand],
                        n_boot=settings.bootstrap, rng=powerlaw.child_rng(settings.seed, target.name, cand),
                        cluster_col="model", min_points=settings.min_points)
