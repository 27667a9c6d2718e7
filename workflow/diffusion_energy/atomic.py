"""Atomic file writes: a crash never leaves a half-written result behind.

Everything the workflow writes goes to a temporary file in the target folder
and is renamed into place, so a reader (or Snakemake's up-to-date check) sees
either the old file, or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _naming(exc, target) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename).name.startswith(f".{target.name}."):
            raise _naming(exc, target) from exc
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def _naming(exc: OSError, target: Path) -> OSError:
    """The same error about ``target``: the user asked for the output, not for its temporary file."""
    return type(exc)(exc.errno, exc.strerror or str(exc), str(target))


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
