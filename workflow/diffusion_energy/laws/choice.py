"""The choice: which candidate answers, its blends' weights and its intervals, all from held-out errors.

One procedure, run in two places: inside every outer fold of the nested
cross-validation (``nested``), on errors that never saw the outer group, so the
outer group's error tests the procedure; and once on every held-out error, for
the laws ``predict`` answers with (``analysis.run_fit``).

Which candidate: the simplest whose mean absolute log error per held-out group
(an architecture, or a GPU kind, counts once however many points it has) lies
within one standard error of the best candidate's (Breiman's one-standard-error
rule): a more complex law has to beat a simpler one by more than the spread
between groups shows is noise. ``COMPLEXITY`` orders the candidates.

A blend's weights are the inverse of each part's mean squared held-out log error
(``blend.inverse_mse_weights``); its held-out errors, for the choice, are its
parts' weighted from the other groups' errors (``blend.heldout_blend``).

Intervals: every candidate's rule (``intervals.calibrate``) from its held-out
errors over every GPU kind together: a new architecture's error as a new draw of
an architecture's, from all of them. Rules per GPU kind (5-7 architectures each)
were wider and noisier: nested, they held 98.7% of the points at the nominal 90%,
one rule over all kinds 94.7%.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import intervals
from .blend import combined, heldout_blend, inverse_mse_weights

#: Candidates from simplest to most complex: the number of things each fits from data, roughly. A
#: candidate missing here counts as the most complex.
COMPLEXITY = ("jpf", "flops", "paper", "flops_kernels", "roofline_datasheet", "roofline_kernels")
#: Blends: name -> the candidates whose predictions it averages in logs.
BLENDS = {"roofline_kernels": ("roofline_datasheet", "flops_kernels")}
#: Candidates that fit nothing (EcoLogits' constant): scored beside the laws, never chosen.
UNFITTED = ("ecologits",)
#: Fewest held-out points for an empirical interval (below: the law's own).
MIN_EMPIRICAL = 10


@dataclass(frozen=True)
class Choice:
    """What the procedure decided from one set of held-out errors."""

    candidate: str | None
    why: str
    #: blend -> part -> weight in the mean of logs.
    weights: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    #: candidate -> its interval rule (one for every GPU kind).
    rules: Mapping[str, intervals.IntervalRule] = field(default_factory=dict)
    #: candidate -> (mean absolute log error per group, its standard error, groups).
    scores: Mapping[str, tuple[float, float, int]] = field(default_factory=dict)

    @property
    def ranking(self) -> list[str]:
        """The chosen candidate, then the others from the smallest mean error: who answers a point the
        chosen one cannot predict (a law fitted per GPU kind, on a kind it never saw)."""
        rest = sorted((c for c in self.scores if c != self.candidate and c not in UNFITTED),
                      key=lambda c: (self.scores[c][0], c))
        return ([self.candidate] if self.candidate else []) + rest

    def with_rules(self, rules: Mapping[str, intervals.IntervalRule]) -> Choice:
        return Choice(self.candidate, self.why, self.weights, rules, self.scores)


def complexity(candidate: str) -> int:
    return COMPLEXITY.index(candidate) if candidate in COMPLEXITY else len(COMPLEXITY)


def with_blends(heldout: pd.DataFrame) -> pd.DataFrame:
    """Held-out predictions of one target with every blend's, each group's weighted from the others'."""
    if heldout.empty:
        return heldout
    extra = [heldout_blend(heldout, name, parts) for name, parts in BLENDS.items()]
    extra = [e for e in extra if len(e)]
    return pd.concat([heldout, *extra], ignore_index=True) if extra else heldout


def group_scores(heldout: pd.DataFrame) -> dict[str, tuple[float, float, int]]:
    """Per candidate: the mean over held-out groups of each group's mean absolute log error, its
    standard error over the groups, and the number of groups; only candidates that predicted every
    point some candidate predicted (a law that skips the hard points is not compared)."""
    if heldout.empty:
        return {}
    counts = heldout.groupby("candidate")["point_id"].nunique()
    full = counts[counts == counts.max()].index
    out = {}
    for cand, part in heldout[heldout["candidate"].isin(full)].groupby("candidate"):
        per = part.assign(err=np.abs(part["log_ratio"].astype(float))).groupby("held_out")["err"].mean()
        se = float(per.std(ddof=1) / np.sqrt(len(per))) if len(per) > 1 else float("inf")
        out[str(cand)] = (float(per.mean()), se, len(per))
    return out


