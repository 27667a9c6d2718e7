"""A blend of fitted laws: the geometric mean of their predictions (equal weights in logs).

Why: the roofline model and the power law in FLOPs and kernel launches err on
different points (the roofline where a GPU kind enters by its datasheet alone,
the power law where an architecture's kernels run unlike the others'), so their
mean in logs errs less on held-out points than either (the cross-validation
tables score it beside its parts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import powerlaw, roofline
from .targets import Prediction


def load_law(d: dict[str, Any]) -> Any:
    """A law from its JSON form: a roofline fit, a blend, or a power law."""
    if d.get("kind") == "roofline":
        return roofline.RooflineFit.from_dict(d)
    if d.get("kind") == "blend":
        return BlendFit.from_dict(d)
    return powerlaw.law_from_dict(d)


@dataclass(frozen=True)
class BlendFit:
    """Fitted laws (name -> law) whose predictions are averaged in logs."""

    target: str
    name: str
    parts: Mapping[str, Any]
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
        preds = [p.predict(frame, inputs, level) if isinstance(p, roofline.RooflineFit)
                 else p.predict(frame, level) for p in self.parts.values()]

        def mean(values: list[np.ndarray]) -> np.ndarray:
            return np.exp(np.mean(np.log(np.vstack(values)), axis=0))

        return Prediction(mean([p.energy_j for p in preds]), mean([p.low_j for p in preds]),
                          mean([p.high_j for p in preds]), level)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "name": self.name, "scope": self.scope,
                "parts": {n: p.to_dict() for n, p in self.parts.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BlendFit:
        return cls(d["target"], d["name"], {n: load_law(p) for n, p in d["parts"].items()})
