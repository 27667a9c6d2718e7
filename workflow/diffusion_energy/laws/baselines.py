"""Baselines: what an estimate without measurements would say, and the simplest law fitted on them.

EcoLogits' draft methodology for image and video generation (mlco2/ecologits,
pull request 241, "Feature/media generation methodology", ``diffusion_inference.md``;
open, not merged) estimates the energy of a generation as a constant energy per
FLOP: FLOPs x a PUE-like overhead of 1.1 x 3.73e-18 kWh per FLOP, a constant
calibrated on AI Energy Score's fp32 runs. It is scored on the same held-out
points as the fitted laws, so the tables say how far a constant per FLOP is from
measured half-precision energy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .powerlaw import NotIdentifiable
from .targets import TARGETS, Prediction, Target

#: The constant, kWh per FLOP, and the overhead factor it is multiplied by (EcoLogits PR 241).
ECOLOGITS_KWH_PER_FLOP = 3.73e-18
ECOLOGITS_OVERHEAD = 1.1
ECOLOGITS_REFERENCE = ("mlco2/ecologits pull request 241 (draft diffusion methodology): "
                       "FLOPs x 1.1 x 3.73e-18 kWh")
J_PER_KWH = 3.6e6


class ConstantPerFlop:
    """Energy = FLOPs x a constant (J/FLOP); no interval of its own (low = high = the estimate)."""

    def __init__(self, target: Target, j_per_flop: float) -> None:
        self.target, self.j_per_flop = target, j_per_flop

    def predict(self, frame: pd.DataFrame, level: float) -> Prediction:
        e = self.target.flops(frame) * self.j_per_flop
        return Prediction(e, e.copy(), e.copy(), level)


def ecologits(target: Target) -> ConstantPerFlop:
    """EcoLogits' constant energy per FLOP (raw energy only: it estimates the whole GPU's)."""
    return ConstantPerFlop(target, ECOLOGITS_OVERHEAD * ECOLOGITS_KWH_PER_FLOP * J_PER_KWH)


def fit_ecologits(frame: pd.DataFrame, target: Target) -> ConstantPerFlop:
    """The Candidate form: the training points are ignored (nothing is fitted)."""
    del frame
    return ecologits(target)


@dataclass(frozen=True)
class JoulePerFlop:
    """The simplest fitted law: one constant energy per FLOP per GPU kind (the geometric mean of measured
    J/FLOP on that kind); a kind outside the fit scales one constant by its datasheet's J/FLOP (power
    limit / dense peak). Every richer law has to beat this on the same held-out points."""

    target: str
    j_per_flop: Mapping[str, float]
    #: J/FLOP = this x (datasheet power limit / dense peak), for a kind outside the fit.
    sheet_factor: float
    n_points: int
    precisions: tuple[str, ...] = ()
    kind: str = "jpf"
    by_gpu: bool = False
    scope: str = "pooled"

    @property
    def gpus(self) -> tuple[str, ...]:
        return tuple(sorted(self.j_per_flop))

    def predict(self, frame: pd.DataFrame, level: float) -> Prediction:
        target = TARGETS[self.target]
        sheet = (frame["power_limit_sheet_w"].astype(float) / frame["peak_flop_s"].astype(float)).to_numpy() \
            if {"power_limit_sheet_w", "peak_flop_s"} <= set(frame.columns) else np.full(len(frame), np.nan)
        per = np.array([self.j_per_flop.get(g, np.nan) for g in frame["gpu"].astype(str)])
        per = np.where(np.isfinite(per), per, self.sheet_factor * sheet)
        if not np.isfinite(per).all():
            raise NotIdentifiable("a GPU kind outside the fit without a datasheet: J/FLOP unknown")
        e = target.flops(frame) * per
        return Prediction(e, e.copy(), e.copy(), level)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "j_per_flop": dict(self.j_per_flop),
                "sheet_factor": self.sheet_factor, "n_points": self.n_points,
                "precisions": list(self.precisions)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JoulePerFlop:
        return cls(d["target"], dict(d["j_per_flop"]), float(d["sheet_factor"]), int(d["n_points"]),
                   tuple(d.get("precisions") or ()))


def fit_jpf(frame: pd.DataFrame, target: Target) -> JoulePerFlop:
    """``JoulePerFlop`` on ``frame``'s points (``target``'s energy over its FLOPs)."""
    rows = frame[target.valid(frame)]
    if rows.empty:
        raise NotIdentifiable("no points")
    log_jpf = np.log(target.energy_j(rows) / target.flops(rows))
    per = pd.Series(log_jpf).groupby(rows["gpu"].astype(str).to_numpy()).mean()
    sheet = (rows["power_limit_sheet_w"].astype(float) / rows["peak_flop_s"].astype(float)).to_numpy() \
        if {"power_limit_sheet_w", "peak_flop_s"} <= set(rows.columns) else np.full(len(rows), np.nan)
    ok = np.isfinite(sheet) & (sheet > 0)
    factor = float(np.exp(np.mean(log_jpf[ok] - np.log(sheet[ok])))) if ok.any() else float("nan")
    return JoulePerFlop(target.name, {g: float(np.exp(v)) for g, v in per.items()}, factor, len(rows),
                        tuple(sorted(set(rows["precision"].astype(str)))) if "precision" in rows else ())
