"""``torch``, imported on first use.

The pipeline families describe their calls and check that an architecture's
components fit together (no tensor needed: the Snakefile and ``predict`` do
this), and make tensors when a pipeline is counted or measured (torch needed).
Importing torch takes about a second, so the family modules hold this stand-in,
which imports it when a tensor is first made.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _Torch:
    """Forwards every attribute to ``torch``, imported at the first one asked for."""

    def __getattr__(self, name: str) -> Any:
        module: ModuleType = importlib.import_module("torch")
        return getattr(module, name)


torch: Any = _Torch()
