"""The journal of measured points: which one a rerun may reuse, and why not otherwise.

Snakemake deletes a job's outputs before it reruns the job, so every measured
point is also kept in ``results/measurements/.journal/`` (the same paths). A rerun
reuses a journaled point only if it is a measurement this job would make now:

* it reads, and passes the measurement schema (a truncated or corrupt entry is
  measured again with a warning, never a permanent failure);
* every row is ``ok`` with measured energy (``energy_status`` "measured", energy
  positive): a CPU run's rows (energy absent) or an out-of-memory row are not
  measurements;
* the same GPU kind, and the same GPU (UUID) where both are known;
* the same protocol: the settings the rows record (warm-up, shortest window,
  repeats) and, where the entry's ``.protocol.json`` sidecar is present, all others;
* the same library versions (torch, diffusers, transformers, zeus, CUDA).

Anything else is measured again, and the reason is logged. A journaled entry that
held measured energy is moved to ``.superseded/`` beside it when the new
measurement replaces it, never deleted.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import atomic
from ..sources.schema import DatasetError, validate_measurements

log = logging.getLogger(__name__)

#: Protocol settings every row records (the rest is in the sidecar).
RECORDED_SETTINGS = ("warmup", "warmup_s", "min_window_s")
VERSION_COLUMNS = ("torch_version", "diffusers_version", "transformers_version", "zeus_version",
                   "cuda_version")


@dataclass(frozen=True)
class Expected:
    """What this job would measure: the journaled point must match it to be reused."""

    gpu: str
    gpu_uuid: str | None
    protocol: Mapping[str, Any]
    versions: Mapping[str, str]

    @classmethod
    def of(cls, gpu: str, gpu_uuid: str | None, protocol: Any, versions: Mapping[str, str]) -> Expected:
        settings = asdict(protocol) if hasattr(protocol, "__dataclass_fields__") else dict(protocol)
        return cls(gpu, gpu_uuid, settings, dict(versions))


@dataclass(frozen=True)
class Verdict:
    """Whether a journaled point is reused; if not, why (``warning``: the entry was damaged)."""

    reuse: bool
    reason: str = ""
    warning: bool = False
    #: The entry holds a measurement worth keeping when it is replaced.
    measured: bool = False


def sidecar(path: Path) -> Path:
    """The protocol sidecar of a journal entry: ``512px_50steps_cfg1_b1.protocol.json``."""
    return path.with_name(path.stem + ".protocol.json")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)


def verdict(path: Path, expected: Expected) -> Verdict:
    """Decide whether the journaled point at ``path`` is reused. Never raises for a bad entry."""
    if not path.exists():
        return Verdict(False, "not journaled")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable entry is measured again
        return Verdict(False, f"journal entry {path} is unreadable ({type(exc).__name__}: {exc}); "
                              "measuring it again", warning=True)
    try:
        rows = validate_measurements(frame, str(path))
    except DatasetError as exc:
        return Verdict(False, f"journal entry is invalid ({exc}); measuring it again", warning=True)
    if rows.empty:
        return Verdict(False, f"journal entry {path} holds no rows; measuring it again", warning=True)
    bad = rows[rows["status"] != "ok"]
    if len(bad):
        return Verdict(False, f"journaled as {bad['status'].iloc[0]!r}, not measured")
    absent = rows[rows["energy_status"] != "measured"]
    if len(absent):
        return Verdict(False, f"journaled without measured energy ({absent['energy_status'].iloc[0]})")
    image = rows[rows["stage"] == "image"]
    if image.empty or not (image["energy_j"] > 0).all():
        return Verdict(False, "journaled without a positive whole-image energy")
    reason = _mismatch(rows, image, path, expected)
    return Verdict(False, reason, measured=True) if reason else Verdict(True)


def _mismatch(rows: pd.DataFrame, image: pd.DataFrame, path: Path, expected: Expected) -> str:
    """Why a measured entry is not what this job would measure now ("" if it is)."""
    kinds = sorted(set(rows["gpu"].astype(str)))
    if kinds != [expected.gpu]:
        return f"measured on GPU kind {', '.join(kinds)}, this job measures {expected.gpu}"
    uuids = sorted({u for u in rows["gpu_uuid"].dropna().astype(str) if u})
    if expected.gpu_uuid and uuids and uuids != [expected.gpu_uuid]:
        return f"measured on GPU {', '.join(uuids)}, this job runs on {expected.gpu_uuid}"
    repeats = expected.protocol.get("repeats")
    if repeats is not None and image["repeat"].nunique() != repeats:
        return f"measured with {image['repeat'].nunique()} repeats, the protocol asks for {repeats}"
    for col in RECORDED_SETTINGS:
        if col not in expected.protocol:
            continue
        values = rows[col].dropna().unique()
        if len(values) != 1 or not _same(values[0], expected.protocol[col]):
            was = ", ".join(str(v) for v in values) or "not recorded"
            return f"measured with protocol {col} {was}, now {expected.protocol[col]}"
    side = sidecar(path)
    if side.is_file():
        try:
            saved = json.loads(side.read_text())
        except (OSError, ValueError) as exc:
            return f"its protocol sidecar {side} is unreadable ({exc})"
        for key, value in expected.protocol.items():
            if key in saved and not _same(saved[key], value):
                return f"measured with protocol {key} {saved[key]}, now {value}"
    for col in VERSION_COLUMNS:
        if col not in expected.versions:
            continue
        values = sorted({str(v) for v in rows[col].dropna()})
        if values != [str(expected.versions[col])]:
            return f"measured with {col} {', '.join(values) or 'not recorded'}, now {expected.versions[col]}"
    return ""


def write(frame: pd.DataFrame, path: Path, protocol: Mapping[str, Any]) -> None:
    """Journal a measured point: the rows, then the protocol sidecar (a crash between the two
    leaves an entry that is checked on its recorded settings only, or measured again)."""
    atomic.write_parquet(frame, path)
    atomic.write_text(json.dumps(dict(protocol), sort_keys=True) + "\n", sidecar(path))


def supersede(path: Path) -> Path | None:
    """Move a journaled entry that is about to be replaced to ``.superseded/`` beside it (kept)."""
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S")
    dest = path.parent / ".superseded" / f"{path.stem}.{stamp}{path.suffix}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    path.replace(dest)
    if sidecar(path).exists():
        sidecar(path).replace(sidecar(dest))
    log.info("the replaced journal entry is kept as %s", dest)
    return dest
