"""A blend of fitted laws: the weighted mean of their predictions in logs.

Why: the roofline model and the power law in FLOPs and kernel launches err on
different points (the roofline where a GPU kind enters by its datasheet alone,
the power law where an architecture's kernels run unlike the others' or a
software stack was measured on one architecture only), so their mean in logs
errs less on held-out points than either. Each part's weight is the inverse of
its mean squared held-out log error (Bates and Granger's combination of
forecasts): nothing is tuned by hand. In the cross-validation tables a blend's
held-out prediction of a group is its parts' held-out predictions, weighted
from the other groups' errors (``heldout_blend``), so it costs no refit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import baselines, powerlaw, roofline
from .targets import Prediction


def predict_law(law: Any, frame: pd.DataFrame, inputs: roofline.RooflineInputs, level: float) -> Prediction:
    """Any fitted law's predictions of ``frame``: a roofline model or a blend from the counted kernels
    (``inputs``), a power law from the frame's columns alone."""
    if getattr(law, "kind", "") in ("roofline", "blend"):
        return law.predict(frame, inputs, level)
    return law.predict(frame, level)


def load_law(d: dict[str, Any]) -> Any:
    """A law from its JSON form: a roofline fit, a blend, or a power law."""
    if d.get("kind") == "roofline":
        return roofline.RooflineFit.from_dict(d)
    if d.get("kind") == "blend":
        return BlendFit.from_dict(d)
    if d.get("kind") == "jpf":
        return baselines.JoulePerFlop.from_dict(d)
    return powerlaw.law_from_dict(d)


@dataclass(frozen=True)
class BlendFit:
    """Fitted laws (name -> law) whose predictions are averaged in logs."""

    target: str
    name: str
    parts: Mapping[str, Any]
    #: Weight of each part in the mean of logs (they sum to 1; missing: equal weights).
    weights: Mapping[str, float] = field(default_factory=dict)
    kind: str = "blend"
    by_gpu: bool = False
    scope: str = "pooled"

    @property
    def precisions(self) -> tuple[str, ...]:
        """Precisions every part was fitted on (the roofline covers any half precision)."""
        sets = [set(p.precisions) for p in self.parts.values() if getattr(p, "kind", "") != "roofline"]
        return tuple(sorted(set.intersection(*sets))) if sets else ()

    @property
    def sources(self) -> tuple[str, ...]:
        out: set[str] = set()
        for p in self.parts.values():
            out |= ({s for c in p.constants for s in c.sources} if isinstance(p, roofline.RooflineFit)
                    else set(getattr(p, "sources", ()) or ()))
        return tuple(sorted(out))

    @property
    def gpus(self) -> tuple[str, ...]:
        return tuple(sorted({g for p in self.parts.values() for g in getattr(p, "gpus", ())}))

    def predict(self, frame: pd.DataFrame, inputs: roofline.RooflineInputs, level: float) -> Prediction:
        preds = [predict_law(p, frame, inputs, level) for p in self.parts.values()]

        w = np.array([self.weights.get(n, 1.0) for n in self.parts], float)
        w = w / w.sum()

        def mean(values: list[np.ndarray]) -> np.ndarray:
            return np.exp(w @ np.log(np.vstack(values)))

        return Prediction(mean([p.energy_j for p in preds]), mean([p.low_j for p in preds]),
                          mean([p.high_j for p in preds]), level)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "name": self.name, "scope": self.scope,
                "weights": dict(self.weights), "parts": {n: p.to_dict() for n, p in self.parts.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BlendFit:
        return cls(d["target"], d["name"], {n: load_law(p) for n, p in d["parts"].items()},
                   dict(d.get("weights") or {}))


def inverse_mse_weights(predictions: pd.DataFrame, parts: Sequence[str]) -> dict[str, float] | None:
    """Each part's weight, the inverse of its mean squared held-out log error over the points every
    part predicted (normalised to sum to 1); None where a part has no such point."""
    p = predictions[predictions["candidate"].isin(parts)]
    wide = p.pivot_table(index="point_id", columns="candidate", values="log_ratio", aggfunc="first")
    wide = wide.reindex(columns=list(parts)).dropna()
    if wide.empty:
        return None
    inv = 1.0 / np.maximum((wide.to_numpy(float) ** 2).mean(axis=0), 1e-12)
    return dict(zip(parts, (inv / inv.sum()).tolist(), strict=True))


def heldout_blend(predictions: pd.DataFrame, name: str, parts: Sequence[str]) -> pd.DataFrame:
    """The blend's held-out predictions of one target: per held-out group, its parts' predictions of
    that group weighted by their errors on every other group (empty if a part is missing)."""
    cols = list(predictions.columns)
    if predictions.empty or not set(parts) <= set(predictions["candidate"]):
        return pd.DataFrame(columns=cols)
    out = []
    for group in sorted(set(predictions["held_out"].astype(str))):
        here = predictions["held_out"].astype(str) == group
        weights = inverse_mse_weights(predictions[~here], parts)
        if weights is None:
            continue
        part = combined(predictions[here], name, parts, weights)
        if len(part):
            out.append(part)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)


def combined(predictions: pd.DataFrame, name: str, parts: Sequence[str], weights: Mapping[str, float]
             ) -> pd.DataFrame:
    """The blend's predictions of the points every part predicted: its parts' ``predictions`` (and
    intervals) averaged in logs with ``weights``; empty where a part predicted none of them."""
    cols = list(predictions.columns)
    rows = predictions[predictions["candidate"].isin(parts)]
    by_part = {c: rows[rows["candidate"] == c].set_index("point_id") for c in parts}
    ids = sorted(set.intersection(*(set(f.index) for f in by_part.values())))
    if not ids:
        return pd.DataFrame(columns=cols)
    first = by_part[parts[0]].loc[ids]
    logs = {k: sum(weights[c] * np.log(by_part[c].loc[ids, k].to_numpy(float)) for c in parts)
            for k in ("predicted_j", "low_j", "high_j")}
    part = first.reset_index().assign(candidate=name, **{k: np.exp(v) for k, v in logs.items()})
    measured = part["measured_j"].astype(float)
    part["ape"] = np.abs(part["predicted_j"] / measured - 1)
    part["log_ratio"] = np.log(measured / part["predicted_j"])
    return part.reindex(columns=cols)
