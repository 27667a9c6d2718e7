"""Energy scaling laws on logs: the design matrix, OLS with HC3 errors, the bootstrap, pooled laws.

The paper's law (arXiv 2511.17031), per architecture::

    log E = log A + alpha log(FLOPs) + beta_dtype 1[fp32] + beta_gpu 1[gpu] + beta_res log(HW/256)

Pooled laws add, where the data identify them: ``beta_source`` (a log-energy shift
per data source: each software stack, ML.ENERGY v2's diffusers or v3's xDiT or
this workflow's, spends a little differently on the same work), ``delta_phys``
(the GPU through its datasheet, log of power limit / peak FLOP/s, so that a kind
nobody measured is predicted) and ``gamma_kernels`` (log kernel launches per
image, which a batch shares).

FLOPs are per image and already count the CFG batch (``dataset.collect_energy``),
so the paper's ``FLOPs x 2^cfg`` is the ``flops`` column itself.

Terms the data cannot identify are dropped and the reason recorded: one
precision class (no ``beta_dtype``), one GPU kind (no ``beta_gpu``), one
resolution, or a term collinear with the others (checked by rank and by the
scaled condition number of the centred design, Belsley's rule of thumb 30).
``alpha`` is never dropped: without variation in FLOPs there is no law.

Pure functions: every random draw comes from a ``numpy.random.Generator`` the
caller seeds (``child_rng``). Results are frozen dataclasses that round-trip
through the laws JSON.
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .targets import TARGETS, Prediction, Target

log = logging.getLogger(__name__)

#: Largest scaled condition number of the centred design before a term is dropped (Belsley).
MAX_CONDITION = 30.0
#: Beyond this the design is numerically singular: the term is "not identifiable".
SINGULAR_CONDITION = 1e8
#: Coverage of the bootstrap confidence intervals.
CI_LEVEL = 0.95
#: Optional terms in the order they are tried (most identifiable first). The GPU's datasheet term
#: comes before the source: where the two are confounded (each GPU kind measured by one source),
#: the physical term is kept.
OPTIONAL_ORDER = ("beta_dtype", "beta_gpu", "delta_phys", "beta_source", "beta_res", "gamma_kernels")
#: Categorical terms: one indicator column per level but the most frequent (the reference).
CATEGORICAL = {"beta_gpu": "gpu", "beta_source": "source"}
_LEVEL_WORDS = {"gpu": "GPU kind", "source": "data source"}
#: Optional terms of the paper's law.
PAPER_TERMS = ("beta_dtype", "beta_gpu", "beta_res")
#: Random-effect variance below this share of the residual variance is the boundary (no random effect).
BOUNDARY_VAR = 1e-6
#: MixedLM optimisers, tried in turn until one converges with a valid covariance.
MIXED_METHODS = ("bfgs", "lbfgs", "powell", "nm")
#: Fewest max/min ratio of FLOPs per image a law's exponent is estimated over: within one model of
#: a published source only the batch varies, and per-image FLOPs move by a few per cent with it
#: (a stage run once per batch), which would give a meaningless exponent.
MIN_FLOPS_RATIO = 1.25
#: The reference resolution area of beta_res, px^2 (the paper's log(HW/256)).
RES_AREA_REF = 256.0


class NotIdentifiable(ValueError):
    """The data cannot identify the law (too few points, FLOPs that do not vary, ...)."""


def child_rng(seed: int, *key: str) -> np.random.Generator:
    """A generator for one fit, from the analysis seed and a stable key (order independent)."""
    return np.random.default_rng([int(seed), zlib.crc32("/".join(key).encode())])


# --------------------------------------------------------------------------- design


@dataclass(frozen=True)
class DesignSpec:
    """Which columns a law has, and why the others were dropped."""

    target: str
    terms: tuple[str, ...]
    gpu_reference: str = ""
    dropped: tuple[tuple[str, str], ...] = ()
    condition_number: float = 1.0
    #: The source a prediction speaks for (its indicator is 0): the most frequent one in the fit.
    source_reference: str = ""
    #: Indicators of a GPU kind or source measured on one architecture only (pooled laws): their shift is
    #: confounded with that architecture's own, so only its points get it; another architecture there
    #: is predicted at the reference level (SD 1.5, launch-bound, is the only one on our H200).
    confined: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "terms": list(self.terms), "gpu_reference": self.gpu_reference,
                "source_reference": self.source_reference, "confined": {t: list(m) for t, m in
                                                                        self.confined.items()},
                "dropped": {t: r for t, r in self.dropped}, "condition_number": self.condition_number}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DesignSpec:
        return cls(d["target"], tuple(d["terms"]), d.get("gpu_reference", ""),
                   tuple((t, r) for t, r in d.get("dropped", {}).items()),
                   float(d.get("condition_number") or np.nan), d.get("source_reference", ""),
                   {t: tuple(m) for t, m in (d.get("confined") or {}).items()})

    def prediction_matrix(self, frame: pd.DataFrame, target: Target) -> np.ndarray:
        """The design matrix of points to predict, confined indicators 0 for other architectures."""
        X = design_matrix(frame, target, self.terms)
        if self.confined and "model" in frame:
            models = frame["model"].astype(str).to_numpy()
            for term, own in self.confined.items():
                X[~np.isin(models, list(own)), self.terms.index(term)] = 0.0
        return X


def term_column(frame: pd.DataFrame, target: Target, term: str) -> np.ndarray:
    """One column of the design matrix."""
    n = len(frame)
    if term == "log_A":
        return np.ones(n)
    if term == "alpha":
        return np.log(target.flops(frame))
    if term == "beta_dtype":
        return (frame["precision"].astype(str).to_numpy() == "fp32").astype(float)
    if term.startswith("beta_gpu_"):
        return (frame["gpu"].astype(str).to_numpy() == term.removeprefix("beta_gpu_")).astype(float)
    if term.startswith("beta_source_"):
        return (frame["source"].astype(str).to_numpy() == term.removeprefix("beta_source_")).astype(float)
    if term == "delta_phys":
        return np.log(frame["physical_j_per_flop"].astype(float).to_numpy())
    if term == "beta_res":
        res = frame["resolution"].astype(float).to_numpy()
        return np.log(res * res / RES_AREA_REF)
    if term == "gamma_kernels":
        return np.log(target.kernels(frame))
    raise ValueError(f"unknown law term {term!r}")


def design_matrix(frame: pd.DataFrame, target: Target, terms: Sequence[str]) -> np.ndarray:
    return np.column_stack([term_column(frame, target, t) for t in terms]) if len(frame) else np.zeros(
        (0, len(terms)))


def scaled_condition(X: np.ndarray) -> float:
    """Condition number of the non-intercept columns, centred and scaled to unit length.

    Centring removes the spurious collinearity of log FLOPs (~30 +- 2) with the
    intercept, so the number measures collinearity between regressors only.
    """
    if X.shape[1] <= 1:
        return 1.0
    Z = X[:, 1:] - X[:, 1:].mean(axis=0)
    norms = np.linalg.norm(Z, axis=0)
    if np.any(norms == 0):
        return float("inf")
    s = np.linalg.svd(Z / norms, compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def _most_collinear(X: np.ndarray, names: Sequence[str], new: np.ndarray) -> str:
    best, name = -1.0, names[-1] if names else "?"
    for col, nm in zip(X.T[1:], names[1:], strict=True):
        if np.ptp(col) == 0 or np.ptp(new) == 0:
            continue
        r = abs(float(np.corrcoef(col, new)[0, 1]))
        if r > best:
            best, name = r, f"{nm} (|r| = {r:.4f})"
    return name


def choose_design(
    frame: pd.DataFrame,
    target: Target,
    optional: Sequence[str] = PAPER_TERMS,
    max_condition: float = MAX_CONDITION,
    min_dof: int = 1,
    min_models_per_level: int = 1,
) -> DesignSpec:
    """The identifiable terms of a law on ``frame``; raises ``NotIdentifiable`` if alpha is not.

    Optional terms are tried in ``OPTIONAL_ORDER``; each is kept only if the
    data vary in it, the design keeps full rank and the scaled condition
    number stays below ``max_condition``. Terms are then dropped from the end
    until ``min_dof`` residual degrees of freedom remain. An indicator whose level was measured on
    fewer than ``min_models_per_level`` architectures is ``confined`` to them (pooled laws: 2).
    """
    n = len(frame)
    base = ["log_A", "alpha"]
    if n == 0:
        raise NotIdentifiable("no points")
    logf = term_column(frame, target, "alpha")
    if np.ptp(logf) < 1e-9:
        raise NotIdentifiable("FLOPs do not vary, so alpha cannot be estimated")
    if np.ptp(logf) < np.log(MIN_FLOPS_RATIO):
        raise NotIdentifiable(f"FLOPs vary by a factor {np.exp(np.ptp(logf)):.3f} only (< {MIN_FLOPS_RATIO}: "
                              "e.g. only the batch varies), too little to estimate alpha")
    if n < len(base) + min_dof:
        raise NotIdentifiable(f"{n} points: too few for log_A and alpha with {min_dof} residual dof")
    terms: list[str] = list(base)
    dropped: list[tuple[str, str]] = []
    references = {"beta_gpu": "", "beta_source": ""}
    X = design_matrix(frame, target, terms)
    for term in [t for t in OPTIONAL_ORDER if t in optional]:
        if term == "beta_dtype":
            fp32 = (frame["precision"].astype(str) == "fp32")
            if fp32.all() or not fp32.any():
                kinds = sorted(set(frame["precision"].astype(str)))
                dropped.append((term, f"one precision class only ({', '.join(kinds)})"))
                continue
            new_terms = [term]
        elif term in CATEGORICAL:
            column = CATEGORICAL[term]
            if column not in frame:
                dropped.append((term, f"no {column} column"))
                continue
            counts = frame[column].astype(str).value_counts()
            if len(counts) < 2:
                dropped.append((term, f"one {_LEVEL_WORDS[column]} only ({', '.join(counts.index)})"))
                continue
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            reference = ordered[0][0]
            new_terms = [f"{term}_{k}" for k, _ in sorted(ordered[1:])]
        elif term == "delta_phys":
            if "physical_j_per_flop" not in frame or not np.isfinite(
                    frame["physical_j_per_flop"].astype(float)).all():
                dropped.append((term, "a GPU kind without a datasheet"))
                continue
            if frame["physical_j_per_flop"].nunique() < 2:
                dropped.append((term, "one GPU datasheet only"))
                continue
            new_terms = [term]
        elif term == "beta_res":
            if frame["resolution"].nunique() < 2:
                dropped.append((term, "one resolution only"))
                continue
            new_terms = [term]
        else:
            new_terms = [term]
        cols = design_matrix(frame, target, new_terms)
        if any(np.ptp(c) < 1e-12 for c in cols.T):
            dropped.append((term, "does not vary in these points"))
            continue
        trial = np.column_stack([X, cols])
        cond = scaled_condition(trial)
        rank = np.linalg.matrix_rank(trial)
        if rank < trial.shape[1] or cond > SINGULAR_CONDITION:
            why = _most_collinear(X, terms, cols[:, 0])
            dropped.append((term, f"not identifiable: collinear with {why}"))
            continue
        if cond > max_condition:
            why = _most_collinear(X, terms, cols[:, 0])
            dropped.append((term, f"condition number {cond:.0f} > {max_condition:.0f}: collinear with {why}"))
            continue
        if term in CATEGORICAL:
            references[term] = reference
        terms.extend(new_terms)
        X = trial
    while n - len(terms) < min_dof and len(terms) > len(base):
        last = terms.pop()
        group = next((c for c in CATEGORICAL if last.startswith(c + "_")), last)
        if group in CATEGORICAL:
            while terms and terms[-1].startswith(group + "_"):
                terms.pop()
            references[group] = ""
        dropped.append((group, f"too few points ({n}) for {len(terms) + 1} terms"))
        X = design_matrix(frame, target, terms)
    confined: dict[str, tuple[str, ...]] = {}
    if min_models_per_level > 1 and "model" in frame:
        for group, column in CATEGORICAL.items():
            for term in [t for t in terms if t.startswith(group + "_")]:
                here = frame[frame[column].astype(str) == term.removeprefix(group + "_")]
                models = tuple(sorted(set(here["model"].astype(str))))
                if len(models) < min_models_per_level:
                    confined[term] = models
    return DesignSpec(target.name, tuple(terms), references["beta_gpu"], tuple(dropped),
                      scaled_condition(design_matrix(frame, target, terms)), references["beta_source"],
                      confined)


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ols(
    X: np.ndarray,
    y: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    clusters: np.ndarray | None = None,
) -> np.ndarray:
    """OLS coefficients of ``n_boot`` resamples (rows, or whole clusters); rank-deficient ones dropped.

    Returns an array (valid resamples, terms).
    """
    n, p = X.shape
    if n_boot <= 0 or n == 0:
        return np.zeros((0, p))
    if clusters is None:
        idx = rng.integers(0, n, size=(n_boot, n))
        Xb, yb = X[idx], y[idx]
        ranks = np.linalg.matrix_rank(Xb)
        coefs = np.einsum("bpn,bn->bp", np.linalg.pinv(Xb), yb)
        return coefs[ranks == p]
    labels = np.unique(clusters)
    members = [np.flatnonzero(clusters == g) for g in labels]
    out = []
    picks = rng.integers(0, len(labels), size=(n_boot, len(labels)))
    for pick in picks:
        rows = np.concatenate([members[i] for i in pick])
        Xb = X[rows]
        if np.linalg.matrix_rank(Xb) < p:
            continue
        out.append(np.linalg.lstsq(Xb, y[rows], rcond=None)[0])
    return np.array(out) if out else np.zeros((0, p))


def percentile_ci(draws: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    p = draws.shape[1] if draws.ndim == 2 else 0
    if draws.shape[0] < 2:
        return np.full(p, np.nan), np.full(p, np.nan)
    lo, hi = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return lo, hi


# --------------------------------------------------------------------------- OLS law


def _range(frame: pd.DataFrame, col: str) -> list[float]:
    v = frame[col].astype(float)
    return [float(v.min()), float(v.max())] if len(v) else [float("nan"), float("nan")]


def _levels(frame: pd.DataFrame, column: str) -> tuple[str, ...]:
    return tuple(sorted(set(frame[column].astype(str)))) if column in frame else ()


def _fit_to_dict(fit: Any) -> dict[str, Any]:
    """A fit dataclass as JSON-ready fields, its design and named coefficients included."""
    d = {k: getattr(fit, k) for k in fit.__dataclass_fields__ if k != "design"}
    d["design"] = fit.design.to_dict()
    d["coefficients"] = fit.coefficients
    return d


@dataclass(frozen=True)
class LawFit:
    """A power law fitted by OLS on logs. ``coef`` in ``design.terms`` order.

    ``ci_low``/``ci_high`` are bootstrap percentile intervals (``ci_level``),
    ``se_hc3`` heteroskedasticity-robust standard errors, ``cov_params`` the
    classical covariance used for prediction intervals.
    """

    target: str
    scope: str
    name: str
    design: DesignSpec
    coef: tuple[float, ...]
    se_hc3: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    ci_level: float
    n_bootstrap: int
    bootstrap_unit: str
    cov_params: tuple[tuple[float, ...], ...]
    sigma_log: float
    dof: int
    r2_log: float
    n_points: int
    models: tuple[str, ...]
    gpus: tuple[str, ...]
    precisions: tuple[str, ...]
    resolution_px: tuple[float, float]
    steps: tuple[float, float]
    flops: tuple[float, float]
    kind: str = "ols"
    sources: tuple[str, ...] = ()
    batch: tuple[float, float] = (1.0, 1.0)

    @property
    def coefficients(self) -> dict[str, float]:
        return dict(zip(self.design.terms, self.coef, strict=True))

    def predict_log(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Mean log energy and the variance of a new observation's log, per row."""
        target = TARGETS[self.target]
        X = self.design.prediction_matrix(frame, target)
        mean = X @ np.asarray(self.coef)
        cov = np.asarray(self.cov_params)
        var = np.einsum("ij,jk,ik->i", X, cov, X) + self.sigma_log ** 2
        return mean, var

    def predict(self, frame: pd.DataFrame, level: float) -> Prediction:
        mean, var = self.predict_log(frame)
        q = stats.t.ppf(0.5 + level / 2, max(self.dof, 1))
        half = q * np.sqrt(var)
        return Prediction(np.exp(mean), np.exp(mean - half), np.exp(mean + half), level)

    def to_dict(self) -> dict[str, Any]:
        return _fit_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LawFit:
        def floats(v: Sequence[Any]) -> tuple[float, ...]:
            return tuple(float("nan") if x is None else float(x) for x in v)

        return cls(
            target=d["target"], scope=d["scope"], name=d["name"], design=DesignSpec.from_dict(d["design"]),
            coef=floats(d["coef"]), se_hc3=floats(d["se_hc3"]), ci_low=floats(d["ci_low"]),
            ci_high=floats(d["ci_high"]), ci_level=float(d["ci_level"]), n_bootstrap=int(d["n_bootstrap"]),
            bootstrap_unit=d["bootstrap_unit"], cov_params=tuple(floats(r) for r in d["cov_params"]),
            sigma_log=float(d["sigma_log"]), dof=int(d["dof"]), r2_log=float(d["r2_log"] or np.nan),
            n_points=int(d["n_points"]), models=tuple(d["models"]), gpus=tuple(d["gpus"]),
            precisions=tuple(d["precisions"]), resolution_px=floats(d["resolution_px"]),
            steps=floats(d["steps"]), flops=floats(d["flops"]), sources=tuple(d.get("sources", ())),
            batch=floats(d.get("batch", (1.0, 1.0))),
        )


