"""Energies a GPU cannot have spent: the bounds its datasheet sets, checked on import and before fits.

A GPU kind's datasheet (``gpu_kinds.<kind>.datasheet``) bounds what is physically
possible for any point measured on it, with ``n`` GPUs working together:

* time: no GPU does the work faster than its peak allows, ``time >= FLOPs / (n x peak)``;
* power: none draws more than its power limit, ``energy <= n x power limit x time``;
* power: none draws less than idle while it works, ``energy >= n x idle x time``, and
  without a time, ``energy >= idle x FLOPs / peak`` (the shortest time the work takes).

Idle power is the point's own measured idle (this workflow measures it) or, where a
source did not measure it, ``MIN_IDLE_FRACTION`` of the power limit: a loose floor
(H100 and H200 idle at 81-130 W of 700 W, 12-19%; see NOTES), which catches unit
errors (J that are kJ or kWh, energies divided by 1,000), not subtle ones.

``violations`` gives the reason a row breaks a bound ("" where it is possible); rows
lacking FLOPs or time are checked on what they have. ``peak_warnings`` flags a
datasheet whose peak the fastest point on that kind does not come near.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .gpu_datasheets import Datasheet

#: Floor of a working GPU's power where its idle power was not measured, as a fraction of its limit.
MIN_IDLE_FRACTION = 0.05
#: Headroom over the power limit for counter resolution and short excursions above the cap.
POWER_MARGIN = 1.10
#: Headroom over the datasheet peak (boost clocks above the rated one).
PEAK_MARGIN = 1.05
#: A kind whose fastest point reaches less than this fraction of its peak has a suspect datasheet
#: (the shipped public data reach 22-43% of the dense peak on A100, H100 and B200).
MIN_PEAK_FRACTION = 0.05


def _col(frame: pd.DataFrame, name: str, default: float = math.nan) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), default, dtype=float)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)


def violations(frame: pd.DataFrame, sheets: Mapping[str, Datasheet]) -> pd.Series:
    """Per row, why its energy or time is impossible on its GPU kind's datasheet ("" if possible).

    Uses ``gpu``, ``precision``, ``energy_j`` (per image), ``time_s`` (per image), ``num_gpus``,
    ``flops`` (per image) and ``idle_power_w`` where present; a kind without a datasheet is not
    checked.
    """
    reasons = pd.Series("", index=frame.index, dtype=object)
    if frame.empty:
        return reasons
    energy, time_s, flops = _col(frame, "energy_j"), _col(frame, "time_s"), _col(frame, "flops")
    n = np.nan_to_num(_col(frame, "num_gpus", 1.0), nan=1.0)
    idle = _col(frame, "idle_power_w")
    gpus = frame["gpu"].astype(str).to_numpy()
    precisions = (frame["precision"].astype(str).to_numpy() if "precision" in frame
                  else np.full(len(frame), "fp16"))
    for i, (gpu, precision) in enumerate(zip(gpus, precisions, strict=True)):
        sheet = sheets.get(gpu)
        if sheet is None or not math.isfinite(energy[i]):
            continue
        peak, limit = sheet.peak_flop_s(precision) * n[i], sheet.power_limit_w * n[i]
        floor_w = (idle[i] if math.isfinite(idle[i]) and idle[i] > 0
                   else MIN_IDLE_FRACTION * sheet.power_limit_w) * n[i]
        what = "measured idle" if math.isfinite(idle[i]) and idle[i] > 0 else \
            f"{MIN_IDLE_FRACTION:.0%} of the power limit"
        found = []
        if math.isfinite(time_s[i]) and time_s[i] > 0:
            power = energy[i] / time_s[i]
            if power > limit * POWER_MARGIN:
                found.append(f"average power {power:,.4g} W above {n[i]:g} x the {sheet.power_limit_w:g} W "
                             "power limit")
            elif power < floor_w:
                found.append(f"average power {power:.4g} W below idle ({floor_w:.4g} W, {what})")
            if math.isfinite(flops[i]) and flops[i] / time_s[i] > peak * PEAK_MARGIN:
                found.append(f"{flops[i] / time_s[i] / 1e12:,.4g} TFLOP/s, faster than {n[i]:g} x the "
                             f"datasheet peak {sheet.peak_flop_s(precision) / 1e12:,.4g} TFLOP/s")
        elif math.isfinite(flops[i]) and flops[i] > 0:
            least = flops[i] / peak * floor_w
            if energy[i] < least:
                found.append(f"{energy[i]:.4g} J below the least {least:.4g} J its {flops[i] / 1e12:,.4g} "
                             f"TFLOP take at peak and idle power ({what})")
        if found:
            reasons.iloc[i] = f"impossible on {gpu}: " + "; ".join(found)
    return reasons


def peak_warnings(frame: pd.DataFrame, sheets: Mapping[str, Datasheet]) -> list[str]:
    """Kinds whose fastest point stays under ``MIN_PEAK_FRACTION`` of the datasheet peak."""
    out = []
    if frame.empty or "flops" not in frame or "time_s" not in frame:
        return out
    rate = _col(frame, "flops") / (_col(frame, "time_s") * np.nan_to_num(_col(frame, "num_gpus", 1.0),
                                                                           nan=1.0))
    for gpu in sorted(set(frame["gpu"].astype(str)) & set(sheets)):
        mine = (frame["gpu"].astype(str) == gpu).to_numpy() & np.isfinite(rate)
        if not mine.any():
            continue
        half = mine & (frame["precision"].astype(str).to_numpy() != "fp32")
        if not half.any():
            continue
        best, peak = float(np.max(rate[half])), sheets[gpu].half_flop_s
        if best < MIN_PEAK_FRACTION * peak:
            out.append(f"{gpu}: the fastest of its {int(half.sum())} points reaches {best / 1e12:,.4g} "
                       "TFLOP/s, "
                       f"{best / peak:.1%} of the datasheet's {peak / 1e12:,.4g} TFLOP/s "
                       f"(gpu_kinds.{gpu}.datasheet.half_tflop_s): a peak typed too high?")
    return out
