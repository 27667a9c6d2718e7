"""What a law predicts: the energy of an image or of one stage, and a prediction's shape.

A ``Target`` names the energy column of ``results/energy.parquet`` it models
and the FLOPs (and kernels) that drive it. The denoiser is modelled per step
(energy and kernels divided by ``steps``, against the FLOPs of one step), so
its law is a property of the architecture and resolution, not of the
scheduler length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Target:
    """An energy to model (J), and the per-image FLOPs and kernels beside it."""

    name: str
    stage: str
    energy_col: str
    flops_col: str
    kernels_col: str
    dynamic: bool = False
    per_step: bool = False

    def _per(self, frame: pd.DataFrame, values: pd.Series) -> np.ndarray:
        v = values.astype(float).to_numpy()
        return v / frame["steps"].astype(float).to_numpy() if self.per_step else v

    def energy_j(self, frame: pd.DataFrame) -> np.ndarray:
        return self._per(frame, frame[self.energy_col])

    def flops(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[self.flops_col].astype(float).to_numpy()

    def kernels(self, frame: pd.DataFrame) -> np.ndarray:
        return self._per(frame, frame[self.kernels_col])

    def valid(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows this target can be fitted on: positive finite energy and FLOPs."""
        if frame.empty:
            return np.zeros(0, dtype=bool)
        e, f = self.energy_j(frame), self.flops(frame)
        with np.errstate(invalid="ignore"):
            return np.isfinite(e) & (e > 0) & np.isfinite(f) & (f > 0)

    @property
    def unit(self) -> str:
        return "J per denoising step" if self.per_step else "J per image"


def _pair(name: str, stage: str, energy: str, flops: str, kernels: str, per_step: bool = False
          ) -> dict[str, Target]:
    return {
        name: Target(name, stage, energy, flops, kernels, False, per_step),
        f"{name}_dynamic": Target(f"{name}_dynamic", stage, energy.replace("energy_j", "dynamic_energy_j"),
                                  flops, kernels, True, per_step),
    }


#: Every target the analysis fits: raw and dynamic (idle-subtracted) energy.
TARGETS: dict[str, Target] = {
    **_pair("image", "image", "energy_j", "flops", "kernels"),
    **_pair("text", "text", "text_energy_j", "text_flops", "text_kernels"),
    **_pair("denoise_step", "denoise", "denoise_energy_j", "denoise_flops_per_step", "denoise_kernels",
            per_step=True),
    **_pair("vae", "vae", "vae_energy_j", "vae_flops", "vae_kernels"),
}

#: Targets of the whole image, raw and dynamic: the ones cross-validated and predicted.
IMAGE_TARGETS = ("image", "image_dynamic")
#: Per-stage targets (beyond the paper).
STAGE_TARGETS = ("text", "text_dynamic", "denoise_step", "denoise_step_dynamic", "vae", "vae_dynamic")


@dataclass(frozen=True)
class Prediction:
    """Predicted energies (the median, J) and a prediction interval (J), one entry per point."""

    energy_j: np.ndarray
    low_j: np.ndarray
    high_j: np.ndarray
    level: float
