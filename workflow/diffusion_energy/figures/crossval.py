"""Figures of cross-validation: predicted vs measured energy for architectures the fit never saw."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..laws import crossval
from . import style

#: How each candidate is drawn: the chosen law filled, the baselines open, EcoLogits as crosses.
_CHOSEN_STYLE = {"color": "#c44e52", "marker": "o"}
_BASELINE_STYLE = {"flops": {"color": "#4c72b0", "marker": "s"}, "paper": {"color": "#55a868", "marker": "^"},
                   "ecologits": {"color": "0.35", "marker": "x"}}


def chosen_candidate(laws: dict[str, Any] | None, metrics: pd.DataFrame, target: str) -> str:
    """The law chosen for every GPU kind (the laws JSON), else the best pooled held-out P90."""
    from ..laws.analysis import BASELINE

    chosen = ((laws or {}).get("pooled", {}).get(target, {}) or {}).get("selected")
    return chosen or crossval.select_candidate(metrics, target) or BASELINE


def lomo_predicted_vs_measured(predictions: pd.DataFrame, metrics: pd.DataFrame,
                               outputs: Sequence[str | Path], target: str = "image",
                               laws: dict[str, Any] | None = None) -> Figure:
    """Leave-one-model-out, per GPU kind: predicted vs measured energy of every held-out point, the law
    chosen for every kind beside the baselines scored on the same points (FLOPs-only, the paper's law,
    EcoLogits' constant energy per FLOP), with y = x. Each candidate's points carry its name as ``gid``."""
    from ..laws.analysis import BASELINES

    xlabel, ylabel = "measured energy per image (J)", "predicted energy per image (J)"
    pred = predictions[predictions["target"] == target] if len(predictions) else predictions
    if pred.empty:
        return style.empty_figure("Leave-one-model-out predictions", xlabel, ylabel, outputs,
                                  hint=style.NO_DATA_HINT
                                  + "\n(leave-one-model-out needs at least two architectures)")
    chosen = chosen_candidate(laws, metrics, target)
    shown = [chosen] + [b for b in BASELINES if b != chosen and b in set(pred["candidate"])]
    looks = {c: _CHOSEN_STYLE if c == chosen else _BASELINE_STYLE.get(c, {"color": "0.5", "marker": "D"})
             for c in shown}
    gpus = style.gpu_order(pred["gpu"].astype(str).unique())
    fig, axes = style.figure(1, len(gpus), width=4.3 * len(gpus) + 2.0, height=4.9)
    drawn = pred[pred["candidate"].isin(shown)]
    lo = float(min(drawn["measured_j"].min(), drawn["predicted_j"].min())) / 1.4
    hi = float(max(drawn["measured_j"].max(), drawn["predicted_j"].max())) * 1.4
    for ax, gpu in zip(axes.flat, gpus, strict=True):
        lines = []
        for cand in reversed(shown):
            part = drawn[(drawn["candidate"] == cand) & (drawn["gpu"].astype(str) == gpu)]
            look = looks[cand]
            filled = cand == chosen or look["marker"] == "x"
            colours = ({"color": look["color"]} if look["marker"] == "x" else
                       {"facecolor": look["color"] if filled else "none", "edgecolor": look["color"]})
            ax.scatter(part["measured_j"], part["predicted_j"], s=18, marker=look["marker"], linewidth=0.9,
                       alpha=0.9 if cand == chosen else 0.6, zorder=3 if cand == chosen else 2, gid=cand,
                       **colours)
        for cand in shown:
            m = metrics[(metrics["target"] == target) & (metrics["candidate"] == cand)
                        & (metrics["held_out"] == crossval.ALL) & (metrics["gpu"].astype(str) == gpu)]
            if len(m):
                r = m.iloc[0]
                lines.append(f"{cand}: median {100 * r['median_ape']:.1f}%, P90 {100 * r['p90_ape']:.1f}%")
        ax.plot([lo, hi], [lo, hi], color="0.2", lw=1, gid="identity")
        ax.fill_between([lo, hi], [lo / 1.2, hi / 1.2], [lo * 1.2, hi * 1.2], color="0.5", alpha=0.12,
                        gid="band")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.2)
        ax.text(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", ha="left", fontsize=6.5,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
        n = int(((pred["gpu"].astype(str) == gpu) & (pred["candidate"] == chosen)).sum())
        ax.set_title(f"{gpu} ({n} held-out points)", fontsize=9)
    axes[0, 0].set_ylabel(ylabel)
    def face(c: str) -> Any:
        return looks[c]["color"] if c == chosen or looks[c]["marker"] == "x" else "none"

    handles = [Line2D([], [], linestyle="none", marker=looks[c]["marker"], color=looks[c]["color"],
                      markerfacecolor=face(c), label=f"{c} (chosen)" if c == chosen else f"{c} (baseline)")
               for c in shown]
    handles += [Line2D([], [], color="0.2", lw=1, label="y = x"),
                Line2D([], [], color="0.5", lw=6, alpha=0.3, label="±20%")]
    fig.legend(handles=handles, fontsize=7, loc="outside right upper", title="law", title_fontsize=7)
    fig.suptitle("Leave-one-model-out: every point of an architecture predicted without it, "
                 "the chosen law beside the baselines")
    style.save(fig, outputs)
    return fig
