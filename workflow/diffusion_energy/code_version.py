"""The version of this package's code, known without ``.git``.

A lent GPU machine gets a copy of the working tree without ``.git``, so a commit cannot name
the code that measured there. The package's own source can: ``code_version()`` is a hash of
every ``.py`` file of ``diffusion_energy`` (path and bytes, in path order), the same on every
machine for the same code, whatever the checkout. Rows record it (``code_version``), so a
measurement says which code made it and a rerun can tell whether the code changed since.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def code_version(package: Path = PACKAGE) -> str:
    """``source sha256:<12 hex>`` of the package's Python files (caches and build files ignored)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return f"source sha256:{digest.hexdigest()[:12]}"
