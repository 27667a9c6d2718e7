"""Figures of measured energy: against FLOPs, batch size, resolution and steps, per stage, per precision."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..laws import powerlaw
from ..sources import gpu_datasheets
from ..sources.schema import single_gpu_raw
from . import style


def _per_gpu_panels(gpus: Sequence[str], width: float = 4.6, height: float = 4.4) -> tuple[Any, Any]:
    fig, axes = style.figure(1, len(gpus), width=width * len(gpus) + 2.2, height=height)
    return fig, axes


def energy_vs_flops(energy: pd.DataFrame, payload: dict[str, Any], outputs: Sequence[str | Path]) -> Figure:
    """Energy per image vs FLOPs per image, one panel per GPU kind: every single-GPU point of every
    source, the pooled FLOPs-only law, each architecture's own law where its FLOPs vary, and the GPU's
    physical limit (datasheet power limit / peak FLOP/s).

    The pooled law is one solid line per panel; only where it has a source term (``beta_source``)
    does it differ by source, then solid for its reference source and dashed for another. The lines
    carry a ``gid`` (``pooled-law``, ``own-law``, ``physical-limit``) so that a test can find them."""
    xlabel, ylabel = "compute per image (TFLOP)", "GPU energy per image (J)"
    frame = style.single_gpu(energy)
    if frame.empty:
        return style.empty_figure("Energy vs FLOPs per architecture", xlabel, ylabel, outputs)
    gpus = style.gpu_order(frame["gpu"].unique())
    models = style.model_order(frame["model"].unique())
    colours = style.model_colours(models)
    fig, axes = _per_gpu_panels(gpus)
    ok = payload.get("status") == "ok"
    pooled = payload.get("pooled", {}).get("image", {}).get("candidates", {}).get("flops") if ok else None
    law = powerlaw.LawFit.from_dict(pooled["law"]) if pooled else None
    by_source = law is not None and any(t.startswith("beta_source_") for t in law.design.terms)
    per_arch = payload.get("per_architecture", {}).get("image", {}) if ok else {}
    sheets = {k: gpu_datasheets.Datasheet.from_config(v) for k, v in payload.get("datasheets", {}).items()}
    lo, hi = frame["flops"].min() / 1.6, frame["flops"].max() * 1.6
    grid = np.geomspace(lo, hi, 50)
    styles_drawn: set[str] = set()  # the pooled law's line styles, "own-law", "physical-limit"
    for ax, gpu in zip(axes.flat, gpus, strict=True):
        part = frame[frame["gpu"] == gpu]
        for (m, source), g in part.groupby(["model", "source"]):
            ax.scatter(g["flops"] / 1e12, g["energy_j"], color=colours[m], marker=style.source_marker(source),
                       s=np.clip(46 / np.sqrt(g["batch"].astype(float)), 8, 46), alpha=0.85, edgecolor="none")
        fitted = sorted(set(part["source"]) & set(law.sources)) if law is not None else []
        if fitted and part["quoted"].eq(False).any():
            # Without a source term the law is the same for every source: one line, not one per source.
            for source in fitted if by_source else [law.design.source_reference or fitted[0]]:
                line = pd.DataFrame({"flops": grid, "gpu": gpu, "source": source, "precision": "fp16",
                                     "resolution": 1024, "model": "", "batch": 1, "kernels": 1.0})
                line = gpu_datasheets.with_datasheets(line, sheets)
                if not np.isfinite(line["physical_j_per_flop"]).all() and "delta_phys" in law.design.terms:
                    continue
                ls = "--" if by_source and source != law.design.source_reference else "-"
                styles_drawn.add(ls)
                ax.plot(grid / 1e12, law.predict(line, 0.9).energy_j, color="0.35", lw=1, linestyle=ls,
                        gid="pooled-law")
        for source, laws in per_arch.items():
            for m, d in laws.items():
                fit = powerlaw.LawFit.from_dict(d)
                pts = part[(part["model"] == m) & (part["source"] == source)]
                if gpu not in fit.gpus:
                    continue
                # One line per resolution: a law with a resolution term is not monotonic in FLOPs
                # across resolutions, and one line through all points would zig-zag.
                for _, same in pts.groupby("resolution"):
                    same = same.sort_values("flops")
                    ax.plot(same["flops"] / 1e12, fit.predict(same, 0.9).energy_j, color=colours[m], lw=1.4,
                            gid="own-law")
                    styles_drawn.add("own-law")
        if gpu in sheets:
            limit = grid * sheets[gpu].physical_j_per_flop("fp16")
            ax.plot(grid / 1e12, limit, color="k", lw=1, linestyle=":", gid="physical-limit")
            styles_drawn.add("physical-limit")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo / 1e12, hi / 1e12)
        ax.set_xlabel(xlabel)
        ax.set_title(f"{gpu} ({len(part)} points)", fontsize=10)
        ax.grid(True, which="both", alpha=0.2)
    axes[0, 0].set_ylabel(ylabel)
    extra = style.source_handles(frame["source"].unique())
    if "-" in styles_drawn:
        reference = f"\n({style.source_label(law.design.source_reference)})" if by_source else ""
        extra.append(Line2D([], [], color="0.35", lw=1, label="pooled FLOPs-only law (grey)" + reference))
    if "--" in styles_drawn:
        extra.append(Line2D([], [], color="0.35", lw=1, linestyle="--", label="pooled FLOPs-only law\n"
                            "(another source)"))
    if "own-law" in styles_drawn:
        extra.append(Line2D([], [], color="0.5", lw=1.4, label="an architecture's own law\n(its colour)"))
    if "physical-limit" in styles_drawn:
        extra.append(Line2D([], [], color="k", lw=1, linestyle=":",
                            label="physical limit\n(power limit / peak)"))
    fig.legend(handles=style.model_handles(models, colours) + extra, fontsize=7, loc="outside right upper",
               title="smaller marker: larger batch", title_fontsize=7)
    fig.suptitle("Energy per image vs FLOPs per image (single GPU; every batch size)")
    style.save(fig, outputs)
    return fig


def energy_vs_batch(energy: pd.DataFrame, predictions: pd.DataFrame, metrics: pd.DataFrame,
                    outputs: Sequence[str | Path], target: str = "image") -> Figure:
    """Energy per image vs batch size per model and GPU kind, with the leave-one-model-out predictions
    of the candidate chosen for that kind (and of the FLOPs-only law, which cannot see the batch). Lines
    carry a ``gid``: ``measured``, ``predicted-chosen`` (dashed), ``predicted-flops`` (dotted)."""
    from ..laws import crossval
    from ..laws.analysis import BASELINE

    xlabel, ylabel = "batch size (images per pipeline call)", "GPU energy per image (J)"
    frame = energy[single_gpu_raw(energy)] if len(energy) else energy
    if len(frame):
        frame = frame[frame.groupby(["gpu", "model", "source"])["batch"].transform("nunique") > 1]
    if frame.empty:
        return style.empty_figure("Energy vs batch size", xlabel, ylabel, outputs,
                                  message="no batch sweeps measured",
                                  hint="the published ML.ENERGY data (results/public/) hold batch sweeps")
    gpus = style.gpu_order(frame["gpu"].unique())
    models = style.model_order(frame["model"].unique())
    colours = style.model_colours(models)
    fig, axes = _per_gpu_panels(gpus, width=4.4, height=4.6)
    pred = predictions[predictions["target"] == target] if len(predictions) else predictions
    # One law for every GPU kind: the smallest held-out P90 over all kinds' points (as the laws choose it).
    best = crossval.select_candidate(metrics, target) if len(metrics) else None
    for ax, gpu in zip(axes.flat, gpus, strict=True):
        part = frame[frame["gpu"] == gpu]
        for (m, source), g in part.groupby(["model", "source"]):
            g = g.sort_values("batch")
            ax.plot(g["batch"], g["energy_j"], color=colours[m], marker=style.source_marker(source), ms=4,
                    lw=1.2, gid="measured")
            for cand, ls, gid in ((best, "--", "predicted-chosen"), (BASELINE, ":", "predicted-flops")):
                if cand is None or pred.empty:
                    continue
                p = pred[(pred["candidate"] == cand) & (pred["gpu"] == gpu) & (pred["model"] == m)
                         & (pred["source"] == source)].sort_values("batch")
                if len(p):
                    ax.plot(p["batch"], p["predicted_j"], color=colours[m], lw=1, linestyle=ls, alpha=0.9,
                            gid=gid)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(f"{gpu}: predictions by {best or 'none'}", fontsize=10)
        ax.grid(True, which="both", alpha=0.2)
    axes[0, 0].set_ylabel(ylabel)
    extra = style.source_handles(frame["source"].unique()) + [
        Line2D([], [], color="0.3", lw=1.2, label="measured"),
        Line2D([], [], color="0.3", lw=1, linestyle="--",
               label="predicted, model left out\n(chosen candidate)"),
        Line2D([], [], color="0.3", lw=1, linestyle=":", label="predicted, model left out\n(FLOPs-only law)")]
    fig.legend(handles=style.model_handles(models, colours) + extra, fontsize=7, loc="outside right upper")
    fig.suptitle("Energy per image falls with the batch (FLOPs per image do not): measured and predicted")
    style.save(fig, outputs)
    return fig


def stage_shares(energy: pd.DataFrame, outputs: Sequence[str | Path]) -> Figure:
    """Each stage's share of the sum of the three stages' energies (text encoding, denoising, VAE
    decoding), per (resolution, steps). The sum is not the whole image's energy (the stages are measured
    in runs of their own; ``stage_sum_error``), so the axis names the stage sum. A flagged point
    (``flag``: its stage sum or its repeats disagree) is kept and marked (``gid`` ``flagged``)."""
    ylabel = "share of the stage sum (%)"
    frame = _default_precision(energy[energy["text_energy_j"].notna()]) if len(energy) else energy
    if frame.empty:
        return style.empty_figure("Stage shares of energy", "resolution (px) / steps", ylabel, outputs,
                                  message="no per-stage measurements yet", hint=style.NO_OWN_DATA_HINT)
    counts = frame["gpu"].value_counts()
    gpu = sorted(counts.index, key=lambda g: (-counts[g], g))[0]  # the most measured GPU kind
    frame = frame[frame["gpu"] == gpu]
    models = style.model_order(frame["model"].unique())
    ncols = min(3, len(models))
    nrows = int(np.ceil(len(models) / ncols))
    fig, axes = style.figure(nrows, ncols, width=max(4.2 * ncols, 5.6), height=3.2 * nrows + 1.4)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    flagged: list[Line2D] = []
    for ax, m in zip(axes.flat, models, strict=False):
        part = frame[frame["model"] == m].sort_values(["resolution", "steps"])
        stages = part[[f"{s}_energy_j" for s in style.STAGE_COLOURS]].to_numpy(dtype=float)
        total = np.nansum(stages, axis=1)
        x = np.arange(len(part))
        bottom = np.zeros(len(part))
        for j, (stage, colour) in enumerate(style.STAGE_COLOURS.items()):
            share = 100 * np.nan_to_num(stages[:, j]) / np.where(total > 0, total, np.nan)
            ax.bar(x, share, bottom=bottom, color=colour, label=stage, width=0.8)
            bottom += np.nan_to_num(share)
        flags = part["flag"].fillna("").astype(str).to_numpy() if "flag" in part else np.full(len(part), "")
        marked = flags != ""
        if marked.any():
            ax.plot(x[marked], np.full(marked.sum(), 104.0), linestyle="none", marker="v", color="k", ms=6,
                    gid="flagged")
            flagged += [Line2D([], [], color="k", marker="v", linestyle="none",
                               label=f"{m}, {int(r)} px, {int(st)} steps: {f}")
                        for r, st, f in zip(part["resolution"][marked], part["steps"][marked], flags[marked],
                                            strict=True)]
        ticks = [f"{int(r)}\n{int(s)}" for r, s in zip(part["resolution"], part["steps"], strict=True)]
        ax.set_xticks(x, ticks, fontsize=7)
        ax.set_ylim(0, 109)
        ax.set_yticks(range(0, 101, 20))
        ax.set_title(f"{m} ({part['precision'].iloc[0]})", fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xlabel("resolution (px) / steps", fontsize=8)
    handles = [Line2D([], [], color=c, linewidth=8, label=s) for s, c in style.STAGE_COLOURS.items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, title="stage", title_fontsize=9)
    if flagged:
        fig.legend(handles=flagged, loc="outside lower center", fontsize=7, title="flagged points (kept)",
                   title_fontsize=7)
    fig.suptitle(f"Stage shares of the stage sum on {gpu}")
    style.save(fig, outputs)
    return fig


def _default_precision(frame: pd.DataFrame) -> pd.DataFrame:
    """Each model's most measured precision (its default in the grid)."""
    if frame.empty:
        return frame
    counts = frame.groupby(["model", "precision"]).size().reset_index(name="n")
    best = counts.sort_values(["model", "n", "precision"], ascending=[True, False, True]).drop_duplicates(
        "model")
    keep = set(map(tuple, best[["model", "precision"]].to_numpy()))
    return frame[[(m, p) in keep for m, p in zip(frame["model"], frame["precision"], strict=True)]]


