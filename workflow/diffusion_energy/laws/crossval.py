"""Cross-validation across architectures (leave-one-model-out) and GPU kinds (leave-one-GPU-out).

A candidate is a named way to fit a pooled model on some points; fold by fold,
each is fitted without the held-out group and predicts every point of it.
Metrics, per held-out group and over all points: Spearman and Kendall rank
correlations, R^2 on logs, median, 90th-percentile and largest absolute
percentage error, the share of measured energies inside the prediction
interval (coverage) and the interval's median width (high / low).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import stats

from . import intervals
from .powerlaw import NotIdentifiable
from .targets import Prediction, Target

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = [
    "target", "candidate", "held_out", "point_id", "source", "gpu", "model", "architecture", "precision",
    "resolution", "steps", "cfg", "batch", "measured_j", "predicted_j", "low_j", "high_j", "ape", "log_ratio",
    "distance",
]
METRIC_COLUMNS = [
    "target", "candidate", "gpu", "held_out", "n_points", "spearman", "kendall", "r2_log", "median_ape",
    "p90_ape", "max_ape", "coverage", "interval_ratio",
]
BATCH_METRIC_COLUMNS = ["target", "candidate", "gpu", "batch", "n_points", "median_ape", "p90_ape", "max_ape",
                        "median_log_ratio"]
#: The held_out value of the metrics over all folds' points together.
ALL = "all"


class Fitted(Protocol):
    def predict(self, frame: pd.DataFrame, level: float) -> Prediction: ...


@dataclass(frozen=True)
class Candidate:
    """A named model family: ``fit(points) -> Fitted``; may raise ``NotIdentifiable``. ``warm(points)``,
    where given, prepares for fits on subsets of ``points`` (e.g. a start for an iterative fit): called
    once by a cross-validation before its folds."""

    name: str
    description: str
    fit: Callable[[pd.DataFrame], Fitted]
    warm: Callable[[pd.DataFrame], None] | None = None


def leave_one_out(
    frame: pd.DataFrame,
    by: str,
    candidates: Sequence[Candidate],
    target: Target,
    level: float,
) -> pd.DataFrame:
    """Predictions of every candidate for every point, each fitted without the point's ``by`` group.

    Needs at least two groups; returns ``PREDICTION_COLUMNS`` (zero rows otherwise).
    """
    rows = frame[target.valid(frame)]
    groups = sorted(set(rows[by].astype(str)))
    if len(groups) < 2:
        log.info("leave-one-%s-out of %s: %d group(s), nothing to hold out", by, target.name, len(groups))
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    out = [left_out(rows, by, (g,), candidates, target, level) for g in groups]
    return pd.concat(out, ignore_index=True).reindex(columns=PREDICTION_COLUMNS)


def left_out(rows: pd.DataFrame, by: str, groups: Sequence[str], candidates: Sequence[Candidate],
             target: Target, level: float) -> pd.DataFrame:
    """Every candidate fitted once without all of ``groups`` (of column ``by``), predicting each of them:
    ``PREDICTION_COLUMNS`` plus ``left_out`` (the groups left out together, joined by "+")."""
    labels = rows[by].astype(str).to_numpy()
    held_all = np.isin(labels, list(groups))
    train = rows[~held_all]
    dist = intervals.distance(intervals.ranges(train, target), rows[held_all], target)
    dist = pd.Series(dist, index=rows.index[held_all])
    tests = {g: rows[labels == g] for g in groups}
    out = []
    for cand in candidates:
        try:
            fitted = cand.fit(train)
        except NotIdentifiable as exc:
            log.info("%s without %s=%s: not fitted (%s)", cand.name, by, "+".join(groups), exc)
            continue
        for group, test in tests.items():
            try:
                pred = fitted.predict(test, level)
            except NotIdentifiable as exc:
                log.info("%s without %s=%s: cannot predict %s (%s)", cand.name, by, "+".join(groups), group,
                         exc)
                continue
            measured = target.energy_j(test)
            part = test[[c for c in PREDICTION_COLUMNS if c in test.columns]].copy()
            out.append(part.assign(
                target=target.name, candidate=cand.name, held_out=group, measured_j=measured,
                predicted_j=pred.energy_j, low_j=pred.low_j, high_j=pred.high_j,
                ape=np.abs(pred.energy_j / measured - 1), log_ratio=np.log(measured / pred.energy_j),
                distance=dist.loc[test.index].to_numpy(), left_out="+".join(groups)))
    if not out:
        return pd.DataFrame(columns=[*PREDICTION_COLUMNS, "left_out"])
    return pd.concat(out, ignore_index=True)


def _rank(fn: Callable, a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(fn(a, b)[0])


def _median_ratio(high: np.ndarray, low: np.ndarray) -> float:
    """Median of high / low over intervals with a positive lower bound (NaN without one)."""
    ok = low > 0
    return float(np.median(high[ok] / low[ok])) if ok.any() else float("nan")


def score(measured: np.ndarray, predicted: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, float]:
    """The metrics of one set of predictions."""
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    ape = np.abs(predicted / measured - 1)
    lm, lp = np.log(measured), np.log(predicted)
    ss_tot = float(((lm - lm.mean()) ** 2).sum())
    return {
        "n_points": len(measured),
        "spearman": _rank(stats.spearmanr, measured, predicted),
        "kendall": _rank(stats.kendalltau, measured, predicted),
        "r2_log": 1 - float(((lm - lp) ** 2).sum()) / ss_tot if ss_tot > 0 and len(lm) > 1 else float("nan"),
        "median_ape": float(np.median(ape)),
        "p90_ape": float(np.percentile(ape, 90)),
        "max_ape": float(ape.max()),
        "coverage": float(np.mean((measured >= np.asarray(low)) & (measured <= np.asarray(high)))),
        "interval_ratio": _median_ratio(np.asarray(high, float), np.asarray(low, float)),
    }


def metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    """``METRIC_COLUMNS`` per (target, candidate): per GPU kind and held-out group, per GPU kind over all
    its groups (``held_out`` all), and over every point (``gpu`` and ``held_out`` all)."""
    if predictions.empty:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    rows = []
    for (target, cand), part in predictions.groupby(["target", "candidate"], sort=True):
        def one(p: pd.DataFrame, gpu: str, held: str, target: str = target, cand: str = cand) -> dict:
            return {"target": target, "candidate": cand, "gpu": gpu, "held_out": held,
                    **score(p["measured_j"], p["predicted_j"], p["low_j"], p["high_j"])}
        for gpu, by_gpu in part.groupby("gpu", sort=True):
            for held, p in by_gpu.groupby("held_out", sort=True):
                rows.append(one(p, str(gpu), str(held)))
            rows.append(one(by_gpu, str(gpu), ALL))
        rows.append(one(part, ALL, ALL))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def batch_metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    """``BATCH_METRIC_COLUMNS``: held-out errors per GPU kind and batch size (does a law see batches?)."""
    if predictions.empty:
        return pd.DataFrame(columns=BATCH_METRIC_COLUMNS)
    rows = []
    keys = ["target", "candidate", "gpu", "batch"]
    for (target, cand, gpu, batch), p in predictions.groupby(keys, sort=True):
        ape = p["ape"].astype(float).to_numpy()
        rows.append({"target": target, "candidate": cand, "gpu": gpu, "batch": int(batch), "n_points": len(p),
                     "median_ape": float(np.median(ape)), "p90_ape": float(np.percentile(ape, 90)),
                     "max_ape": float(ape.max()), "median_log_ratio": float(np.median(p["log_ratio"]))})
    return pd.DataFrame(rows, columns=BATCH_METRIC_COLUMNS)


def select_candidate(metric_table: pd.DataFrame, target: str, candidates: Sequence[str] | None = None,
                     gpu: str = ALL) -> str | None:
    """The candidate with the smallest held-out P90 error (then median) over ``gpu``'s points (all:
    every point) among those that predicted every one of them; None if there is no cross-validation."""
    m = metric_table[(metric_table["target"] == target) & (metric_table["held_out"] == ALL)
                     & (metric_table["gpu"].astype(str) == gpu)]
    if candidates is not None:
        m = m[m["candidate"].isin(candidates)]
    if m.empty:
        return None
    m = m[m["n_points"] == m["n_points"].max()]
    best = m.sort_values(["p90_ape", "median_ape", "candidate"]).iloc[0]
    return str(best["candidate"])
