"""Where the architecture files are and which names the zoo knows, without importing torch.

Table checks (a measurement row's model must be in the zoo) run in commands that
must start fast; they need the zoo's names, not its components.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import package_data
from ..errors import UserError


class ZooError(UserError, ValueError):
    """An architecture file is missing, malformed or names something unknown."""


def models_dir() -> Path:
    """The zoo folder: $DIFFUSION_ENERGY_MODELS, else the checkout's config/models, else the working
    directory's, else the copy installed with the package (``pip install .``: ``architectures/``).
    """
    if os.environ.get("DIFFUSION_ENERGY_MODELS"):
        return Path(os.environ["DIFFUSION_ENERGY_MODELS"])
    checkout = Path(__file__).resolve().parents[3]
    for folder in (checkout / "config" / "models", Path.cwd() / "config" / "models"):
        if folder.is_dir():
            return folder
    return package_data.ARCHITECTURES_DIR


#: Repository folder holding one YAML file per architecture.
MODELS_DIR = models_dir()


def available_models(folder: Path = MODELS_DIR) -> list[str]:
    """Names of the architectures shipped in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.yaml"))
