"""GPU identity through NVML: which GPU kinds this machine has.

NVML is optional: on a machine without an NVIDIA GPU (a laptop, CI) every
function here answers "no GPU" instead of raising, so the rest of the
workflow runs on the shipped reference data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


def device_names() -> list[str]:
    """NVML names of the local GPUs, [] when NVML cannot start."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.debug("NVML unavailable: %s", exc)
        return []
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = []
        for i in range(count):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else name)
        return names
    finally:
        pynvml.nvmlShutdown()


def kind_of(name: str, gpu_kinds: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The configured GPU kind whose name pattern the NVML name contains."""
    for kind, spec in gpu_kinds.items():
        if spec["name_pattern"].lower() in name.lower():
            return kind
    return None


def local_kinds(gpu_kinds: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Configured kinds present on this machine (sorted, without duplicates)."""
    kinds = {kind_of(n, gpu_kinds) for n in device_names()}
    unknown = [n for n in device_names() if kind_of(n, gpu_kinds) is None]
    if unknown:
        log.warning("GPU(s) %s match no configured gpu_kinds; add a name_pattern to measure them",
                    unknown)
    return sorted(k for k in kinds if k)