def _energy_lines(energy: pd.DataFrame, outputs: Sequence[str | Path], x: str, panel: str, xlabel: str,
                  panel_label: Callable[[float], str], title: str, unit: str, panel_name: str) -> Figure:
    """Energy vs ``x`` per (model, GPU kind, source) at batch 1, where a series has several ``x``: one panel
    per GPU kind and ``panel`` value (energies of different GPUs never share a panel). Each series' line
    has the label ``model (gpu)``."""
    ylabel = "GPU energy per image (J)"
    frame = style.single_gpu(energy)
    frame = _default_precision(frame[frame["batch"] == 1]) if len(frame) else frame
    if len(frame):
        frame = frame[frame.groupby(["model", "gpu", "source", panel])[x].transform("nunique") > 1]
    if frame.empty:
        return style.empty_figure(title, xlabel, ylabel, outputs, message=f"no points where the {x} varies",
                                  hint="this workflow's grid varies it (a GPU run);\n"
                                  "the published sources fix it")
    # One panel per (GPU kind, panel value) that holds a series, GPU kinds in order; rows of at most 5,
    # as even as they can be.
    panels = [(gpu, value) for gpu in style.gpu_order(frame["gpu"].unique())
              for value in sorted(frame.loc[frame["gpu"] == gpu, panel].unique())]
    nrows = -(-len(panels) // 5)
    ncols = -(-len(panels) // nrows)
    fig, axes = style.figure(nrows, ncols, width=3.9 * ncols + 2.0, height=3.6 * nrows + 0.6)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    models = style.model_order(frame["model"].unique())
    colours = style.model_colours(models)
    series = ["model", "gpu", "source"]
    # What a series measured in any panel: a value it lacks in one panel is a gap, named there.
    everywhere = frame.groupby(series)[x].agg(lambda v: set(v.astype(int)))
    for i, (ax, (gpu, value)) in enumerate(zip(axes.flat, panels, strict=False)):
        part = frame[(frame[panel] == value) & (frame["gpu"] == gpu)]
        gaps = []
        for (m, _, source), g in part.groupby(series):
            g = g.sort_values(x)
            ax.plot(g[x], g["energy_j"], color=colours[m], marker=style.source_marker(source), ms=4,
                    label=f"{m} ({gpu})")
            lacking = sorted(everywhere[(m, gpu, source)] - set(g[x].astype(int)))
            gaps += [f"{m} ({gpu}, {style.source_label(source)}): {v} {unit} not measured"
                     for v in lacking]
        if gaps:
            ax.text(0.98, 0.03, "\n".join(gaps), transform=ax.transAxes, ha="right", va="bottom",
                    fontsize=7, color="0.3")
        ax.set_yscale("log")
        ax.set_xticks(sorted(part[x].unique()))
        ax.set_xlabel(xlabel)
        if i % ncols == 0:
            ax.set_ylabel(ylabel)
        ax.set_title(f"{gpu}, {panel_label(value)}", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    kinds = {src: ", ".join(style.gpu_order(g)) for src, g in frame.groupby("source")["gpu"].unique().items()}
    sources = [Line2D([], [], color="0.3", marker=style.source_marker(src), linestyle="none",
                      markerfacecolor="none", label=f"{style.source_label(src)}: {g}")
               for src, g in kinds.items()]
    fig.legend(handles=style.model_handles(models, colours) + sources, loc="outside right upper", fontsize=8,
               title="source: GPU kinds", title_fontsize=8)
    fig.suptitle(f"{title} (batch 1; one panel per GPU kind and {panel_name})")
    style.save(fig, outputs)
    return fig


def energy_vs_resolution(energy: pd.DataFrame, outputs: Sequence[str | Path]) -> Figure:
    """Energy per image vs resolution, one panel per GPU kind and step count (each model's default
    precision)."""
    return _energy_lines(energy, outputs, "resolution", "steps", "resolution (px per side)",
                         lambda v: f"{int(v)} steps", "Energy vs resolution", "px", "step count")


def energy_vs_steps(energy: pd.DataFrame, outputs: Sequence[str | Path]) -> Figure:
    """Energy per image vs denoising steps, one panel per GPU kind and resolution (each model's default
    precision)."""
    return _energy_lines(energy, outputs, "steps", "resolution", "denoising steps",
                         lambda v: f"{int(v)} px", "Energy vs steps", "steps", "resolution")


def precision_ratio(energy: pd.DataFrame, outputs: Sequence[str | Path]) -> Figure:
    """Energy in fp32 over energy in half precision at otherwise identical settings; each model's median a
    dashed line (``gid`` ``median``)."""
    xlabel, ylabel = "resolution (px per side)", "energy ratio fp32 / half precision"
    keys = ["source", "gpu", "model", "resolution", "steps", "cfg", "batch"]
    pairs = pd.DataFrame()
    if not energy.empty:
        fp32 = energy[energy["precision"] == "fp32"]
        half = energy[energy["precision"] != "fp32"]
        pairs = fp32.merge(half, on=[k for k in keys if k in energy], suffixes=("_fp32", "_half"))
    if pairs.empty:
        return style.empty_figure("Precision ratio", xlabel, ylabel, outputs,
                                  message=style.NO_DATA if energy.empty else "no fp32 measurements yet",
                                  hint=style.NO_DATA_HINT if energy.empty else
                                  "the fp32 subgrid of config/config.yaml (a GPU run);\n"
                                  "the published sources ran fp16/bf16 only")
    fig, axes = style.figure(width=7.0, height=4.4)
    ax = axes[0, 0]
    pairs["ratio"] = pairs["energy_j_fp32"] / pairs["energy_j_half"]
    models = style.model_order(pairs["model"].unique())
    colours = style.model_colours(models)
    steps = sorted(pairs["steps"].unique())
    markers = dict(zip(steps, "os^Dv<>", strict=False))
    for m in models:
        g = pairs[pairs["model"] == m]
        jitter = (models.index(m) - (len(models) - 1) / 2) * 8
        for s, gs in g.groupby("steps"):
            ax.scatter(gs["resolution"] + jitter, gs["ratio"], color=colours[m], marker=markers[s], s=30)
        ax.axhline(float(g["ratio"].median()), color=colours[m], lw=0.8, linestyle="--", gid="median")
    ax.set_xticks(sorted(pairs["resolution"].unique()))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.25)
    extra = [Line2D([], [], color="0.3", marker=markers[s], linestyle="none", label=f"{int(s)} steps")
             for s in steps]
    extra.append(Line2D([], [], color="0.3", linestyle="--", label="median per model"))
    ax.legend(handles=style.model_handles(models, colours) + extra, fontsize=8, loc="best")
    ax.set_title("Precision ratio: fp32 vs fp16/bf16, same points")
    style.save(fig, outputs)
    return fig
