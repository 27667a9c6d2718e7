"""Prediction intervals that widen with the distance from the fitted data, calibrated held out.

A point's distance from a fit is how far, in natural-log units summed over
features, it lies outside the range of the fitted points: FLOPs per image,
resolution, steps, batch size, frames, kernel launches per FLOP (the share of a
point's time that goes to launching kernels rises with it: SD 1.5 at 256 px is
launch-bound, FLUX.1-dev at 1024 px is not) and its GPU's datasheet peak (a kind
slower or faster than every kind measured). Inside every range the distance is 0.

An interval is the held-out quantiles of log(measured / predicted), kept around
the estimate, plus ``slope`` x distance on each side. ``slope`` is the level's
quantile of the error beyond those quantiles per unit of distance, over the
held-out points that lay outside the fitted range (at least ``MIN_SLOPE``:
extrapolation always widens). The intervals in the cross-validation tables are
calibrated without the group they predict (leave-one-group-out over the
held-out errors), so their coverage there is a held-out coverage.

The errors of one architecture share its offset, so they are not independent
draws, and the next architecture is a new draw of an offset: given the groups,
the interval is the classical prediction interval of a new draw from G group
means, mean +- t(G - 1) x sqrt(s_between^2 (1 + 1/G) + s_within^2) (normal
errors; Student's t for the G estimated means). Point quantiles, where each
architecture counts by its number of points and G ~ 13 groups pin the 5% tails
poorly, covered 82.9% of the architectures left out at 90% (simulated: 80%
for quantiles, 90% for this rule).

For a GPU kind never measured the rule is symmetric (``symmetric=True``): the
level's quantile of |log(measured / predicted)| on each side. A kind left out
is off by a shift of its own whose sign differs between kinds (on the shipped
data the law reads the A100 low and the H100 high), so the other kinds' errors,
kept where they lie, point the wrong way for the next kind; only their size
carries over (held-out coverage of the 90% intervals over GPU kinds left out:
61% kept where they lie, 91% symmetric).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .targets import Target

#: Features of the distance; each is compared in log units. A GPU kind's datasheet peak is one: a kind
#: known by its datasheet only, faster or slower than every kind measured, is an extrapolation too.
FEATURES = ("flops", "resolution", "steps", "batch", "frames", "kernels_per_flop", "peak_flop_s")
#: Smallest widening per unit of log distance (a doubling outside the range adds 0.69 x this).
MIN_SLOPE = 0.1
#: Distances below this count as inside the fitted range.
INSIDE = 1e-9


def feature_values(frame: pd.DataFrame, target: Target) -> dict[str, np.ndarray]:
    """Each feature's value per point (positive; NaN where a column is missing)."""
    n = len(frame)

    def col(name: str) -> np.ndarray:
        return frame[name].astype(float).to_numpy() if name in frame else np.full(n, np.nan)

    flops = target.flops(frame) if n else np.zeros(0)
    kernels = target.kernels(frame) if n and target.kernels_col in frame else np.full(n, np.nan)
    return {"flops": flops, "resolution": col("resolution"), "steps": col("steps"), "batch": col("batch"),
            "frames": col("frames"), "kernels_per_flop": kernels / flops if n else np.zeros(0),
            "peak_flop_s": col("peak_flop_s")}


def ranges(frame: pd.DataFrame, target: Target) -> dict[str, list[float]]:
    """[min, max] of every feature over ``frame`` (the fitted points)."""
    out = {}
    for name, v in feature_values(frame, target).items():
        v = v[np.isfinite(v) & (v > 0)]
        if len(v):
            out[name] = [float(v.min()), float(v.max())]
    return out


def distance(fitted: Mapping[str, list[float]], frame: pd.DataFrame, target: Target) -> np.ndarray:
    """Log-distance of each point of ``frame`` outside the ``fitted`` ranges, summed over features."""
    d = np.zeros(len(frame))
    for name, v in feature_values(frame, target).items():
        r = fitted.get(name)
        if not r:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            above = np.log(v / r[1])
            below = np.log(r[0] / v)
        d += np.nan_to_num(np.maximum(np.maximum(above, below), 0.0), nan=0.0, posinf=0.0)
    return d


