"""Baselines that fit nothing: what an estimate without measurements would say.

EcoLogits' draft methodology for image and video generation (mlco2/ecologits,
pull request 241, "Feature/media generation methodology", ``diffusion_inference.md``;
open, not merged) estimates the energy of a generation as a constant energy per
FLOP: FLOPs x a PUE-like overhead of 1.1 x 3.73e-18 kWh per FLOP, a constant
calibrated on AI Energy Score's fp32 runs. It is scored on the same held-out
points as the fitted laws, so the tables say how far a constant per FLOP is from
measured half-precision energy.
"""

from __future__ import annotations

import pandas as pd

from .targets import Prediction, Target

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
