"""What every figure shares: the canvas, saving, the "no data" panel, colours and markers.

Figures are drawn with matplotlib's object-oriented API on the Agg canvas (no
pyplot, no global state). Colours follow the architecture, markers the data
source, the same in every figure, so a reader learns them once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import atomic
from ..sources.schema import THIS_WORKFLOW

log = logging.getLogger(__name__)

NO_DATA = "no measurements yet"
NO_DATA_HINT = "run the measurement rules on a GPU,\nor add reference data to resources/measurements/"
NO_OWN_DATA_HINT = ("needs this workflow's own per-stage measurements (a GPU run):\n"
                    "the published sources measured whole images only")
#: Architectures in a fixed order (the grid's first, then the published sources' by size).
MODEL_ORDER = ("sd15", "sd21", "openjourney-v4", "kandinsky-2.2", "sdxl-turbo", "ssd-1b", "sdxl",
               "sd3-medium", "sd35-medium", "pixart-sigma", "sana15-1.6b", "sana15-4.8b", "hunyuandit-v1.2",
               "kandinsky-3", "sd35-large", "flux-dev", "qwen-image")
#: The video architectures, coloured from a palette of their own: tab20 has 20 colours and the image
#: architectures take 17, so a video model would otherwise share a colour with an image model.
VIDEO_MODEL_ORDER = ("cogvideox-2b", "cogvideox1.5-5b", "hunyuanvideo", "wan2.1-t2v-1.3b", "wan2.1-t2v-14b")
#: Markers that tell series of one panel apart where colours are close (light and dark of a pair).
SERIES_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
SOURCE_MARKERS = {THIS_WORKFLOW: "^", "mlenergy-v2": "o", "mlenergy-v3": "s", "paper-2511.17031": "D"}
SOURCE_LABELS = {THIS_WORKFLOW: "this workflow", "mlenergy-v2": "ML.ENERGY v2",
                 "mlenergy-v3": "ML.ENERGY v3", "paper-2511.17031": "arXiv 2511.17031 (quoted)"}
STAGE_COLOURS = {"text": "#4c72b0", "denoise": "#dd8452", "vae": "#55a868"}


def figure(nrows: int = 1, ncols: int = 1, width: float = 6.4, height: float = 4.4) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save(fig: Figure, outputs: Sequence[str | Path]) -> None:
    """Write ``fig`` to every path (format from the suffix), atomically."""
    for out in outputs:
        fmt = Path(out).suffix.lstrip(".")
        with atomic.atomic_path(out) as tmp:
            fig.savefig(tmp, format=fmt, dpi=130, metadata={"Software": None} if fmt == "png" else None)
        log.info("wrote %s", out)


def no_data(ax: Any, xlabel: str, ylabel: str, message: str = NO_DATA, hint: str = NO_DATA_HINT) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.55, message, ha="center", va="center", fontsize=14, transform=ax.transAxes)
    if hint:
        ax.text(0.5, 0.33, hint, ha="center", va="center", fontsize=9, color="0.4", transform=ax.transAxes)


def empty_figure(title: str, xlabel: str, ylabel: str, outputs: Sequence[str | Path], message: str = NO_DATA,
                 hint: str = NO_DATA_HINT) -> Figure:
    """A one-panel figure that says why there is nothing to draw."""
    fig, axes = figure()
    no_data(axes[0, 0], xlabel, ylabel, message, hint)
    axes[0, 0].set_title(title)
    save(fig, outputs)
    return fig


def model_order(models: Sequence[str]) -> list[str]:
    known = [m for m in MODEL_ORDER if m in set(models)]
    return known + sorted(set(models) - set(MODEL_ORDER))


def model_colours(models: Sequence[str]) -> dict[str, Any]:
    """Image architectures from tab20 without its two greys (grey is for laws and baselines), video
    architectures from Dark2, each its own colour."""
    from matplotlib import colormaps

    image = [c for i, c in enumerate(colormaps["tab20"].colors) if i not in (14, 15)]
    video = colormaps["Dark2"]
    known = set(MODEL_ORDER) | set(VIDEO_MODEL_ORDER)
    order = list(MODEL_ORDER) + sorted(set(models) - known)
    return {m: video(VIDEO_MODEL_ORDER.index(m) % 8) if m in VIDEO_MODEL_ORDER
            else image[order.index(m) % len(image)] for m in models}


def source_marker(source: str) -> str:
    return SOURCE_MARKERS.get(source, "v")


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


def model_handles(models: Sequence[str], colours: dict[str, Any], markers: dict[str, str] | None = None,
                  hollow: bool = False) -> list[Line2D]:
    return [Line2D([], [], color=colours[m], marker=(markers or {}).get(m, "o"), linestyle="none", label=m,
                   markerfacecolor="none" if hollow else colours[m]) for m in models]


def model_markers(models: Sequence[str]) -> dict[str, str]:
    """One marker per architecture, in order, so that two series of close colours differ in shape."""
    return {m: SERIES_MARKERS[i % len(SERIES_MARKERS)] for i, m in enumerate(models)}


def source_handles(sources: Sequence[str]) -> list[Line2D]:
    return [Line2D([], [], color="0.3", marker=source_marker(s), linestyle="none", markerfacecolor="none",
                   label=source_label(s)) for s in sorted(set(sources))]


def single_gpu(energy: pd.DataFrame) -> pd.DataFrame:
    """Image points of one GPU (the multi-GPU rows and the videos have their own figures)."""
    if energy.empty or "num_gpus" not in energy:
        return energy
    one_frame = energy["frames"].astype(float) == 1 if "frames" in energy else True
    return energy[(energy["num_gpus"].astype(float) == 1) & one_frame]


def gpu_order(gpus: Sequence[str]) -> list[str]:
    order = ("a100", "a6000", "l40s", "h100", "h200", "b200")
    return [g for g in order if g in set(gpus)] + sorted(set(gpus) - set(order))
