"""What ships with the package so that ``predict`` answers without the workflow (after ``pip install``).

``data/`` holds copies of what the default workflow writes, made by its
``package_data`` rule (``diffusion-energy package-data``); a test checks they
equal a fresh run's:

* ``laws.json``, ``modalities.json`` and ``parallel.json``: the fitted laws (``results/laws/``), copied
  as written;
* ``flops.parquet`` and ``flops_ops.parquet``: the counts they were fitted on (``results/``), and
  each zoo architecture the workflow did not count at its usual output (``cli.packaging``), so
  that such a point is answered without counting it again on the meta device (which imports
  torch and diffusers: seconds);
* ``zoo.json``: the SHA-256 of each architecture file those counts were made from (a count is used
  only for the file it was made from) and each scheduler's denoiser evaluations per number of
  steps (``models.schedulers``), with the diffusers version that answered.

The architecture files themselves ship as ``diffusion_energy/architectures`` (``config/models``,
mapped in pyproject.toml). This module reads nothing heavy: it is below every stage.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

#: Folder of the shipped copies.
DATA_DIR = Path(__file__).resolve().parent / "data"
#: Where a non-editable install keeps the architecture files (``config/models`` in a checkout).
ARCHITECTURES_DIR = Path(__file__).resolve().parent / "architectures"
#: The files of ``DATA_DIR``, by what they hold.
LAWS, VIDEO_LAWS, PARALLEL_LAWS = "laws.json", "modalities.json", "parallel.json"
FLOPS, OPS, ZOO = "flops.parquet", "flops_ops.parquet", "zoo.json"
FILES = (LAWS, VIDEO_LAWS, PARALLEL_LAWS, FLOPS, OPS, ZOO)


def path(name: str) -> Path:
    """A shipped file (which may be absent in a checkout that never packaged its data)."""
    return DATA_DIR / name


def file_sha256(file: str | Path) -> str:
    """The SHA-256 of a file's bytes: which architecture file a shipped count belongs to."""
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


@functools.cache
def zoo_facts() -> dict[str, Any]:
    """``zoo.json``: ``architectures`` (name -> SHA-256), ``schedulers`` (key -> evaluation ranges) and
    ``diffusers`` (its version); empty where nothing was packaged."""
    try:
        facts = json.loads(path(ZOO).read_text())
    except (OSError, ValueError):
        return {}
    return facts if isinstance(facts, dict) else {}
