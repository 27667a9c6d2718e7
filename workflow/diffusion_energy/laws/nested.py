"""Nested cross-validation: every choice made from data is made inside the fold that judges it.

The outer loop holds out one group (an architecture, or a GPU kind) at a time.
Inside it, the whole procedure that turns held-out errors into the answer
``predict`` gives (``choice``: which candidate answers, its blends' weights, its
intervals' calibration) runs on inner held-out errors only: each other group
predicted by fits that saw neither it nor the outer group. The outer group is
then predicted by every candidate fitted without it, the procedure's choice is
applied, and its error and interval coverage test the procedure, never a choice
made on it. The candidates' own fits choose their parameters (exponents,
offsets' shrinkage, the trend across kinds) on their training points only, so
the outer group's data enter no choice made for it.

The non-nested held-out errors (each group predicted by fits without it, the
choice made on all of them) stay beside as a diagnostic: they are what every
design change of the past was judged on, and so they are optimistic.

Cost: one fit without the groups {a, b} serves two inner folds (outer a holding
b out, and outer b holding a out), so G groups need G (G - 1) / 2 pair fits
beside the G outer fits, per candidate. Fits run in ``workers`` forked processes.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pandas as pd

from . import choice, crossval, intervals
from .crossval import Candidate
from .targets import Target

log = logging.getLogger(__name__)

#: ``left_out`` of the outer folds' predictions is one group; of the inner folds', two joined by "+".
FOLD_COLUMNS = [*crossval.PREDICTION_COLUMNS, "left_out"]
#: The candidate name of the procedure's answer in the nested tables (``chosen`` names the law).
SELECTED = "selected"

_JOB: dict[str, Any] = {}


def _run(groups: tuple[str, ...]) -> pd.DataFrame:
    j = _JOB
    return crossval.left_out(j["rows"], j["by"], groups, j["candidates"], j["target"], j["level"])


def fold_predictions(rows: pd.DataFrame, by: str, candidates: Sequence[Candidate], target: Target,
                     level: float, inner: bool = True, workers: int = 1,
                     inner_groups: Sequence[str] | None = None) -> pd.DataFrame:
    """Every candidate's predictions of every group fitted without it (outer folds), and, with ``inner``,
    of every group fitted without it and one other group (inner folds; only pairs of ``inner_groups``
    where given): ``FOLD_COLUMNS``."""
    rows = rows[target.valid(rows)]
    groups = sorted(set(rows[by].astype(str)))
    if len(groups) < 2:
        log.info("leave-one-%s-out of %s: %d group(s), nothing to hold out", by, target.name, len(groups))
        return pd.DataFrame(columns=FOLD_COLUMNS)
    paired = [g for g in groups if inner_groups is None or g in set(inner_groups)]
    # A pair needs a third group to fit on: beyond the pair itself (inner_groups: the other groups).
    enough = len(paired) > 2 or (inner_groups is not None and len(groups) > len(paired) >= 2)
    sets = [(g,) for g in groups] + (list(itertools.combinations(paired, 2)) if inner and enough else [])
    for cand in candidates:
        if cand.warm is not None:
            cand.warm(rows)
    _JOB.update(rows=rows, by=by, candidates=candidates, target=target, level=level)
    try:
        if workers > 1 and len(sets) > 1:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                parts = list(pool.map(_run, sets, chunksize=max(1, len(sets) // (4 * workers))))
        else:
            parts = [_run(s) for s in sets]
    finally:
        _JOB.clear()
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=FOLD_COLUMNS)
    return pd.concat(parts, ignore_index=True).reindex(columns=FOLD_COLUMNS)


def outer(folds: pd.DataFrame) -> pd.DataFrame:
    """The outer folds' predictions: every group predicted by fits without it (and nothing else)."""
    single = ~folds["left_out"].astype(str).str.contains("+", regex=False)
    return folds[single.to_numpy()].drop(columns="left_out").reset_index(drop=True)


