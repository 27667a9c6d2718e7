"""GPU datasheets: how a GPU kind enters the shared energy models.

A kind's datasheet (``gpu_kinds.<kind>.datasheet`` in the config) gives its
dense half-precision and fp32 peaks, its memory bandwidth and its board power
limit. The pooled laws see a GPU through its physical energy per FLOP (power
limit / peak FLOP/s) and the roofline model through its peak rates, so a kind
nobody measured is predicted from its datasheet alone. Every figure is the
vendor's, with its source, typed in the config (never fitted).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError

#: Columns ``with_datasheets`` adds to a table of points (NaN where a kind has no datasheet).
COLUMNS = ("peak_flop_s", "peak_half_flop_s", "peak_fp32_flop_s", "peak_tf32_flop_s", "peak_bandwidth_byte_s",
           "power_limit_sheet_w", "physical_j_per_flop")
#: The dense TF32 tensor peak as a share of the dense half-precision one, where a datasheet gives none:
#: one half on every tensor-core GPU since Ampere (NVIDIA A100 datasheet: TF32 156, FP16 312 TFLOPS;
#: H100 SXM: 495 and 989; L40S, RTX A6000 and GeForce RTX 4090 likewise, against the fp32-accumulate
#: figure; AMD MI300X: 654 and 1,307).
TF32_PER_HALF = 0.5


class DatasheetError(UserError, ValueError):
    """A datasheet is missing or malformed."""


@dataclass(frozen=True)
class Datasheet:
    """Vendor figures of one GPU kind; units in the names."""

    half_flop_s: float
    fp32_flop_s: float
    bandwidth_byte_s: float
    power_limit_w: float
    source: str = ""
    #: Dense TF32 tensor peak (what PyTorch's fp32 convolutions run at by default); 0: TF32_PER_HALF of
    #: the half-precision peak.
    tf32_flop_s: float = 0.0
    #: GPU-to-GPU NVLink bandwidth, both directions together, as vendors quote it (0: none given; what a
    #: prediction on several GPUs of this kind needs).
    link_byte_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.tf32_flop_s:
            object.__setattr__(self, "tf32_flop_s", TF32_PER_HALF * self.half_flop_s)

    def peak_flop_s(self, precision: str) -> float:
        return self.fp32_flop_s if precision == "fp32" else self.half_flop_s

    def physical_j_per_flop(self, precision: str = "fp16") -> float:
        """The least energy a FLOP can cost: board power at full peak rate."""
        return self.power_limit_w / self.peak_flop_s(precision)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], where: str = "datasheet") -> Datasheet:
        try:
            sheet = cls(half_flop_s=float(raw["half_tflop_s"]) * 1e12,
                        fp32_flop_s=float(raw["fp32_tflop_s"]) * 1e12,
                        bandwidth_byte_s=float(raw["bandwidth_gb_s"]) * 1e9,
                        power_limit_w=float(raw["power_limit_w"]), source=str(raw.get("source", "")),
                        tf32_flop_s=float(raw.get("tf32_tflop_s") or 0.0) * 1e12,
                        link_byte_s=float(raw.get("nvlink_gb_s") or 0.0) * 1e9)
        except KeyError as exc:
            raise DatasheetError(f"{where}: missing {exc}") from None
        except (TypeError, ValueError) as exc:
            raise DatasheetError(f"{where}: {exc}") from None
        values = (sheet.half_flop_s, sheet.fp32_flop_s, sheet.tf32_flop_s, sheet.bandwidth_byte_s,
                  sheet.power_limit_w)
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise DatasheetError(f"{where}: every figure must be a positive number")
        if not (math.isfinite(sheet.link_byte_s) and sheet.link_byte_s >= 0):
            raise DatasheetError(f"{where}: nvlink_gb_s must be a positive number (or absent)")
        return sheet

    def to_config(self) -> dict[str, Any]:
        tf32 = ({} if self.tf32_flop_s == TF32_PER_HALF * self.half_flop_s
                else {"tf32_tflop_s": self.tf32_flop_s / 1e12})  # given only where not the default
        tf32.update({"nvlink_gb_s": self.link_byte_s / 1e9} if self.link_byte_s else {})
        return {"half_tflop_s": self.half_flop_s / 1e12, "fp32_tflop_s": self.fp32_flop_s / 1e12, **tf32,
                "bandwidth_gb_s": self.bandwidth_byte_s / 1e9, "power_limit_w": self.power_limit_w,
                "source": self.source}


def datasheets(gpu_kinds: Mapping[str, Mapping[str, Any]]) -> dict[str, Datasheet]:
    """The datasheet of every configured kind that has one."""
    return {kind: Datasheet.from_config(spec["datasheet"], f"gpu_kinds.{kind}.datasheet")
            for kind, spec in gpu_kinds.items() if spec.get("datasheet")}


def parse_datasheet(text: str) -> Datasheet:
    """``half_tflop_s=989,fp32_tflop_s=67,bandwidth_gb_s=4800,power_limit_w=700`` -> a datasheet."""
    raw: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise DatasheetError(f"datasheet entry {part!r} is not key=value")
        raw[key.strip()] = value.strip()
    unknown = set(raw) - {"half_tflop_s", "fp32_tflop_s", "tf32_tflop_s", "bandwidth_gb_s", "power_limit_w",
                          "nvlink_gb_s", "source"}
    if unknown:
        raise DatasheetError(f"datasheet: unknown key(s) {sorted(unknown)}; known: half_tflop_s, "
                             "fp32_tflop_s, tf32_tflop_s (optional), bandwidth_gb_s, power_limit_w, "
                             "nvlink_gb_s (optional, for --gpus above 1)")
    return Datasheet.from_config(raw, "datasheet")


def with_datasheets(points: pd.DataFrame, sheets: Mapping[str, Datasheet]) -> pd.DataFrame:
    """``points`` with ``COLUMNS`` from each row's GPU kind (NaN where its kind has none)."""
    out = points.copy()
    gpu = out["gpu"].astype(str)
    prec = out["precision"].astype(str) if "precision" in out else pd.Series("fp16", index=out.index)

    def column(fn: Any) -> np.ndarray:
        return np.array([fn(sheets[g], p) if g in sheets else np.nan for g, p in zip(gpu, prec, strict=True)],
                        dtype=float)

    out["peak_flop_s"] = column(lambda s, p: s.peak_flop_s(p))
    out["peak_half_flop_s"] = column(lambda s, p: s.half_flop_s)
    out["peak_fp32_flop_s"] = column(lambda s, p: s.fp32_flop_s)
    out["peak_tf32_flop_s"] = column(lambda s, p: s.tf32_flop_s)
    out["peak_bandwidth_byte_s"] = column(lambda s, p: s.bandwidth_byte_s)
    out["power_limit_sheet_w"] = column(lambda s, p: s.power_limit_w)
    out["physical_j_per_flop"] = column(lambda s, p: s.physical_j_per_flop(p))
    return out
