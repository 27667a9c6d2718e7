"""The classes an architecture file names: checked without importing their library, imported to build.

Importing diffusers or transformers takes seconds (each imports torch), and an
architecture file is checked wherever it is loaded (the Snakefile loads every
file of the grid). So a ``class:`` is first looked up in the library's source:
diffusers lists its names in the ``_import_structure`` of its ``__init__.py``,
transformers in the ``__all__`` of the model's modules (``models/<name>/``),
which is where its lazy ``__init__`` finds them. Only a name found in neither
imports the module, and is then refused with similar names as a hint.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

from .catalog import ZooError

_QUOTED_NAME = re.compile(r"[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']")
_ALL = re.compile(r"^__all__\s*=\s*[\[(](.*?)[\])]", re.MULTILINE | re.DOTALL)


def _package_dir(module_name: str) -> Path | None:
    """The folder of an installed package, found without importing it (None: not a package)."""
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin or not found.origin.endswith("__init__.py"):
        return None
    return Path(found.origin).parent


@functools.cache
def _listed_names(module_name: str) -> frozenset[str]:
    """Names a lazy package lists in the source of its ``_import_structure`` (diffusers), read
    without importing it (importing diffusers takes seconds: it imports torch). Empty if none."""
    folder = _package_dir(module_name)
    if folder is None:
        return frozenset()
    source = (folder / "__init__.py").read_text(errors="replace")
    if "_import_structure" not in source:
        return frozenset()
    return frozenset(_QUOTED_NAME.findall(source))


@functools.cache
def _model_module_names(module_name: str, attr: str) -> frozenset[str]:
    """Names in ``__all__`` of the modules of ``<package>/models/<name>/`` whose ``<name>`` begins
    ``attr`` (``transformers/models/clip/`` for ``CLIPTextModel``): what transformers' lazy
    ``__init__`` exports from there. Empty where the package has no such folder."""
    folder = _package_dir(module_name)
    models = folder / "models" if folder else None
    if models is None or not models.is_dir():
        return frozenset()
    lowered = attr.lower()
    names: set[str] = set()
    for sub in models.iterdir():
        if not (sub.is_dir() and lowered.startswith(sub.name)):
            continue
        for path in sub.glob("*.py"):
            for block in _ALL.findall(path.read_text(errors="replace")):
                names.update(_QUOTED_NAME.findall(block))
    return frozenset(names)


@functools.cache
def _module_names(module_name: str) -> frozenset[str] | None:
    """Names a module exports (lazy modules such as transformers list theirs without importing them)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return frozenset(dir(module))


def check_class(dotted: Any, key: str, where: str) -> None:
    """Refuse a ``class:`` that names nothing (``diffusers.UNet2DConditionModelX``), naming the key."""
    if not isinstance(dotted, str) or "." not in dotted:
        raise ZooError(f"{where}: {key} must be a dotted class name such as "
                       f"'diffusers.UNet2DConditionModel', not {dotted!r}")
    module_name, _, attr = dotted.rpartition(".")
    if attr in _listed_names(module_name) or attr in _model_module_names(module_name, attr):
        return
    names = _module_names(module_name)
    if names is None:
        raise ZooError(f"{where}: {key}: cannot import module {module_name!r} (of {dotted!r})")
    if attr not in names:
        stem = attr.lower()[:8]
        close = sorted(n for n in names if n.lower().startswith(stem))
        hint = f"; similar: {', '.join(close[:5])}" if close else ""
        raise ZooError(f"{where}: {key}: {module_name} has no class {attr!r}{hint}")


def import_object(dotted: str) -> Any:
    """``"diffusers.UNet2DConditionModel"`` -> the class (clear error if absent)."""
    module_name, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ZooError(f"cannot import {dotted!r}: {exc}") from exc
