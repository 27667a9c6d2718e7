"""The journal of measured points: which one a rerun may reuse, and why not otherwise.

Snakemake deletes a job's outputs before it reruns the job, so every measured
point is also kept in ``results/measurements/.journal/`` (the same paths). A rerun
reuses a journaled point only if it is a measurement this job would make now:

* it reads, and passes the measurement schema (a truncated or corrupt entry is
  measured again with a warning, never a permanent failure);
* every row is ``ok`` with measured energy (``energy_status`` "measured", energy
  positive): a CPU run's rows (energy absent) or an out-of-memory row are not
  measurements;
* the same GPU kind (not the same card: a campaign runs on a fresh machine each time, and a
  cluster has many cards of a kind; the UUID stays in the rows);
* the same protocol: every setting, as the rows record it (``protocol``; older rows: warm-up,
  shortest window, repeats, and the ``.protocol.json`` sidecar where present);
* the same measuring code (``measurement_code``: a hash of the code that measures and builds
  the model, and of its architecture file; rows without one are measured again);
* the same library versions (torch, diffusers, transformers, zeus, CUDA).

The same test decides which shipped points a measurement campaign still has to measure
(``reusable_rows``: a point of ``resources/measurements/<kind>.parquet``).

Anything else is measured again, and the reason is logged. A journaled entry that
held measured energy is moved to ``.superseded/`` beside it when the new
measurement replaces it, never deleted.
"""

from __future__ import annotations

import functools
import hashlib
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


#: The package's code that measures and builds models: a change to it changes every measurement.
CODE_PARTS = ("measurement", "models", "grid.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]


@functools.cache
def _code_digest() -> str:
    digest = hashlib.sha256()
    for part in CODE_PARTS:
        root = PACKAGE_DIR / part
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for path in files:
            digest.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def measurement_code(model: str) -> str:
    """What measured a point, as a reuse key: ``sha256:<12 hex>`` of the package's measuring and
    model-building code (``CODE_PARTS``) and the model's architecture file. Read from the files,
    so a checkout without ``.git`` (a lent GPU machine) knows it too."""
    from ..models.zoo import MODELS_DIR

    digest = hashlib.sha256(_code_digest().encode())
    arch = Path(MODELS_DIR) / f"{model}.yaml"
    if arch.is_file():
        digest.update(arch.read_bytes())
    return f"sha256:{digest.hexdigest()[:12]}"


def protocol_text(protocol: Any) -> str:
    """Every protocol setting, as the rows record it (sorted JSON)."""
    settings = asdict(protocol) if hasattr(protocol, "__dataclass_fields__") else dict(protocol)
    return json.dumps(settings, sort_keys=True)


@dataclass(frozen=True)
class Expected:
    """What this job would measure: the journaled point must match it to be reused."""

    gpu: str
    gpu_uuid: str | None
    protocol: Mapping[str, Any]
    versions: Mapping[str, str]
    #: ``measurement_code`` of the model measured; None: not compared (a test's fake job)
    code: str | None = None

    @classmethod
    def of(cls, gpu: str, gpu_uuid: str | None, protocol: Any, versions: Mapping[str, str],
           code: str | None = None) -> Expected:
        return cls(gpu, gpu_uuid, json.loads(protocol_text(protocol)), dict(versions), code)


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
    return reusable_rows(rows, expected, sidecar(path))


def reusable_rows(rows: pd.DataFrame, expected: Expected, side: Path | None = None) -> Verdict:
    """Whether one point's validated rows are the measurement ``expected`` describes (``verdict``)."""
    bad = rows[rows["status"] != "ok"]
    if len(bad):
        return Verdict(False, f"journaled as {bad['status'].iloc[0]!r}, not measured")
    # a simulated GPU's kind (h200-simulated) reuses its own simulated rows; a real kind never does
    how = rows["energy_status"].astype(str)
    absent = rows[~how.str.startswith("simulated")] if expected.gpu.endswith("-simulated") else rows[
        how != "measured"]
    if len(absent):
        return Verdict(False, f"journaled without measured energy ({absent['energy_status'].iloc[0]})")
    image = rows[rows["stage"] == "image"]
    if image.empty or not (image["energy_j"] > 0).all():
        return Verdict(False, "journaled without a positive whole-image energy")
    reason = _mismatch(rows, image, side, expected)
    return Verdict(False, reason, measured=True) if reason else Verdict(True)


def _recorded(rows: pd.DataFrame, column: str) -> list[str]:
    return sorted({str(v) for v in rows[column].dropna() if str(v)}) if column in rows else []


def _mismatch(rows: pd.DataFrame, image: pd.DataFrame, side: Path | None, expected: Expected) -> str:
    """Why a measured entry is not what this job would measure now ("" if it is)."""
    kinds = sorted(set(rows["gpu"].astype(str)))
    if kinds != [expected.gpu]:
        return f"measured on GPU kind {', '.join(kinds)}, this job measures {expected.gpu}"
    if expected.code is not None:
        codes = _recorded(rows, "measurement_code")
        if codes != [expected.code]:
            return f"measured by code {', '.join(codes) or 'not recorded'}, now {expected.code}"
    recorded = _recorded(rows, "protocol")
    if len(recorded) > 1:
        return f"its rows record {len(recorded)} different protocols"
    if recorded:
        saved = json.loads(recorded[0])
        now = expected.protocol
        for key in sorted(set(saved) | set(now)):
            if key not in saved or key not in now or not _same(saved[key], now[key]):
                return (f"measured with protocol {key} {saved.get(key, 'not set')}, "
                        f"now {expected.protocol.get(key, 'not set')}")
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
    if side is not None and side.is_file():
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
