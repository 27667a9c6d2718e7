"""Which configured GPU kind a GPU name is: one rule for the GPUs measured here and the published ones.

A GPU kind (``gpu_kinds`` in the config) is recognised by a pattern its names
hold as whole words: NVML's device names on this machine (``measurement.gpu``)
and the GPU names published sources give (``sources``). Both stages use this
module, which imports nothing of either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import UserError


class AmbiguousGpuKind(UserError, ValueError):
    """A GPU name matches the name patterns of several kinds, none more specific than the others."""


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether ``name`` holds ``pattern`` as whole words (case-insensitive): "L4" is in "NVIDIA L4"
    but not in "NVIDIA L40S", "H20" not in "NVIDIA H200", "H200" not in "NVIDIA GH200 480GB"."""
    words = re.escape(pattern.strip().lower())
    return bool(words) and re.search(rf"(?<![a-z0-9]){words}(?![a-z0-9])", name.lower()) is not None


def kind_of(name: str, gpu_kinds: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The configured GPU kind of a device name: the one whose name pattern it holds as whole words
    (``pattern_matches``); where several do, the most specific (the pattern that holds every other
    matching one: "H100 PCIe" over "H100"). A tie raises ``AmbiguousGpuKind`` naming the kinds."""
    matches = {kind: str(spec["name_pattern"]) for kind, spec in gpu_kinds.items()
               if pattern_matches(str(spec["name_pattern"]), name)}
    if len(matches) <= 1:
        return next(iter(matches), None)
    specific = [kind for kind, pattern in matches.items()
                if all(other == kind or pattern_matches(other_pattern, pattern)
                       and other_pattern.strip().lower() != pattern.strip().lower()
                       for other, other_pattern in matches.items())]
    if len(specific) == 1:
        return specific[0]
    listed = ", ".join(f"{k} ({p!r})" for k, p in sorted(matches.items()))
    raise AmbiguousGpuKind(f"GPU {name!r} matches the name_pattern of several gpu_kinds, none more specific "
                           f"than the others: {listed}; make the patterns tell them apart")


def pattern_clashes(gpu_kinds: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Kinds whose name patterns are the same (case and spaces aside): no name could tell them apart."""
    seen: dict[str, str] = {}
    clashes = []
    for kind, spec in gpu_kinds.items():
        key = " ".join(str(spec.get("name_pattern", "")).lower().split())
        if key in seen:
            clashes.append(f"{seen[key]} and {kind} have the same name_pattern {spec['name_pattern']!r}")
        seen.setdefault(key, kind)
    return clashes