def fit_ols(
    frame: pd.DataFrame,
    target: Target,
    design: DesignSpec,
    *,
    scope: str,
    name: str,
    n_boot: int,
    rng: np.random.Generator,
    cluster_col: str | None = None,
) -> LawFit:
    """Fit the law ``design`` on ``frame`` (rows valid for ``target``)."""
    import statsmodels.api as sm

    X = design_matrix(frame, target, design.terms)
    y = np.log(target.energy_j(frame))
    n, p = X.shape
    if n <= p:
        raise NotIdentifiable(f"{n} points for {p} terms")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.OLS(y, X).fit()
        se_hc3 = np.asarray(res.get_robustcov_results("HC3").bse, dtype=float)
    se_hc3 = np.where(np.isfinite(se_hc3), se_hc3, np.nan)
    clusters = frame[cluster_col].astype(str).to_numpy() if cluster_col else None
    draws = bootstrap_ols(X, y, n_boot, rng, clusters)
    lo, hi = percentile_ci(draws)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float((res.resid ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    return LawFit(
        target=target.name, scope=scope, name=name, design=design,
        coef=tuple(map(float, res.params)), se_hc3=tuple(map(float, se_hc3)),
        ci_low=tuple(map(float, lo)), ci_high=tuple(map(float, hi)), ci_level=CI_LEVEL,
        n_bootstrap=int(draws.shape[0]), bootstrap_unit=cluster_col or "point",
        cov_params=tuple(tuple(map(float, r)) for r in np.asarray(res.cov_params())),
        sigma_log=float(np.sqrt(res.scale)), dof=int(res.df_resid), r2_log=r2, n_points=n,
        models=tuple(sorted(set(frame["model"].astype(str)))),
        gpus=tuple(sorted(set(frame["gpu"].astype(str)))),
        precisions=tuple(sorted(set(frame["precision"].astype(str)))),
        resolution_px=tuple(_range(frame, "resolution")), steps=tuple(_range(frame, "steps")),
        flops=(float(target.flops(frame).min()), float(target.flops(frame).max())),
        sources=_levels(frame, "source"),
        batch=tuple(_range(frame, "batch")) if "batch" in frame else (1.0, 1.0),
    )


def fit_law(
    frame: pd.DataFrame,
    target: Target,
    *,
    scope: str,
    name: str,
    optional: Sequence[str],
    n_boot: int,
    rng: np.random.Generator,
    cluster_col: str | None = None,
    min_points: int = 2,
) -> LawFit:
    """Choose the identifiable design and fit it on ``frame``'s valid rows."""
    valid = target.valid(frame)
    rows = frame[valid]
    if (~valid).any():
        log.info("%s %s: %d of %d points without a positive %s left out", scope, target.name,
                 int((~valid).sum()), len(frame), target.energy_col)
    if len(rows) < min_points:
        raise NotIdentifiable(f"{len(rows)} points < min_points {min_points}")
    per_level = 2 if scope.startswith("pooled") else 1
    design = choose_design(rows, target, optional, min_models_per_level=per_level)
    return fit_ols(rows, target, design, scope=scope, name=name, n_boot=n_boot, rng=rng,
                   cluster_col=cluster_col)


def law_from_dict(d: dict[str, Any]) -> LawFit:
    return LawFit.from_dict(d)