def pick(scores: Mapping[str, tuple[float, float, int]], allowed: Sequence[str] | None = None
         ) -> tuple[str | None, str]:
    """The simplest candidate within one standard error of the best (``scores`` from ``group_scores``)."""
    names = [c for c in scores if c not in UNFITTED and (allowed is None or c in allowed)]
    if not names:
        return None, "nothing cross-validated"
    best = min(names, key=lambda c: (scores[c][0], complexity(c), c))
    mean, se, groups = scores[best]
    within = [c for c in names if scores[c][0] <= mean + se]
    chosen = min(within, key=lambda c: (complexity(c), scores[c][0], c))
    why = (f"the simplest candidate within one standard error of the smallest mean absolute log error per "
           f"held-out group ({best}: {mean:.3f} +- {se:.3f} over {groups} groups)")
    if chosen != best:
        why += f"; {chosen}: {scores[chosen][0]:.3f}"
    return chosen, why


def rules(heldout: pd.DataFrame, level: float, symmetric: bool) -> dict[str, intervals.IntervalRule]:
    """Every candidate's interval rule from its held-out errors over every GPU kind."""
    out: dict[str, intervals.IntervalRule] = {}
    for cand, p in heldout.groupby("candidate"):
        dist = p["distance"] if "distance" in p else pd.Series(0.0, index=p.index)
        rule = intervals.calibrate(p["log_ratio"].to_numpy(float), dist.to_numpy(float), level, symmetric,
                                   p["held_out"].astype(str).to_numpy())
        if rule is not None:
            out[str(cand)] = rule
    return out


def envelope(a: intervals.IntervalRule | None, b: intervals.IntervalRule | None
             ) -> intervals.IntervalRule | None:
    """The wider of two rules on each side (and the steeper widening): a GPU kind known by its datasheet
    only is never given a narrower interval than a measured kind at the same point."""
    if a is None or b is None:
        return a or b
    return intervals.IntervalRule(min(a.lo, b.lo), max(a.hi, b.hi), max(a.slope, b.slope), a.level,
                                  a.n_points + b.n_points, a.n_outside + b.n_outside,
                                  max(a.n_groups, b.n_groups))


def unseen_rules(measured: Choice, unseen: Mapping[str, intervals.IntervalRule]
                 ) -> dict[str, intervals.IntervalRule]:
    """Rules for a GPU kind known by its datasheet only: per candidate, the envelope of its symmetric rule
    from GPU kinds left out (``unseen``) and its rule from architectures left out."""
    out = {}
    for cand in set(measured.rules) | set(unseen):
        rule = envelope(unseen.get(cand), measured.rules.get(cand))
        if rule is not None:
            out[cand] = rule
    return out


def choose(heldout: pd.DataFrame, level: float, allowed: Sequence[str] | None = None,
           symmetric: bool = False) -> Choice:
    """The procedure on one target's held-out predictions (parts of blends included, blends not)."""
    weights = {}
    for name, parts in BLENDS.items():
        w = inverse_mse_weights(heldout, parts) if len(heldout) else None
        if w is not None:
            weights[name] = w
    scored = with_blends(heldout)
    scores = group_scores(scored)
    candidate, why = pick(scores, allowed)
    return Choice(candidate, why, weights, rules(scored, level, symmetric), scores)


def apply(choice: Choice, predictions: pd.DataFrame, selected: str = "selected") -> pd.DataFrame:
    """``predictions`` of groups the choice never saw (parts of blends included): every blend combined
    with the choice's weights, every candidate's interval from its rule, and the chosen candidate's rows
    again as ``selected`` (with ``chosen`` naming it)."""
    parts = [predictions]
    for name, w in choice.weights.items():
        blend = combined(predictions, name, BLENDS[name], w)
        if len(blend):
            parts.append(blend)
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else predictions.copy()
    out["chosen"] = ""
    for cand, rule in choice.rules.items():
        rows = out.index[out["candidate"] == cand]
        if len(rows):
            lo, hi = rule.bounds(out.loc[rows, "predicted_j"].to_numpy(float),
                                 out.loc[rows, "distance"].to_numpy(float))
            out.loc[rows, "low_j"], out.loc[rows, "high_j"] = lo, hi
    points = set(predictions["point_id"])
    for cand in choice.ranking:  # the first in the ranking that predicts every point answers
        rows = out[out["candidate"] == cand]
        if set(rows["point_id"]) >= points:
            out = pd.concat([out, rows.assign(candidate=selected, chosen=cand)], ignore_index=True)
            break
    return out
