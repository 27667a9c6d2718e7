"""The figures: one function per figure, each taking its data and the output paths (PDF, PNG).

Figures are drawn with matplotlib's object-oriented API on the Agg canvas (no
pyplot, no global state). Every figure states plainly when there is nothing to
plot ("no measurements yet") instead of drawing invented numbers. Colours
follow the architecture, markers the precision, line styles the GPU kind, the
same in every figure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .. import atomic
from ..laws import crossval, powerlaw
from ..laws.analysis_io import FIGURE_NAMES  # noqa: F401 - re-exported: the figure of each name is here

log = logging.getLogger(__name__)

NO_DATA = "no measurements yet"
NO_DATA_HINT = "run the measurement rules on a GPU,\nor add reference data to resources/measurements/"
MODEL_ORDER = ("sd15", "sd21", "sdxl", "sd35-large", "flux-dev", "qwen-image")
STAGE_COLOURS = {"text": "#4c72b0", "denoise": "#dd8452", "vae": "#55a868"}
LINESTYLES = ("-", "--", ":", "-.")


# --------------------------------------------------------------------------- helpers


def _figure(nrows: int = 1, ncols: int = 1, width: float = 6.4, height: float = 4.4) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save(fig: Figure, outputs: Sequence[str | Path]) -> None:
    """Write ``fig`` to every path (format from the suffix), atomically."""
    for out in outputs:
        fmt = Path(out).suffix.lstrip(".")
        with atomic.atomic_path(out) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
        log.info("wrote %s", out)


def _no_data(ax: Any, xlabel: str, ylabel: str, message: str = NO_DATA, hint: str = NO_DATA_HINT) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.55, message, ha="center", va="center", fontsize=15, transform=ax.transAxes)
    if hint:
        ax.text(0.5, 0.35, hint, ha="center", va="center", fontsize=9, color="0.4", transform=ax.transAxes)


def model_order(models: Sequence[str]) -> list[str]:
    known = [m for m in MODEL_ORDER if m in set(models)]
    return known + sorted(set(models) - set(MODEL_ORDER))


def model_colours(models: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    order = list(MODEL_ORDER) + sorted(set(models) - set(MODEL_ORDER))
    return {m: cmap(order.index(m) % 10) for m in models}


def _precision_class(precision: str) -> str:
    return "fp32" if precision == "fp32" else "fp16/bf16"


def _marker(precision: str) -> str:
    return "s" if precision == "fp32" else "o"


def _default_precision(frame: pd.DataFrame) -> pd.DataFrame:
    """Each model's most measured precision (its default in the grid)."""
    if frame.empty:
        return frame
    counts = frame.groupby(["model", "precision"]).size().reset_index(name="n")
    best = counts.sort_values(["model", "n", "precision"], ascending=[True, False, True]).drop_duplicates(
        "model")
    keep = set(map(tuple, best[["model", "precision"]].to_numpy()))
    return frame[[(m, p) in keep for m, p in zip(frame["model"], frame["precision"], strict=True)]]


def _gpu_styles(frame: pd.DataFrame) -> dict[str, str]:
    return {g: LINESTYLES[i % len(LINESTYLES)] for i, g in enumerate(sorted(set(frame["gpu"])))}


def _gpu_handles(styles: dict[str, str]) -> list[Line2D]:
    """Legend entries of the GPU line styles (none when there is one GPU kind)."""
    if len(styles) < 2:
        return []
    return [Line2D([], [], color="0.3", linestyle=s, label=g) for g, s in styles.items()]


def _legend_handles(models: Sequence[str], colours: dict[str, Any], extra: Sequence[Line2D] = ()
                    ) -> list[Line2D]:
    handles = [Line2D([], [], color=colours[m], marker="o", linestyle="-", label=m) for m in models]
    return handles + list(extra)


# --------------------------------------------------------------------------- figures


