"""What a published source says about itself: ``source.yaml`` beside its files.

The importer copies these facts into every row it imports (upstream commit,
software, what the energy covers, power limit), so an imported row carries its
provenance as a measured one carries its GPU and library versions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import load_yaml

SOURCE_FILE = "source.yaml"
_REQUIRED = ("name", "format", "upstream_repository", "upstream_commit", "license", "citation", "software",
             "weights", "energy_scope")


class SourceError(ValueError):
    """A published source's files are missing, malformed or not what they claim to be."""


@dataclass(frozen=True)
class SourceInfo:
    """Provenance of one published source (``source.yaml``)."""

    name: str
    format: str
    upstream_repository: str
    upstream_commit: str
    license: str
    citation: str
    software: str
    weights: str
    energy_scope: str
    title: str = ""
    measurement: str = ""
    window_batches: int | None = None
    window_batches_above_30_steps: int | None = None
    #: Power limit by the source's GPU name, W.
    power_limit_w: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def power_limit(self, gpu_name: str) -> float:
        return float(self.power_limit_w.get(gpu_name, float("nan")))


def read_source_info(folder: str | Path) -> SourceInfo:
    """``folder/source.yaml``; errors name the file and the key."""
    path = Path(folder) / SOURCE_FILE
    if not path.is_file():
        raise SourceError(f"{path}: missing; every published source folder needs its provenance "
                          f"({', '.join(_REQUIRED)})")
    raw = load_yaml(path, SourceError, "provenance file")
    if not isinstance(raw, dict):
        raise SourceError(f"{path}: expected a mapping of provenance keys")
    missing = [k for k in _REQUIRED if not raw.get(k)]
    if missing:
        raise SourceError(f"{path}: missing key(s) {missing}")
    known = {f for f in SourceInfo.__dataclass_fields__ if f != "extra"}
    return SourceInfo(**{k: raw[k] for k in raw if k in known},
                      extra={k: v for k, v in raw.items() if k not in known})


def source_inputs(folder: str | Path) -> list[str]:
    """Every file a source folder is imported from, and the table a quoted source names."""
    folder = Path(folder)
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [str(folder)]
    info = folder / SOURCE_FILE
    if info.is_file():
        try:
            named = (yaml.safe_load(info.read_text()) or {}).get("file")
        except yaml.YAMLError:
            named = None  # the import reports the broken file
        if named:
            files.append(str(Path(os.path.normpath(folder / named))))
    return files
