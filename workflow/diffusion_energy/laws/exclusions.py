"""Which points of the energy table the fits leave out, and why: nothing is dropped without a word.

A point is left out of every fit when its status is ok but its whole-image energy or
FLOPs is not a positive finite number (a count that overflowed, a NaN), or when its
energy or time is impossible on its GPU kind's datasheet (``sources.plausibility``).
This workflow's points without a dynamic (idle-subtracted) energy are left out of the
dynamic laws only. Each reason is logged as a warning (the run summary shows them) and
written into the laws JSON (``left_out``), which the summary's "Left out of the fits" and
``predict``'s messages read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..sources import plausibility
from ..sources.gpu_datasheets import Datasheet
from ..sources.schema import THIS_WORKFLOW

log = logging.getLogger(__name__)

#: At most this many points are named in one warning line.
_NAMED = 8


def point_label(row: pd.Series) -> str:
    """``sd15 on h100 (this-workflow), 512 px, 50 steps, fp16, batch 1``."""
    def num(col: str) -> str:
        v = pd.to_numeric(pd.Series([row.get(col)]), errors="coerce").iloc[0]
        return f"{v:,.0f}" if np.isfinite(v) else "?"

    return (f"{row.get('model')} on {row.get('gpu')} ({row.get('source', THIS_WORKFLOW)}), "
            f"{num('resolution')} px, {num('steps')} steps, {row.get('precision')}, batch {num('batch')}")


def unfittable(frame: pd.DataFrame) -> pd.Series:
    """Per row of status ok: why its energy or FLOPs cannot be fitted ("" where they can)."""
    reasons = pd.Series("", index=frame.index, dtype=object)
    if frame.empty:
        return reasons
    ok = frame["status"].astype(str).eq("ok").to_numpy()
    for col, what in (("energy_j", "energy per image"), ("flops", "FLOPs per image")):
        v = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float) if col in frame \
            else np.full(len(frame), np.nan)
        with np.errstate(invalid="ignore"):
            bad = ok & ~(np.isfinite(v) & (v > 0))
        for i in np.flatnonzero(bad):
            sep = "; " if reasons.iloc[i] else ""
            reasons.iloc[i] += f"{sep}{what} {v[i]:g} is not a positive finite number"
    return reasons


def no_dynamic(frame: pd.DataFrame) -> pd.Series:
    """This workflow's points with a raw energy but no dynamic energy: left out of the dynamic laws.

    Published sources never report a dynamic energy (no idle power), so their rows are not listed.
    """
    reasons = pd.Series("", index=frame.index, dtype=object)
    if frame.empty or "dynamic_energy_j" not in frame:
        return reasons
    source = frame["source"].astype(str) if "source" in frame else pd.Series(THIS_WORKFLOW, index=frame.index)
    dyn = pd.to_numeric(frame["dynamic_energy_j"], errors="coerce")
    missing = (source == THIS_WORKFLOW) & ~(np.isfinite(dyn) & (dyn > 0))
    reasons[missing] = [f"dynamic energy {v:g} J is not a positive finite number" for v in dyn[missing]]
    return reasons


def _report(frame: pd.DataFrame, reasons: pd.Series, what: str) -> list[str]:
    """One line per left-out point (written into the laws JSON) and one warning for them all."""
    bad = frame[reasons != ""]
    lines = [f"{point_label(row)}: {reasons[i]}" for i, row in bad.iterrows()]
    if lines:
        log.warning("%d point(s) left out of %s: %s%s", len(lines), what, " | ".join(lines[:_NAMED]),
                    f" | ... {len(lines) - _NAMED} more" if len(lines) > _NAMED else "")
    return lines


def split(energy: pd.DataFrame, sheets: Mapping[str, Datasheet]) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """(the points the fits use, left-out lines by what they are left out of).

    ``energy`` is the conformed energy table (every status); oom points are not fitted and not
    listed here (the run summary lists them from the table).
    """
    frame = energy.reset_index(drop=True)
    if frame.empty:
        return frame, {}
    unfit = unfittable(frame)
    impossible = plausibility.violations(frame, sheets).where(unfit == "", "")
    reasons = unfit.where(unfit != "", impossible)
    left = {"all": _report(frame, reasons, "every fit")}
    for line in plausibility.peak_warnings(frame[reasons == ""], sheets):
        log.warning("%s", line)
        left.setdefault("datasheets", []).append(line)
    kept = frame[(reasons == "") & frame["status"].astype(str).eq("ok")].reset_index(drop=True)
    left["dynamic"] = _report(kept, no_dynamic(kept), "the dynamic (idle-subtracted) laws")
    return kept, {k: v for k, v in left.items() if v}
