"""Per-architecture offsets of a pooled law: how far each measured architecture lies from it, shrunk.

Why: a pooled law errs on one architecture in the same direction wherever it
runs (the roofline's shared efficiencies put FLUX.1-dev 16% too high on the
H100 and 13% on the B200), so an architecture measured on one GPU kind is
predicted better on another kind with its own offset: that is the question
of a kind never measured (leave-one-GPU-out, and our H200 for architectures
only the published data measured). An architecture never measured gets no
offset, so leave-one-model-out is unchanged.

The offset is the mean of the architecture's log residuals, shrunk towards 0
by the empirical-Bayes factor tau^2 / (tau^2 + sigma^2 / n) (tau^2 the spread
of true offsets between architectures, sigma^2 the residual variance within
one, both estimated by moments; James and Stein), so an architecture with two
noisy points keeps little of its mean.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .targets import Prediction, Target


def estimate(models: pd.Series | np.ndarray, log_ratio: np.ndarray) -> dict[str, float]:
    """Shrunk mean of ``log_ratio`` (log measured / predicted) per model; {} with one model only."""
    names = np.asarray(models, dtype=str)
    r = np.asarray(log_ratio, dtype=float)
    ok = np.isfinite(r)
    names, r = names[ok], r[ok]
    levels = sorted(set(names))
    if len(levels) < 2:
        return {}
    n = np.array([(names == m).sum() for m in levels], float)
    means = np.array([r[names == m].mean() for m in levels])
    dof = len(r) - len(levels)
    within = float(sum(((r[names == m] - mu) ** 2).sum() for m, mu in zip(levels, means, strict=True)))
    sigma2 = within / dof if dof > 0 else 0.0
    tau2 = max(0.0, float(np.mean(means ** 2 - sigma2 / n)))
    if tau2 == 0.0:
        return {}
    shrink = tau2 / (tau2 + sigma2 / n)
    return {m: float(mu * s) for m, mu, s in zip(levels, means, shrink, strict=True)}


def residual_offsets(frame: pd.DataFrame, target: Target, predicted_j: np.ndarray) -> dict[str, float]:
    """The offsets of a law fitted on ``frame`` from its own predictions of it (rows ``target`` can use)."""
    ok = target.valid(frame)
    if not ok.any():
        return {}
    ratio = np.log(target.energy_j(frame)[ok] / np.asarray(predicted_j, float)[ok])
    return estimate(frame["model"].astype(str).to_numpy()[ok], ratio)


def shifted(frame: pd.DataFrame, pred: Prediction, offsets: Mapping[str, float]) -> Prediction:
    """``pred`` times exp(offset) of each row's model (architectures without one: unchanged)."""
    if not offsets or "model" not in frame:
        return pred
    k = np.exp(np.array([offsets.get(m, 0.0) for m in frame["model"].astype(str)], float))
    return Prediction(pred.energy_j * k, pred.low_j * k, pred.high_j * k, pred.level)