def energy_vs_flops(energy: pd.DataFrame, payload: dict[str, Any], outputs: Sequence[str | Path]) -> None:
    """Energy per image vs FLOPs per image (log-log), with each architecture's fitted law."""
    fig, axes = _figure(width=9.0, height=5.0)
    ax = axes[0, 0]
    xlabel, ylabel = "compute per image (TFLOP)", "GPU energy per image (J)"
    if energy.empty:
        _no_data(ax, xlabel, ylabel)
        ax.set_title("Energy vs FLOPs per architecture")
        save(fig, outputs)
        return
    models = model_order(energy["model"].unique())
    colours = model_colours(models)
    styles = _gpu_styles(energy)
    per_arch = payload.get("per_architecture", {}).get("image", {}) if payload.get("status") == "ok" else {}
    handles = []
    for m in models:
        part = energy[energy["model"] == m]
        for (prec, _gpu), grp in part.groupby(["precision", "gpu"]):
            ax.scatter(grp["flops"] / 1e12, grp["energy_j"], color=colours[m], marker=_marker(prec), s=22,
                       alpha=0.85, edgecolor="none")
        label = m
        if m in per_arch:
            law = powerlaw.LawFit.from_dict(per_arch[m])
            fitted = law.predict(part, 0.9).energy_j
            # At one resolution the law is a straight line in log-log (slope alpha) over the steps.
            for _, grp in part.assign(fit=fitted).groupby(["precision", "gpu", "resolution"]):
                grp = grp.sort_values("flops")
                ax.plot(grp["flops"] / 1e12, grp["fit"], color=colours[m], lw=1.2,
                        linestyle=styles[grp["gpu"].iloc[0]])
            label = f"{m}: α = {law.coefficients['alpha']:.3f}, R² = {law.r2_log:.3f}"
        handles.append(Line2D([], [], color=colours[m], marker="o", label=label))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.25)
    classes = sorted({_precision_class(p) for p in energy["precision"]}, reverse=True)
    extra = [Line2D([], [], color="0.3", marker=_marker(c), linestyle="none", label=c) for c in classes]
    extra += _gpu_handles(styles)
    fig.legend(handles=handles + extra, fontsize=8, loc="outside right upper",
               title="lines: each architecture's\nfitted law (one per resolution)", title_fontsize=8)
    ax.set_title("Energy vs FLOPs per architecture")
    save(fig, outputs)


