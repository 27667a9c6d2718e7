"""An answer on several GPUs: the one-GPU answer of the same point, carried by the multi-GPU law.

``predict --gpus N`` first answers the point on one GPU of the kind, on the
stack that runs several GPUs (xDiT, ``sources.stacks``), then
``parallelism.ParallelLaw`` adds what N GPUs spend beyond one: the work every
GPU repeats, the denoiser's attention activations exchanged over NVLink (from
the point's own counts and the kind's datasheet) and a latency per collective.
The energy is the whole set of GPUs' per image (or video). The interval is the
one-GPU interval carried by the same ratio, widened to the law's held-out
end-to-end errors (architectures left out).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..sources import gpu_datasheets
from . import parallelism

if TYPE_CHECKING:  # predict calls this module: its class is only named here
    from .predict import EnergyPrediction


@dataclass(frozen=True)
class SeveralGpus:
    """What ``predict --gpus`` asks: GPUs per output, their split, and the multi-GPU laws
    (``parallelism.read_laws``) that answer."""

    num_gpus: int
    ulysses: int
    ring: int
    laws: Mapping[str, Any]


def on_several_gpus(one: EnergyPrediction, several: SeveralGpus, modality: str, work: pd.DataFrame,
                    sheet: gpu_datasheets.Datasheet | None) -> EnergyPrediction:
    """``one`` (the answer on one GPU) carried to ``several``'s GPUs; ``work``: the point's attention work
    (``predict.CountedPoint.attention``), ``sheet``: its GPU kind's datasheet."""
    law = parallelism.law_for(several.laws, modality)
    num_gpus, ulysses, ring = several.num_gpus, several.ulysses, several.ring
    if sheet is None or not sheet.link_byte_s:
        raise UsageError(f"{one.gpu}: its datasheet gives no NVLink bandwidth, which a prediction on several "
                         f"GPUs needs: add nvlink_gb_s (GPU-to-GPU, both directions, as vendors quote it) to "
                         f"gpu_kinds.{one.gpu}.datasheet or to --gpu-datasheet")
    point = pd.DataFrame({"num_gpus": [num_gpus], "ulysses_degree": [ulysses], "ring_degree": [ring],
                          "gpu": [one.gpu]})
    feats = parallelism.features(point, work.reset_index(drop=True), {one.gpu: sheet})
    energy = float(law.energy(np.array([one.energy_j]), np.array([float(num_gpus)]), feats)[0])
    ratio = energy / one.energy_j
    low, high = one.low_j * ratio, one.high_j * ratio
    interval = f"{one.interval}; carried to {num_gpus} GPUs by the predicted ratio {ratio:.2f}"
    if math.isfinite(law.interval_low_log) and math.isfinite(law.interval_high_log):
        low, high = min(low, energy * math.exp(law.interval_low_log)), \
            max(high, energy * math.exp(law.interval_high_log))
        interval += (f", widened to the multi-GPU law's held-out errors ({law.interval_points} points of "
                     f"{law.interval_models} architectures left out, end to end)")
    notes = list(one.notes)
    if law.max_gpus and num_gpus > law.max_gpus:
        notes.append(f"{num_gpus} GPUs is more than the multi-GPU law was fitted on (at most "
                     f"{law.max_gpus}): extrapolation")
    if one.gpu not in law.gpus:
        notes.append(f"the multi-GPU law was fitted on {', '.join(law.gpus)}: {one.gpu} enters it through "
                     "its datasheet's NVLink bandwidth and power limit")
    return dataclasses.replace(
        one, energy_j=energy, low_j=low, high_j=high, num_gpus=num_gpus, ulysses_degree=ulysses,
        ring_degree=ring, interval=interval, notes=tuple(notes),
        law=f"{one.law}; on {num_gpus} GPUs, the multi-GPU law: {parallelism.describe(law)}")
