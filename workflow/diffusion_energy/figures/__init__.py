"""The figures: one function per figure (in ``energy``, ``crossval``, ``hardware``, ``anchors``, ``video``).

``FIGURES`` names each figure with the inputs it draws from, so the CLI and the
workflow's rules pass each exactly what it needs (``draw``). The modules that
draw (matplotlib, the laws) are imported when a figure is drawn: the Snakefile
and the command line read ``FIGURES`` and ``FIGURE_NAMES`` without them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class FigureInputs:
    """What the figures draw from; each figure uses some of these (``FIGURES``)."""

    energy: pd.DataFrame | None = None
    laws: dict[str, Any] | None = None
    predictions: pd.DataFrame | None = None
    metrics: pd.DataFrame | None = None
    anchor_energy: pd.DataFrame | None = None
    anchor_laws: pd.DataFrame | None = None
    modality_predictions: pd.DataFrame | None = None
    multi_gpu_predictions: pd.DataFrame | None = None


Draw = Callable[[FigureInputs, Sequence[str | Path]], "Figure"]


def _in(module: str) -> Any:
    """The module of this package that draws a figure, imported when the figure is drawn."""
    return importlib.import_module(f"{__name__}.{module}")


#: Figure name -> (how to draw it, the inputs it needs).
FIGURES: dict[str, tuple[Draw, tuple[str, ...]]] = {
    "energy_vs_flops": (lambda d, o: _in("energy").energy_vs_flops(d.energy, d.laws, o), ("energy", "laws")),
    "energy_vs_batch": (lambda d, o: _in("energy").energy_vs_batch(d.energy, d.predictions, d.metrics, o),
                        ("energy", "predictions", "metrics")),
    "lomo_predicted_vs_measured": (
        lambda d, o: _in("crossval").lomo_predicted_vs_measured(d.predictions, d.metrics, o, laws=d.laws),
        ("predictions", "metrics", "laws")),
    "j_per_pflop": (lambda d, o: _in("hardware").j_per_pflop(d.energy, d.laws, o), ("energy", "laws")),
    "multi_gpu": (lambda d, o: _in("hardware").multi_gpu(d.energy, o, d.multi_gpu_predictions),
                  ("energy", "multi_gpu_predictions")),
    "stage_shares": (lambda d, o: _in("energy").stage_shares(d.energy, o), ("energy",)),
    "energy_vs_resolution": (lambda d, o: _in("energy").energy_vs_resolution(d.energy, o), ("energy",)),
    "energy_vs_steps": (lambda d, o: _in("energy").energy_vs_steps(d.energy, o), ("energy",)),
    "precision_ratio": (lambda d, o: _in("energy").precision_ratio(d.energy, o), ("energy",)),
    "published_anchors": (lambda d, o: _in("anchors").published_anchors(d.anchor_energy, d.anchor_laws, o),
                          ("anchor_energy", "anchor_laws")),
    "video_energy_vs_flops": (
        lambda d, o: _in("video").video_energy_vs_flops(d.energy, d.modality_predictions, o),
        ("energy", "modality_predictions")),
}


#: Every figure of the workflow, ``results/figures/{name}.pdf|png``.
FIGURE_NAMES = tuple(FIGURES)


def draw(name: str, inputs: FigureInputs, outputs: Sequence[str | Path]) -> Figure:
    """Draw figure ``name`` from ``inputs`` into every output path (PDF, PNG); return the figure drawn
    (tests check its captions' claims against its artists)."""
    fn, needs = FIGURES[name]
    missing = [n for n in needs if getattr(inputs, n) is None]
    if missing:
        raise UsageError(f"figure {name} needs {' '.join('--' + n.replace('_', '-') for n in missing)}")
    return fn(inputs, outputs)