def stage_shares(energy: pd.DataFrame, outputs: Sequence[str | Path]) -> None:
    """Share of the image's energy in text encoding, denoising and VAE decoding, per (resolution, steps)."""
    frame = _default_precision(energy)
    if frame.empty:
        fig, axes = _figure()
        _no_data(axes[0, 0], "resolution (px) / steps", "share of image energy (%)")
        axes[0, 0].set_title("Stage shares of energy")
        save(fig, outputs)
        return
    counts = frame["gpu"].value_counts()
    gpu = sorted(counts.index, key=lambda g: (-counts[g], g))[0]  # the most measured GPU kind
    frame = frame[frame["gpu"] == gpu]
    models = model_order(frame["model"].unique())
    ncols = min(3, len(models))
    nrows = int(np.ceil(len(models) / ncols))
    fig, axes = _figure(nrows, ncols, width=4.2 * ncols, height=3.2 * nrows + 0.6)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax, m in zip(axes.flat, models, strict=False):
        part = frame[frame["model"] == m].sort_values(["resolution", "steps"])
        stages = part[[f"{s}_energy_j" for s in STAGE_COLOURS]].to_numpy(dtype=float)
        total = np.nansum(stages, axis=1)
        x = np.arange(len(part))
        bottom = np.zeros(len(part))
        for j, (stage, colour) in enumerate(STAGE_COLOURS.items()):
            share = 100 * np.nan_to_num(stages[:, j]) / np.where(total > 0, total, np.nan)
            ax.bar(x, share, bottom=bottom, color=colour, label=stage, width=0.8)
            bottom += np.nan_to_num(share)
        ticks = [f"{int(r)}\n{int(s)}" for r, s in zip(part["resolution"], part["steps"], strict=True)]
        ax.set_xticks(x, ticks, fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_title(f"{m} ({part['precision'].iloc[0]})", fontsize=10)
        ax.set_ylabel("share of image energy (%)", fontsize=8)
        ax.set_xlabel("resolution (px) / steps", fontsize=8)
    handles = [Line2D([], [], color=c, linewidth=8, label=s) for s, c in STAGE_COLOURS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9)
    fig.suptitle(f"Stage shares of energy on {gpu}")
    save(fig, outputs)


def lomo_predicted_vs_measured(predictions: pd.DataFrame, metrics: pd.DataFrame,
                               outputs: Sequence[str | Path], target: str = "image") -> None:
    """Leave-one-model-out: predicted vs measured energy, the FLOPs-only law beside the best model."""
    from ..laws.analysis import BASELINE

    xlabel, ylabel = "measured energy per image (J)", "predicted energy per image (J)"
    pred = predictions[predictions["target"] == target] if len(predictions) else predictions
    if pred.empty:
        fig, axes = _figure()
        _no_data(axes[0, 0], xlabel, ylabel,
                 hint=NO_DATA_HINT + "\n(leave-one-model-out needs at least two architectures)")
        axes[0, 0].set_title("Leave-one-model-out predictions")
        save(fig, outputs)
        return
    best = crossval.select_candidate(metrics, target) or BASELINE
    shown = [BASELINE] + ([best] if best != BASELINE else [])
    shown = [c for c in shown if c in set(pred["candidate"])] or [best]
    fig, axes = _figure(1, len(shown), width=5.4 * len(shown), height=5.2)
    models = model_order(pred["held_out"].unique())
    colours = model_colours(models)
    lo = float(min(pred["measured_j"].min(), pred["predicted_j"].min())) / 1.5
    hi = float(max(pred["measured_j"].max(), pred["predicted_j"].max())) * 1.5
    for ax, cand in zip(axes.flat, shown, strict=True):
        part = pred[pred["candidate"] == cand]
        for m in models:
            g = part[part["held_out"] == m]
            ax.scatter(g["measured_j"], g["predicted_j"], color=colours[m], s=22, label=m, edgecolor="none")
        ax.plot([lo, hi], [lo, hi], color="0.2", lw=1, label="y = x")
        ax.fill_between([lo, hi], [lo / 1.25, hi / 1.25], [lo * 1.25, hi * 1.25], color="0.5", alpha=0.12,
                        label="±25%")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.25)
        m = metrics[(metrics["target"] == target) & (metrics["candidate"] == cand)
                    & (metrics["held_out"] == crossval.ALL)]
        if len(m):
            r = m.iloc[0]
            ax.text(0.03, 0.97, f"Spearman ρ = {r['spearman']:.3f}\nKendall τ = {r['kendall']:.3f}\n"
                    f"median APE = {100 * r['median_ape']:.1f}%\nP90 APE = {100 * r['p90_ape']:.1f}%",
                    transform=ax.transAxes, va="top", ha="left", fontsize=8,
                    bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
        role = "FLOPs-only law" if cand == BASELINE else "best held-out model"
        ax.set_title(f"{role}: {cand}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right", title="held-out model", title_fontsize=7)
    fig.suptitle("Leave-one-model-out: each architecture predicted by a model fitted without it")
    save(fig, outputs)


def _energy_lines(energy: pd.DataFrame, outputs: Sequence[str | Path], x: str, panel: str, xlabel: str,
                  panel_label: Callable[[float], str], title: str) -> None:
    frame = _default_precision(energy)
    ylabel = "GPU energy per image (J)"
    if frame.empty:
        fig, axes = _figure()
        _no_data(axes[0, 0], xlabel, ylabel)
        axes[0, 0].set_title(title)
        save(fig, outputs)
        return
    panels = sorted(frame[panel].unique())
    fig, axes = _figure(1, len(panels), width=3.9 * len(panels) + 1.6, height=4.2)
    models = model_order(frame["model"].unique())
    colours = model_colours(models)
    styles = _gpu_styles(frame)
    for ax, value in zip(axes.flat, panels, strict=True):
        part = frame[frame[panel] == value]
        for (m, gpu), g in part.groupby(["model", "gpu"]):
            g = g.sort_values(x)
            ax.plot(g[x], g["energy_j"], color=colours[m], linestyle=styles[gpu], marker="o", ms=4)
        ax.set_yscale("log")
        ax.set_xticks(sorted(frame[x].unique()))
        ax.set_xlabel(xlabel)
        ax.set_title(panel_label(value), fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    axes[0, 0].set_ylabel(ylabel)
    extra = _gpu_handles(styles)
    fig.legend(handles=_legend_handles(models, colours, extra), loc="outside right upper", fontsize=8)
    fig.suptitle(title)
    save(fig, outputs)


def energy_vs_resolution(energy: pd.DataFrame, outputs: Sequence[str | Path]) -> None:
    """Energy per image vs resolution, one panel per step count (each model's default precision)."""
    _energy_lines(energy, outputs, "resolution", "steps", "resolution (px per side)",
                  lambda v: f"{int(v)} steps", "Energy vs resolution")


def energy_vs_steps(energy: pd.DataFrame, outputs: Sequence[str | Path]) -> None:
    """Energy per image vs denoising steps, one panel per resolution (each model's default precision)."""
    _energy_lines(energy, outputs, "steps", "resolution", "denoising steps",
                  lambda v: f"{int(v)} px", "Energy vs steps")


def gpu_comparison(energy: pd.DataFrame, outputs: Sequence[str | Path]) -> None:
    """Per GPU kind: energy per PFLOP of the image, and achieved TFLOP/s of the denoiser (median, range)."""
    frame = _default_precision(energy)
    panels = [("J per PFLOP (whole image)", lambda f: f["energy_j"] / (f["flops"] / 1e15)),
              ("achieved denoiser TFLOP/s", lambda f: f["denoise_flops"] / f["denoise_time_s"] / 1e12)]
    fig, axes = _figure(1, 2, width=11, height=4.4)
    if frame.empty:
        for ax, (label, _) in zip(axes.flat, panels, strict=True):
            _no_data(ax, "architecture", label)
        fig.suptitle("GPU comparison")
        save(fig, outputs)
        return
    models = model_order(frame["model"].unique())
    gpus = sorted(frame["gpu"].unique())
    width = 0.8 / len(gpus)
    x = np.arange(len(models))
    from matplotlib import colormaps

    cmap = colormaps["Set2"]
    for ax, (label, fn) in zip(axes.flat, panels, strict=True):
        values = frame.assign(v=fn(frame))
        for i, gpu in enumerate(gpus):
            stats = values[values["gpu"] == gpu].groupby("model")["v"].agg(["median", "min", "max"])
            stats = stats.reindex(models)
            err = np.vstack([stats["median"] - stats["min"], stats["max"] - stats["median"]])
            ax.bar(x + (i - (len(gpus) - 1) / 2) * width, stats["median"], width, yerr=err, capsize=2,
                   color=cmap(i), label=gpu)
        ax.set_xticks(x, models, rotation=20)
        ax.set_ylabel(label)
        ax.set_xlabel("architecture")
        ax.grid(True, axis="y", alpha=0.25)
        ax.legend(title="GPU", fontsize=8)
    fig.suptitle("GPU comparison (each model's default precision; bars: median over resolutions and steps, "
                 "whiskers: range)")
    save(fig, outputs)


def precision_ratio(energy: pd.DataFrame, outputs: Sequence[str | Path]) -> None:
    """Energy in fp32 over energy in half precision at otherwise identical settings."""
    fig, axes = _figure(width=7.0, height=4.4)
    ax = axes[0, 0]
    xlabel, ylabel = "resolution (px per side)", "energy ratio fp32 / half precision"
    keys = ["gpu", "model", "resolution", "steps", "cfg", "batch"]
    pairs = pd.DataFrame()
    if not energy.empty:
        fp32 = energy[energy["precision"] == "fp32"]
        half = energy[energy["precision"] != "fp32"]
        pairs = fp32.merge(half, on=keys, suffixes=("_fp32", "_half"))
    if pairs.empty:
        _no_data(ax, xlabel, ylabel, message=NO_DATA if energy.empty else "no fp32 measurements yet",
                 hint=NO_DATA_HINT if energy.empty else "add an fp32 subgrid to config/config.yaml")
        ax.set_title("Precision ratio")
        save(fig, outputs)
        return
    pairs["ratio"] = pairs["energy_j_fp32"] / pairs["energy_j_half"]
    models = model_order(pairs["model"].unique())
    colours = model_colours(models)
    steps = sorted(pairs["steps"].unique())
    markers = dict(zip(steps, "os^Dv<>", strict=False))
    for m in models:
        g = pairs[pairs["model"] == m]
        jitter = (models.index(m) - (len(models) - 1) / 2) * 8
        for s, gs in g.groupby("steps"):
            ax.scatter(gs["resolution"] + jitter, gs["ratio"], color=colours[m], marker=markers[s], s=30)
        ax.axhline(float(g["ratio"].median()), color=colours[m], lw=0.8, linestyle="--")
    ax.set_xticks(sorted(pairs["resolution"].unique()))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.25)
    extra = [Line2D([], [], color="0.3", marker=markers[s], linestyle="none", label=f"{int(s)} steps")
             for s in steps]
    extra.append(Line2D([], [], color="0.3", linestyle="--", label="median per model"))
    ax.legend(handles=_legend_handles(models, colours, extra), fontsize=8, loc="best")
    ax.set_title("Precision ratio: fp32 vs fp16/bf16, same points")
    save(fig, outputs)


def published_anchors(energy_anchors: pd.DataFrame, law_anchors: pd.DataFrame, outputs: Sequence[str | Path]
                      ) -> None:
    """Our measurements beside published energies (same settings) and published exponents."""
    fig, axes = _figure(1, 2, width=11.5, height=4.8)
    ax, bx = axes[0, 0], axes[0, 1]
    xlabel, ylabel = "published energy per image (J)", "measured here (J)"
    if energy_anchors.empty:
        _no_data(ax, xlabel, ylabel, message=NO_DATA + " at published settings",
                 hint="the published points: resources/anchors/published.csv")
    else:
        models = model_order(energy_anchors["model"].unique())
        colours = model_colours(models)
        for m in models:
            g = energy_anchors[energy_anchors["model"] == m]
            for same, gg in g.groupby("same_gpu"):
                ax.scatter(gg["published_j"], gg["measured_j"], s=36, marker="o",
                           facecolor=colours[m] if same else "none", edgecolor=colours[m], linewidth=1.3)
        lo = float(min(energy_anchors["published_j"].min(), energy_anchors["measured_j"].min())) / 1.5
        hi = float(max(energy_anchors["published_j"].max(), energy_anchors["measured_j"].max())) * 1.5
        ax.plot([lo, hi], [lo, hi], color="0.2", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.25)
        extra = [Line2D([], [], color="0.3", marker="o", linestyle="none", label="same GPU kind"),
                 Line2D([], [], color="0.3", marker="o", markerfacecolor="none", linestyle="none",
                        label="other GPU kind"),
                 Line2D([], [], color="0.2", label="y = x")]
        ax.legend(handles=[Line2D([], [], color=colours[m], marker="o", linestyle="none", label=m)
                           for m in models] + extra, fontsize=8, loc="upper left")
    ax.set_title("Energy per image: published vs measured", fontsize=10)
    alpha = law_anchors[law_anchors["metric"] == "alpha"] if len(law_anchors) else law_anchors
    if alpha.empty:
        _no_data(bx, "architecture", "exponent α", message="no fitted law yet",
                 hint="published exponents: resources/anchors/published.csv")
    else:
        alpha = alpha.reset_index(drop=True)
        x = np.arange(len(alpha))
        bx.scatter(x - 0.1, alpha["published"], marker="D", color="0.3", label="published (arXiv 2511.17031)")
        # A percentile interval need not contain the point estimate: no negative bar lengths.
        err = np.clip(np.nan_to_num(np.vstack([alpha["ours"] - alpha["ours_ci_low"],
                                               alpha["ours_ci_high"] - alpha["ours"]])), 0, None)
        bx.errorbar(x + 0.1, alpha["ours"], yerr=err, fmt="o", color="#c44e52", capsize=3,
                    label="fitted here (95% bootstrap CI)")
        bx.set_xticks(x, [f"{m}\n({g})" for m, g in zip(alpha["model"], alpha["published_gpu"], strict=True)],
                      fontsize=8)
        bx.set_xlabel("architecture (published GPU)")
        bx.set_ylabel("exponent α of E ∝ FLOPs^α")
        bx.grid(True, axis="y", alpha=0.25)
        bx.legend(fontsize=8)
    bx.set_title("Per-architecture exponent α", fontsize=10)
    fig.suptitle("Comparison with published anchors")
    save(fig, outputs)