def inner(folds: pd.DataFrame, group: str) -> pd.DataFrame:
    """The inner folds of outer ``group``: every other group predicted by fits without it and ``group``."""
    pairs = folds["left_out"].astype(str).str.split("+", regex=False)
    mask = pairs.map(lambda p: len(p) == 2 and group in p) & (folds["held_out"].astype(str) != group)
    return folds[mask.to_numpy()].drop(columns="left_out").reset_index(drop=True)


def nested_predictions(folds: pd.DataFrame, level: float, allowed: Sequence[str] | None = None,
                       symmetric: bool = False, rows: Callable[[pd.DataFrame], pd.Series] | None = None
                       ) -> pd.DataFrame:
    """Each outer group's predictions with the procedure's choice (made on its inner folds) applied:
    every candidate with its blends' weights and interval rules from the inner folds, and the chosen
    candidate's rows again as ``SELECTED``. ``chosen`` names the candidate chosen for each row's group.
    ``rows``: which predictions (inner and outer) the procedure sees and answers (a mask of a frame;
    e.g. the video points only); the outer groups are those with inner folds."""
    if folds.empty:
        return pd.DataFrame(columns=[*crossval.PREDICTION_COLUMNS, "chosen"])
    if rows is not None:
        folds = folds[rows(folds).to_numpy()]
    out_folds = outer(folds)
    paired = {g for p in folds["left_out"].astype(str) if "+" in p for g in p.split("+")}
    parts = []
    for group in sorted(set(out_folds["held_out"].astype(str)) & paired):
        decided = choice.choose(inner(folds, group), level, allowed, symmetric)
        here = out_folds[out_folds["held_out"].astype(str) == group]
        parts.append(choice.apply(decided, here, SELECTED))
    if not parts:
        return pd.DataFrame(columns=[*crossval.PREDICTION_COLUMNS, "chosen"])
    return pd.concat(parts, ignore_index=True).reindex(columns=[*crossval.PREDICTION_COLUMNS, "chosen"])


def nested_unseen(folds: pd.DataFrame, lomo_without: Mapping[str, pd.DataFrame], level: float
                  ) -> pd.DataFrame:
    """Nested leave-one-GPU-out: each outer GPU kind predicted by the procedure ``predict`` follows for a
    kind known by its datasheet only. The candidate and its blends' weights are the ones chosen for
    measured kinds, from architectures left out on the other kinds' points only (``lomo_without[kind]``:
    ``fold_predictions(rows without kind, "model", ..., inner=False)``), the interval the envelope of the
    inner GPU kinds' symmetric rule and those architectures' rule (``choice.unseen_rules``)."""
    if folds.empty:
        return pd.DataFrame(columns=[*crossval.PREDICTION_COLUMNS, "chosen"])
    out_folds = outer(folds)
    parts = []
    for kind in sorted(set(out_folds["held_out"].astype(str))):
        measured_rows = lomo_without.get(kind, pd.DataFrame())
        if measured_rows.empty:
            continue
        measured = choice.choose(outer(measured_rows), level)
        kinds = choice.rules(choice.with_blends(inner(folds, kind)), level, symmetric=True)
        decided = measured.with_rules(choice.unseen_rules(measured, kinds))
        here = out_folds[out_folds["held_out"].astype(str) == kind]
        parts.append(choice.apply(decided, here, SELECTED))
    if not parts:
        return pd.DataFrame(columns=[*crossval.PREDICTION_COLUMNS, "chosen"])
    return pd.concat(parts, ignore_index=True).reindex(columns=[*crossval.PREDICTION_COLUMNS, "chosen"])


def diagnostic_predictions(folds: pd.DataFrame, level: float, symmetric: bool = False) -> pd.DataFrame:
    """The non-nested held-out predictions (a diagnostic): the outer folds' predictions with every blend,
    its weights from the other groups' errors, and every group's interval calibrated on the others'."""
    return intervals.cross_calibrated(choice.with_blends(outer(folds)), level, symmetric)
