"""diffusion-energy: measure, count and predict the energy of diffusion image generation."""

__version__ = "0.1.0"