@dataclass(frozen=True)
class IntervalRule:
    """log(measured / predicted) lies in [lo - slope d, hi + slope d] at ``level`` (d: the distance)."""

    lo: float
    hi: float
    slope: float
    level: float
    n_points: int
    n_outside: int
    #: Held-out groups (architectures, or GPU kinds) the errors came from (0: not given).
    n_groups: int = 0

    def bounds(self, estimate: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        widen = self.slope * np.asarray(dist, float)
        return (estimate * np.exp(min(self.lo, 0.0) - widen), estimate * np.exp(max(self.hi, 0.0) + widen))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def grouped_bounds(log_ratio: np.ndarray, groups: np.ndarray, level: float) -> tuple[float, float]:
    """The prediction interval of a new group's error from errors in groups (module docstring)."""
    labels, index = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = len(labels)
    means = np.bincount(index, weights=log_ratio) / np.bincount(index)
    within = float(((log_ratio - means[index]) ** 2).sum() / max(len(log_ratio) - n_groups, 1))
    between = float(means.var(ddof=1)) if n_groups > 1 else 0.0
    half = stats.t.ppf(0.5 + level / 2, max(n_groups - 1, 1)) * np.sqrt(between * (1 + 1 / n_groups) + within)
    center = float(means.mean())
    return center - half, center + half


def calibrate(log_ratio: np.ndarray, dist: np.ndarray, level: float, symmetric: bool = False,
              groups: np.ndarray | None = None) -> IntervalRule | None:
    """The rule from held-out errors ``log_ratio`` at distances ``dist``; None without points.

    ``symmetric``: the errors' size only (the level's quantile of their absolute value, on each side).
    ``groups``: the held-out group of each error (an architecture): the interval of a new group's error
    (``grouped_bounds``; with ``symmetric``, only counted)."""
    r, d = np.asarray(log_ratio, float), np.asarray(dist, float)
    ok = np.isfinite(r) & np.isfinite(d)
    r, d = r[ok], d[ok]
    if len(r) == 0:
        return None
    inside = d <= INSIDE
    use = inside if inside.sum() >= max(5, len(r) // 4) else np.ones(len(r), bool)
    base = r[use]
    if symmetric:
        hi = float(np.quantile(np.abs(base), level))
        lo = -hi
    elif groups is not None:
        lo, hi = grouped_bounds(base, np.asarray(groups, dtype=str)[ok][use], level)
    else:
        lo, hi = (float(x) for x in np.quantile(base, [0.5 - level / 2, 0.5 + level / 2]))
    out = ~inside
    slope = MIN_SLOPE
    if out.any():
        excess = np.maximum(np.maximum(r[out] - max(hi, 0.0), min(lo, 0.0) - r[out]), 0.0) / d[out]
        slope = max(MIN_SLOPE, float(np.quantile(excess, level)))
    n_groups = len(set(np.asarray(groups, dtype=str)[ok])) if groups is not None else 0
    return IntervalRule(lo, hi, slope, level, int(len(r)), int(out.sum()), n_groups)


def cross_calibrated(predictions: pd.DataFrame, level: float, symmetric: bool = False) -> pd.DataFrame:
    """``predictions`` with ``low_j``/``high_j`` from rules calibrated on the other held-out groups.

    Per (target, candidate) and held-out group: the rule from every other group's
    errors (``symmetric`` as in ``calibrate``); a candidate with fewer than two
    groups keeps its own intervals.
    """
    if predictions.empty or "distance" not in predictions:
        return predictions
    out = predictions.copy()
    for _, part in out.groupby(["target", "candidate"], sort=False):
        groups = part["held_out"].astype(str)
        if groups.nunique() < 2:
            continue
        for g in groups.unique():
            here = part.index[groups == g]
            rest = part.index[groups != g]
            rule = calibrate(out.loc[rest, "log_ratio"], out.loc[rest, "distance"], level, symmetric,
                             None if symmetric else groups.loc[rest].to_numpy())
            if rule is None:
                continue
            lo, hi = rule.bounds(out.loc[here, "predicted_j"].to_numpy(float),
                                 out.loc[here, "distance"].to_numpy(float))
            out.loc[here, "low_j"], out.loc[here, "high_j"] = lo, hi
    return out
