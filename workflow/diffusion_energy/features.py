"""Per-image FLOPs, kernels and bytes of grid points that were not measured.

``predict`` needs, for a point nobody measured, exactly the columns that
``dataset.collect_energy`` gives a measured one (``flops``, the stage FLOPs,
``denoise_flops_per_step``, kernels, bytes with the fp32 doubling, ...). Rather
than repeat that arithmetic, this module hands ``collect_energy`` placeholder
measurement rows (no joules) for the requested points, so both paths share one
definition of "per image".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import dataset


@dataclass(frozen=True)
class Point:
    """One configuration to predict: the grid keys plus the model's denoiser kind."""

    gpu: str
    model: str
    architecture: str
    precision: str
    resolution: int
    steps: int
    cfg: bool
    batch: int = 1


def point_features(points: Iterable[Point], flops: pd.DataFrame) -> pd.DataFrame:
    """``dataset.ENERGY_COLUMNS`` rows for ``points``, energy columns NaN.

    ``flops`` is a FLOPs table (``flops.FLOPS_COLUMNS``) holding the points'
    (model, resolution, cfg, batch). Points it lacks are left out (logged by
    ``collect_energy``).
    """
    rows = []
    for p in points:
        for stage in dataset.STAGES:
            rows.append({
                "gpu": p.gpu, "model": p.model, "architecture": p.architecture,
                "precision": p.precision, "resolution": p.resolution, "steps": p.steps,
                "cfg": bool(p.cfg), "batch": p.batch, "stage": stage, "repeat": 0,
                "status": "ok", "energy_status": "measured", "energy_j": np.nan,
                "dynamic_energy_j": np.nan, "time_s": np.nan, "idle_power_w": np.nan,
                "stage_sum_error": np.nan, "flag": "", "gpu_name": "",
            })
    if not rows:
        return dataset.collect_energy(pd.DataFrame(), flops)
    return dataset.collect_energy(pd.DataFrame(rows), flops)
