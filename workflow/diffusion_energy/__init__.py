"""diffusion-energy: measure, count and predict the energy of diffusion image generation.

``from diffusion_energy import predict_energy`` predicts the energy of one image
or video from the fitted laws (``prediction.predict_energy``, which returns a
``PredictedEnergy``). Importing the package imports nothing else: the command
line starts fast, and the laws are imported on the first prediction.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["PredictedEnergy", "predict_energy"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import prediction

        return getattr(prediction, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
