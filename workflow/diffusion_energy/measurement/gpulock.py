"""An exclusive per-GPU lock: two jobs measuring on one GPU corrupt both.

The lock is an ``flock`` on a file named after the GPU's UUID, held for the
whole job and released by the kernel when the process ends (even on a crash),
so a stale lock cannot block later runs. Snakemake's local profile already
serialises GPU jobs; this lock also protects against a second Snakemake, a
notebook, or a job started by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError


class GpuLockedError(UserError, RuntimeError):
    """Another process holds the lock of this GPU."""


def lock_path(gpu_id: str, lock_dir: str | Path | None = None) -> Path:
    folder = Path(lock_dir or os.environ.get("DIFFUSION_ENERGY_LOCK_DIR") or tempfile.gettempdir())
    return folder / f"diffusion-energy-{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu_id)}.lock"


@contextlib.contextmanager
def exclusive_gpu(
    gpu_id: str, timeout_s: float = 0.0, lock_dir: str | Path | None = None
) -> Iterator[Path]:
    """Hold the GPU's lock; wait up to ``timeout_s`` for it, then refuse."""
    path = lock_path(gpu_id, lock_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a+")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    raise GpuLockedError(
                        f"GPU {gpu_id} is locked by {holder} ({path}); "
                        "two jobs measuring on one GPU corrupt both"
                    ) from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {os.uname().nodename}")
        fh.flush()
        yield path
    finally:
        fh.close()  # releases the flock
