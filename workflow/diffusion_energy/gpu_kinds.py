"""Which configured GPU kind a GPU name is: one rule for the GPUs measured here and the published ones.

A GPU kind (``gpu_kinds`` in the config) is recognised by a pattern its names
contain: NVML's device names on this machine (``measurement.gpu``) and the GPU
names published sources give (``sources``). Both stages use this module, which
imports nothing of either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def kind_of(name: str, gpu_kinds: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The configured GPU kind whose name pattern the GPU name contains."""
    for kind, spec in gpu_kinds.items():
        if spec["name_pattern"].lower() in name.lower():
            return kind
    return None
