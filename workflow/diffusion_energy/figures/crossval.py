"""Figures of cross-validation: predicted vs measured energy for architectures the fit never saw."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.lines import Line2D

from ..laws import crossval
from . import style


def lomo_predicted_vs_measured(predictions: pd.DataFrame, metrics: pd.DataFrame,
                               outputs: Sequence[str | Path], target: str = "image") -> None:
    """Leave-one-model-out, per GPU kind: predicted vs measured energy of every held-out point, the
    candidate chosen for the kind (filled) beside the FLOPs-only law (open), with y = x."""
    from ..laws.analysis import BASELINE

    xlabel, ylabel = "measured energy per image (J)", "predicted energy per image (J)"
    pred = predictions[predictions["target"] == target] if len(predictions) else predictions
    if pred.empty:
        style.empty_figure("Leave-one-model-out predictions", xlabel, ylabel, outputs,
                           hint=style.NO_DATA_HINT
                           + "\n(leave-one-model-out needs at least two architectures)")
        return
    gpus = style.gpu_order(pred["gpu"].astype(str).unique())
    models = style.model_order(pred["held_out"].unique())
    colours = style.model_colours(models)
    fig, axes = style.figure(1, len(gpus), width=4.6 * len(gpus) + 2.2, height=5.0)
    lo = float(min(pred["measured_j"].min(), pred["predicted_j"].min())) / 1.4
    hi = float(max(pred["measured_j"].max(), pred["predicted_j"].max())) * 1.4
    for ax, gpu in zip(axes.flat, gpus, strict=True):
        best = crossval.select_candidate(metrics, target, gpu=gpu) or BASELINE
        lines = []
        for cand, filled in ((BASELINE, False), (best, True)):
            part = pred[(pred["candidate"] == cand) & (pred["gpu"].astype(str) == gpu)]
            for m in models:
                g = part[part["held_out"] == m]
                ax.scatter(g["measured_j"], g["predicted_j"], s=20, marker="o", linewidth=0.9,
                           facecolor=colours[m] if filled else "none", edgecolor=colours[m],
                           alpha=0.95 if filled else 0.55)
            m = metrics[(metrics["target"] == target) & (metrics["candidate"] == cand)
                        & (metrics["held_out"] == crossval.ALL) & (metrics["gpu"].astype(str) == gpu)]
            if len(m):
                r = m.iloc[0]
                lines.append(f"{cand}: median {100 * r['median_ape']:.1f}%, P90 {100 * r['p90_ape']:.1f}%, "
                             f"ρ {r['spearman']:.3f}")
            if cand == best:
                break
        ax.plot([lo, hi], [lo, hi], color="0.2", lw=1)
        ax.fill_between([lo, hi], [lo / 1.2, hi / 1.2], [lo * 1.2, hi * 1.2], color="0.5", alpha=0.12)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.2)
        ax.text(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", ha="left", fontsize=7,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
        ax.set_title(f"{gpu}: {best} (filled) vs FLOPs-only (open)", fontsize=9)
    axes[0, 0].set_ylabel(ylabel)
    extra = [Line2D([], [], color="0.2", lw=1, label="y = x"),
             Line2D([], [], color="0.5", lw=6, alpha=0.3, label="±20%")]
    fig.legend(handles=style.model_handles(models, colours) + extra, fontsize=7, loc="outside right upper",
               title="held-out architecture", title_fontsize=7)
    fig.suptitle("Leave-one-model-out: every point of an architecture predicted by a model fitted without it")
    style.save(fig, outputs)
