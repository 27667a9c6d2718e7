"""fp32 answers from laws fitted on half precision only.

Why: the shipped data hold no fp32 point, yet users ask for fp32 (most third-party benchmarks run it).
The answer is the half-precision answer times the roofline model's fp32/half energy ratio for the same
point. The roofline puts each fp32 kernel on the units PyTorch runs it on by default (matrix multiplies
at the datasheet's fp32 peak, convolutions on TF32, attention as 3xTF32: ``roofline``'s
``FP32_ATTENTION_TF32_PASSES``), moves twice the bytes, and charges each FLOP what its units spend at
their peak. Assumed, not measured: the efficiencies fitted on half precision carry over to the fp32 and
TF32 units. A blend's power-law parts have no fp32 term: only its roofline parts give the ratio (their
weights renormalised). Until fp32 points are fitted, the interval is the half-precision one widened by
``FP32_WIDENING`` either way. The ratio is checked against the fp32 log-energy shift published for an
A100 (arXiv 2511.17031: FLUX.1-dev and SD 3.5 Large) in ``tests/test_fp32_extrapolation.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import roofline
from .blend import BlendFit

#: How far either way the interval of an extrapolated fp32 answer reaches beyond the half-precision one:
#: a factor of 2, the spread between the rates fp32 matrix multiplies reach (cuBLAS SGEMM runs near the
#: fp32 peak on large shapes, the half-precision efficiency carried over is about half of that on an
#: A100) and the power they draw, neither of which an fp32 point of ours has measured yet.
FP32_WIDENING = 2.0


def roofline_parts(law: Any) -> list[tuple[roofline.RooflineFit, float]]:
    """The roofline models in ``law`` with their weights (summing to 1); empty if it holds none."""
    if isinstance(law, roofline.RooflineFit):
        return [(law, 1.0)]
    if isinstance(law, BlendFit):
        parts = [(p, float(law.weights.get(n, 1.0))) for n, p in law.parts.items()
                 if isinstance(p, roofline.RooflineFit)]
        total = sum(w for _, w in parts)
        return [(p, w / total) for p, w in parts] if total > 0 else []
    return []


def energy_ratio(law: Any, half: pd.DataFrame, half_inputs: roofline.RooflineInputs, fp32: pd.DataFrame,
                 fp32_inputs: roofline.RooflineInputs, level: float) -> np.ndarray:
    """fp32 / half-precision energy of the same points (rows of ``half`` and ``fp32`` alike), from the
    roofline parts of ``law`` (their weighted geometric mean). Raises ``ValueError`` if it has none."""
    parts = roofline_parts(law)
    if not parts:
        raise ValueError("the answering law holds no roofline model to carry half precision to fp32")
    logs = sum(w * np.log(p.predict(fp32, fp32_inputs, level).energy_j / p.predict(half, half_inputs,
                                                                                   level).energy_j)
               for p, w in parts)
    return np.exp(np.asarray(logs, float))
