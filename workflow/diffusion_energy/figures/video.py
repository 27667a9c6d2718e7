"""Figure of energy per output (an image or a video) against FLOPs, images and videos together,
with the held-out predictions of the video points (``laws.modalities``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..sources.schema import single_gpu_raw
from . import style

XLABEL = "compute per output (TFLOP per image or per video)"
YLABEL = "GPU energy per output (J per image or per video)"
#: The experiments drawn, with their marker: held out among image and video, and image laws only.
DRAWN = {"joint_lomo": ("x", "fitted on image + video, architecture held out"),
         "image_to_video": ("+", "fitted on images only")}


def chosen_candidate(predictions: pd.DataFrame, gpu: str) -> str | None:
    """The candidate with the smallest P90 error on held-out video architectures (joint fit) on ``gpu``:
    the one ``predict`` answers video models with."""
    from ..laws import modalities

    held = predictions[(predictions["experiment"] == "joint_lomo") & (predictions["modality"] == "video")
                       & (predictions["gpu"].astype(str) == gpu)]
    if held.empty:
        return None
    m = modalities.metrics(held)
    m = m[(m["held_out"] == "all") & (m["gpu"] == gpu)]
    m = m[m["n_points"] == m["n_points"].max()]
    return str(m.sort_values(["p90_ape", "median_ape", "candidate"]).iloc[0]["candidate"])


def video_energy_vs_flops(energy: pd.DataFrame, predictions: pd.DataFrame, outputs: Sequence[str | Path]
                          ) -> Figure:
    """One panel per GPU kind that measured videos: every single-GPU image point (grey) and video point
    (coloured by architecture), and for each video point its held-out predictions (chosen candidate,
    with its interval) from the joint fit and from the image-only fit. Point sets carry a ``gid``:
    ``images``, ``video <model>``, and the experiment's name for predictions."""
    frames = energy["frames"].astype(float) if "frames" in energy else pd.Series(1.0, index=energy.index)
    frame = energy[single_gpu_raw(energy, videos=True)] if len(energy) else energy
    video = frame[frames.loc[frame.index] > 1] if len(frame) else frame
    if video.empty:
        return style.empty_figure("Energy vs FLOPs, images and videos", XLABEL, YLABEL, outputs,
                                  message="no video points", hint="the ML.ENERGY v3 text-to-video data "
                                  "(resources/public/mlenergy-v3-video) hold them")
    image = frame[frames.loc[frame.index] == 1]
    gpus = style.gpu_order(video["gpu"].unique())
    models = style.model_order(video["model"].unique())
    colours = style.model_colours(models)
    fig, axes = style.figure(1, len(gpus), width=4.8 * len(gpus) + 2.6, height=4.6)
    lo = min(frame["flops"].min(), video["flops"].min()) / 1.6
    hi = frame["flops"].max() * 1.6
    for ax, gpu in zip(axes.flat, gpus, strict=True):
        imgs, vids = image[image["gpu"] == gpu], video[video["gpu"] == gpu]
        ax.scatter(imgs["flops"] / 1e12, imgs["energy_j"], color="0.65", s=14, marker="o", edgecolor="none",
                   alpha=0.7, gid="images")
        for m, g in vids.groupby("model"):
            ax.scatter(g["flops"] / 1e12, g["energy_j"], color=colours[m], s=34, marker="o", edgecolor="none",
                       gid=f"video {m}")
        cand = chosen_candidate(predictions, gpu) if len(predictions) else None
        for exp, (marker, _) in DRAWN.items():
            p = predictions[(predictions["experiment"] == exp) & (predictions["candidate"] == cand)
                            & (predictions["gpu"].astype(str) == gpu) & (predictions["modality"] == "video")]
            if p.empty:
                continue
            flops = p["flops"].astype(float)
            colour = [colours.get(m, "k") for m in p["model"]]
            ax.scatter(flops / 1e12, p["predicted_j"], color=colour, marker=marker, s=40, linewidths=1.1,
                       gid=exp)
            if exp == "joint_lomo":
                ax.vlines(flops / 1e12, p["low_j"], p["high_j"], colors=colour, lw=0.8, alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo / 1e12, hi / 1e12)
        ax.set_xlabel(XLABEL)
        title = f"{gpu}: {len(imgs)} images, {len(vids)} videos"
        ax.set_title(title + (f"\npredicted by {cand}" if cand else ""), fontsize=10)
        ax.grid(True, which="both", alpha=0.2)
    axes[0, 0].set_ylabel(YLABEL)
    handles = [Line2D([], [], color="0.65", marker="o", linestyle="none", label="image points (single GPU)")]
    handles += style.model_handles(models, colours)
    handles += [Line2D([], [], color="0.3", marker=marker, linestyle="none", label=label)
                for marker, label in DRAWN.values()]
    handles.append(Line2D([], [], color="0.3", lw=0.8, label="prediction interval (joint fit)"))
    fig.legend(handles=handles, fontsize=7, loc="outside right upper")
    style.save(fig, outputs)
    return fig
