"""The ``diffusion-energy`` command line (``python -m diffusion_energy.cli``)."""

from .main import main

__all__ = ["main"]
