"""Per-image FLOPs, kernels and bytes of grid points that were not measured.

``predict`` needs, for a point nobody measured, exactly the columns that
``dataset.collect_energy`` gives a measured one (``flops``, the stage FLOPs,
``denoise_flops_per_step``, kernels, bytes with the fp32 doubling, ...): both
take them from ``dataset.per_image_costs``, one definition of "per image".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..sources import dataset


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
    #: Denoiser evaluations per image (``ModelSpec.denoiser_evaluations(steps)``); None: the zoo's
    #: model of this name answers (a model given as a file must pass its spec's own).
    denoiser_evaluations: int | None = None


def point_features(points: Iterable[Point], flops: pd.DataFrame) -> pd.DataFrame:
    """``dataset.ENERGY_COLUMNS`` rows for ``points``, energy columns NaN.

    ``flops`` is a FLOPs table (``flops.FLOPS_COLUMNS``) holding the points'
    (model, resolution, cfg, batch). Points it lacks are left out (logged by
    ``collect_energy``).
    """
    keys = pd.DataFrame(
        [{"gpu": p.gpu, "model": p.model, "architecture": p.architecture, "precision": p.precision,
          "resolution": p.resolution, "steps": p.steps, "cfg": bool(p.cfg), "batch": p.batch,
          "denoiser_evaluations": p.denoiser_evaluations}
         for p in points],
        columns=[*dataset.GRID_KEYS, "architecture", "denoiser_evaluations"],
    )
    costs = dataset.per_image_costs(keys, flops) if len(keys) else keys
    for col in dataset.ENERGY_COLUMNS:
        if col not in costs:
            costs[col] = np.nan
    costs["status"] = "ok"
    return costs[list(dataset.ENERGY_COLUMNS)].sort_values(dataset.GRID_KEYS, ignore_index=True)
