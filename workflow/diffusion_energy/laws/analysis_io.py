"""Reading the energy table for the analysis; writing its tables and the laws JSON.

The analysis reads ``results/energy.parquet`` (``dataset.ENERGY_COLUMNS``) and
writes CSV tables whose columns are fixed by the module that makes them, so an
empty dataset still yields tables with the right header. The laws JSON is the
one link between fitting and prediction. Every write is atomic.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import atomic
from ..sources import dataset

log = logging.getLogger(__name__)

#: Version of the laws JSON layout; ``predict`` refuses other versions.
LAWS_SCHEMA_VERSION = 2

_NUMERIC = [
    c for c in dataset.ENERGY_COLUMNS
    if c.endswith(("_j", "_s", "_w", "flops", "kernels", "bytes", "_spread", "_error", "_params"))
    or c in ("resolution", "steps", "batch", "n_repeats", "flops_analytic", "denoise_flops_per_step",
             "denoiser_evaluations")
]


class NoLawError(RuntimeError):
    """No fitted law can answer the question (no data yet, or outside the fitted data)."""


def conform_energy(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed copy of an energy table: numbers as float, ``cfg`` as bool, every column present.

    An empty table (no measurements yet) comes back empty, with the columns.
    """
    out = frame.copy()
    for col in dataset.ENERGY_COLUMNS:
        if col not in out:
            out[col] = np.nan
    for col in _NUMERIC:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    for col in ("gpu", "model", "precision", "architecture", "family", "status", "flag"):
        out[col] = out[col].astype("object").where(out[col].notna(), "")
        out[col] = out[col].astype(str)
    out["cfg"] = out["cfg"].map(lambda v: bool(v) if pd.notna(v) else False).astype(bool)
    return out.reset_index(drop=True)


def usable_points(frame: pd.DataFrame) -> pd.DataFrame:
    """Points with a measured, positive whole-image energy and positive FLOPs, indexed 0..n-1."""
    f = conform_energy(frame)
    ok = (f["status"] == "ok") & (f["energy_j"] > 0) & (f["flops"] > 0)
    dropped = int((~ok).sum())
    if dropped:
        log.info("%d of %d rows left out of the analysis (oom, no energy or no FLOPs)", dropped, len(f))
    return f[ok].reset_index(drop=True)


#: Columns without which a table is not an energy table (a FLOPs or measurement table given instead).
_ENERGY_KEYS = ("gpu", "model", "status", "energy_j", "flops")


def read_energy_table(path: str | Path) -> pd.DataFrame:
    """Every row of ``results/energy.parquet``, typed (``conform_energy``); a file that is not an
    energy table is refused with its name and what it lacks."""
    import pyarrow

    try:
        frame = pd.read_parquet(path)
    except (pyarrow.ArrowInvalid, ValueError) as exc:
        raise dataset.DatasetError(f"{path}: not a readable parquet table ({str(exc).splitlines()[0]})") \
            from None
    missing = [c for c in _ENERGY_KEYS if c not in frame]
    if missing:
        hint = (" (it is a FLOPs table: `collect` joins it with the measurements into results/energy.parquet)"
                if "calls" in frame or "component" in frame else "")
        raise dataset.DatasetError(f"{path}: not an energy table (results/energy.parquet, written by "
                                   f"`collect`): no column(s) {', '.join(missing)}{hint}")
    return conform_energy(frame)


def read_energy(path: str | Path) -> pd.DataFrame:
    """The usable points of ``results/energy.parquet`` (see ``usable_points``)."""
    return usable_points(read_energy_table(path))


def empty_table(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


def write_table(frame: pd.DataFrame, path: str | Path, columns: Sequence[str]) -> None:
    """Write ``frame`` as CSV with exactly ``columns`` (in that order), atomically."""
    missing = [c for c in columns if c not in frame]
    if missing and len(frame):
        raise ValueError(f"table for {path} lacks column(s) {missing}")
    out = frame.reindex(columns=list(columns)) if len(frame) else empty_table(columns)
    atomic.write_csv(out, path)
    log.info("wrote %d rows to %s", len(out), path)


def read_table(path: str | Path, columns: Sequence[str] = (), what: str = "table") -> pd.DataFrame:
    """A CSV table written by ``write_table`` (empty tables keep their header); one lacking any of
    ``columns`` is refused naming the file and ``what`` it should be (another table given in its place)."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise dataset.DatasetError(f"{path}: not a readable CSV {what} ({detail})") from None
    check_columns(frame, path, columns, what)
    return frame


def check_columns(frame: pd.DataFrame, path: str | Path, columns: Sequence[str], what: str) -> None:
    """A DatasetError naming ``path`` when ``frame`` lacks any of ``columns``: not the ``what`` expected."""
    missing = [c for c in columns if c not in frame]
    if missing:
        raise dataset.DatasetError(f"{path}: not a {what}: no column(s) {', '.join(missing)}")


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(payload: Mapping[str, Any], path: str | Path) -> None:
    atomic.write_text(json.dumps(_clean(payload), indent=1, sort_keys=True, allow_nan=False) + "\n", path)


def read_laws(path: str | Path) -> dict[str, Any]:
    """The laws JSON written by ``diffusion-energy fit``; clear errors if absent or stale."""
    p = Path(path)
    if not p.is_file():
        raise NoLawError(
            f"no fitted law at {p}: run `snakemake results/laws/laws.json` (or `diffusion-energy fit`) "
            "on measured data first"
        )
    try:
        payload = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise NoLawError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                         "refit with `diffusion-energy fit`") from None
    except UnicodeDecodeError:
        raise NoLawError(
            f"{p}: not a laws file written by `diffusion-energy fit` (not UTF-8 text); refit"
        ) from None
    if not isinstance(payload, dict):
        raise NoLawError(f"{p}: not a laws file written by `diffusion-energy fit`; refit")
    version = payload.get("schema_version")
    if version != LAWS_SCHEMA_VERSION:
        raise NoLawError(f"{p} has laws schema version {version}, expected {LAWS_SCHEMA_VERSION}: refit")
    from .laws_schema import problems

    bad = problems(payload)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise NoLawError(f"{p}: not a laws file `predict` can read: {bad[0]}{more}; the file is damaged or "
                         f"was written by another version: refit (`snakemake {p}`, or "
                         "`diffusion-energy fit`)")
    return payload


