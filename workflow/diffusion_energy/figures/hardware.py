"""Figures of the hardware: energy per FLOP against each GPU's physical limit, and multi-GPU runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..sources import gpu_datasheets
from . import style


def j_per_pflop(energy: pd.DataFrame, payload: dict[str, Any], outputs: Sequence[str | Path]) -> Figure:
    """Energy per PFLOP of every single-GPU point, per GPU kind, against the kind's physical limit
    (datasheet power limit / dense half-precision peak): how far image generation is from the silicon.
    The median and its multiple of the limit are in the label under each kind; the limit bars carry the
    ``gid`` ``physical-limit``."""
    xlabel, ylabel = "GPU kind", "energy per PFLOP of the image (J/PFLOP)"
    frame = style.single_gpu(energy)
    if frame.empty:
        return style.empty_figure("Energy per PFLOP vs the physical limit", xlabel, ylabel, outputs)
    sheets = {k: gpu_datasheets.Datasheet.from_config(v) for k, v in payload.get("datasheets", {}).items()}
    gpus = style.gpu_order(frame["gpu"].unique())
    models = style.model_order(frame["model"].unique())
    colours = style.model_colours(models)
    fig, axes = style.figure(width=9.5, height=5.0)
    ax = axes[0, 0]
    rng = np.random.default_rng(0)  # a fixed jitter: the figure is the same at every run
    ticks = []
    for i, gpu in enumerate(gpus):
        part = frame[frame["gpu"] == gpu]
        values = part["energy_j"] / (part["flops"] / 1e15)
        x = i + rng.uniform(-0.28, 0.28, len(part))
        for src in sorted(set(part["source"])):
            sel = (part["source"] == src).to_numpy()
            ax.scatter(x[sel], values[sel], c=[colours[m] for m in part["model"][sel]],
                       marker=style.source_marker(src), s=18, alpha=0.85, edgecolor="none")
        med = float(np.median(values))
        tick = f"{gpu}\nmedian {med:,.0f} J/PFLOP"
        if gpu in sheets:
            limit = sheets[gpu].physical_j_per_flop("fp16") * 1e15
            ax.hlines(limit, i - 0.4, i + 0.4, color="k", lw=2, gid="physical-limit")
            ax.text(i + 0.42, limit, f"{limit:.0f}", va="center", fontsize=8)
            tick += (f"\n= {med / limit:.1f}x the limit\n{sheets[gpu].power_limit_w:.0f} W, "
                     f"{sheets[gpu].half_flop_s / 1e12:.0f} TFLOP/s")
        ticks.append(tick)
    ax.set_xticks(range(len(gpus)), ticks, fontsize=8)
    ax.set_yscale("log")
    ax.set_xlim(-0.6, len(gpus) - 0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", which="both", alpha=0.25)
    extra = style.source_handles(frame["source"].unique()) + [
        Line2D([], [], color="k", lw=2, label="physical limit:\npower limit / dense peak")]
    fig.legend(handles=style.model_handles(models, colours) + extra, fontsize=7, loc="outside right upper")
    ax.set_title("Energy per PFLOP of image generation against each GPU's physical limit")
    style.save(fig, outputs)
    return fig


def multi_gpu(energy: pd.DataFrame, outputs: Sequence[str | Path],
              predictions: pd.DataFrame | None = None) -> Figure:
    """Energy per output (an image, or a video) summed over the GPUs against the number of GPUs, per
    model and GPU kind, at batch 1 and each GPU count's cheapest sequence-parallel split: what sequence
    parallelism costs. Images and videos in rows of their own (their costs differ tenfold), each
    architecture with its own colour and marker, dodged sideways a little (equal ratios stay visible);
    each line's label is its architecture. Beside each measured point (hollow, solid line), where
    ``predictions`` (``parallel``'s held-out table) has it, the multi-GPU law's prediction of the same
    split with the architecture held out (filled, dotted), relative to the same measured one-GPU point."""
    xlabel = "GPUs per output (xDiT sequence parallelism)"
    ylabel = "energy per {} on n GPUs / on one GPU"
    frame = energy[energy["num_gpus"].astype(float) > 0] if len(energy) and "num_gpus" in energy else energy
    if len(frame):
        several = frame.groupby(["gpu", "model", "source"])["num_gpus"].transform("nunique") > 1
        frame = frame[several & (frame["batch"] == 1)]
    if frame.empty:
        return style.empty_figure("Multi-GPU energy", xlabel, ylabel.format("output"), outputs,
                                  message="no multi-GPU points",
                                  hint="ML.ENERGY v3 (results/public/mlenergy-v3.parquet) has them")
    best = frame.loc[frame.groupby(["gpu", "model", "source", "num_gpus"])["energy_j"].idxmin()]
    frames = best["frames"].astype(float) if "frames" in best else pd.Series(1.0, index=best.index)
    kinds = [(name, best[sel]) for name, sel in (("image", frames == 1), ("video", frames > 1)) if sel.any()]
    gpus = style.gpu_order(best["gpu"].unique())
    models = style.model_order(best["model"].unique())
    colours = style.model_colours(models)
    markers = style.model_markers(models)
    fig, axes = style.figure(len(kinds), len(gpus), width=4.6 * len(gpus) + 2.2,
                             height=3.9 * len(kinds) + 0.8)
    for row, (kind, rows) in zip(axes, kinds, strict=True):
        for ax, gpu in zip(row, gpus, strict=True):
            part = rows[rows["gpu"] == gpu]
            if part.empty:
                ax.set_visible(False)
                continue
            here = style.model_order(part["model"].unique())
            for i, m in enumerate(here):
                g = part[part["model"] == m].sort_values("num_gpus")
                base = float(g[g["num_gpus"] == g["num_gpus"].min()]["energy_j"].iloc[0])
                # Dodged sideways (a few % of a doubling) so that equal ratios stay visible; the shorter
                # series on top, so that a longer one never hides it.
                dodge = 2.0 ** (0.05 * (i - (len(here) - 1) / 2))
                ax.plot(g["num_gpus"] * dodge, g["energy_j"] / base, color=colours[m], marker=markers[m],
                        ms=5, markerfacecolor="none", markeredgewidth=1.2, lw=1.3, alpha=0.9, label=m,
                        zorder=3 + 1 / len(g))
                held = _held_out_ratios(predictions, g)
                if len(held):
                    ax.plot(held["num_gpus"] * dodge, held["ratio_predicted"], color=colours[m],
                            marker=markers[m], ms=4, lw=0.9, ls=":", alpha=0.8, zorder=2)
            ax.axhline(1.0, color="0.4", lw=0.8)
            ax.set_xscale("log", base=2)
            counts = sorted(part["num_gpus"].unique())
            ax.set_xticks(counts, [str(int(v)) for v in counts])
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel.format(kind))
            ax.set_title(f"{gpu}: {kind}s ({part['model'].nunique()} models), batch 1", fontsize=10)
            ax.grid(True, which="both", alpha=0.25)
    extra = [] if predictions is None or predictions.empty else [
        Line2D([], [], color="0.3", marker="o", ms=5, markerfacecolor="none", lw=1.3, label="measured"),
        Line2D([], [], color="0.3", marker="o", ms=4, ls=":", lw=0.9,
               label="multi-GPU law,\narchitecture held out")]
    fig.legend(handles=style.model_handles(models, colours, markers, hollow=True) + extra, fontsize=8,
               loc="outside right center")
    fig.suptitle("What sequence parallelism costs: energy per image or video on n GPUs relative to one\n"
                 "(ML.ENERGY v3, the cheapest Ulysses x ring split for each n)")
    style.save(fig, outputs)
    return fig


def _held_out_ratios(predictions: pd.DataFrame | None, measured: pd.DataFrame) -> pd.DataFrame:
    """The held-out predicted ratios (N GPUs over one) of the measured splits in ``measured`` (one model on
    one GPU kind, its one-GPU point first), with a one-GPU point at 1: what the figure draws beside them."""
    if predictions is None or predictions.empty:
        return pd.DataFrame(columns=["num_gpus", "ratio_predicted"])
    keys = ["source", "gpu", "model", "resolution", "steps", "batch", "num_gpus", "ulysses_degree",
            "ring_degree"]
    p = predictions.merge(measured[keys], on=keys, how="inner")
    if p.empty:
        return pd.DataFrame(columns=["num_gpus", "ratio_predicted"])
    one = pd.DataFrame({"num_gpus": [1.0], "ratio_predicted": [1.0]}) if (measured["num_gpus"] == 1).any() \
        else pd.DataFrame(columns=["num_gpus", "ratio_predicted"])
    return pd.concat([one, p[["num_gpus", "ratio_predicted"]]], ignore_index=True).sort_values("num_gpus")
