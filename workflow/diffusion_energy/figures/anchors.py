"""Figure of the published anchors: published energies and exponents beside ours."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from . import style


def differences(row: pd.Series) -> list[str]:
    """What differs between a published energy and the point it is compared with (model, resolution,
    steps and batch are the same): GPU kind, precision, and always the software stack (another source)."""
    out = []
    if not bool(row.get("same_gpu", False)):
        out.append(f"GPU {row['published_gpu']} vs {row['gpu']}")
    if str(row.get("published_precision", "")) != str(row.get("precision", "")):
        out.append(f"{row['published_precision']} vs {row['precision']}")
    out.append(f"stack: {row['data_source']}")
    return out


def published_anchors(energy_anchors: pd.DataFrame, law_anchors: pd.DataFrame, outputs: Sequence[str | Path]
                      ) -> None:
    """Published energies beside other sources' points of the same model, resolution, steps and batch
    (each point names what differs: GPU kind, precision, software stack), and the paper's exponents
    beside the law refitted on the paper's own numbers (95% bootstrap intervals)."""
    fig, axes = style.figure(1, 2, width=11.5, height=4.8)
    ax, bx = axes[0, 0], axes[0, 1]
    xlabel, ylabel = "published energy per image (J)", "measured by another source (J)"
    if energy_anchors.empty:
        style.no_data(ax, xlabel, ylabel, message="no other source at the published settings",
                      hint="the published points: resources/anchors/published.csv")
    else:
        models = style.model_order(energy_anchors["model"].unique())
        colours = style.model_colours(models)
        for m in models:
            g = energy_anchors[energy_anchors["model"] == m]
            for same, gg in g.groupby("same_gpu"):
                ax.scatter(gg["published_j"], gg["measured_j"], s=36, marker="o",
                           facecolor=colours[m] if same else "none", edgecolor=colours[m], linewidth=1.3)
            for _, r in g.iterrows():
                ax.annotate("; ".join(differences(r)), (r["published_j"], r["measured_j"]), fontsize=7,
                            xytext=(-6, 0), textcoords="offset points", ha="right", va="center", color="0.25")
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
        ax.legend(handles=style.model_handles(models, colours) + extra, fontsize=8, loc="upper left")
    ax.set_title("Energy per image: published vs another source\n(same model, resolution, steps and batch; "
                 "what differs is named)", fontsize=10)
    alpha = law_anchors[law_anchors["metric"] == "alpha"] if len(law_anchors) else law_anchors
    if alpha.empty:
        style.no_data(bx, "architecture", "exponent α", message="no fitted law yet",
                      hint="published exponents: resources/anchors/published.csv")
    else:
        alpha = alpha.reset_index(drop=True)
        x = np.arange(len(alpha))
        bx.scatter(x - 0.1, alpha["published"], marker="D", color="0.3", label="published (arXiv 2511.17031)")
        # A percentile interval need not contain the point estimate: no negative bar lengths.
        err = np.clip(np.nan_to_num(np.vstack([alpha["ours"] - alpha["ours_ci_low"],
                                               alpha["ours_ci_high"] - alpha["ours"]])), 0, None)
        label = "refitted here (95% bootstrap CI)"
        if "our_source" in alpha and "our_points" in alpha:
            src = ", ".join(sorted(set(alpha["our_source"].astype(str))))
            lo, hi = int(alpha["our_points"].min()), int(alpha["our_points"].max())
            label = f"refitted on {src} ({lo if lo == hi else f'{lo}–{hi}'} points each; 95% bootstrap CI)"
        bx.errorbar(x + 0.1, alpha["ours"], yerr=err, fmt="o", color="#c44e52", capsize=3, label=label)
        bx.axhline(1.0, color="0.6", lw=0.8, linestyle=":")
        bx.set_xticks(x, [f"{m}\n({g})" for m, g in zip(alpha["model"], alpha["published_gpu"], strict=True)],
                      fontsize=8)
        bx.set_xlabel("architecture (published GPU)")
        bx.set_ylabel("exponent α of E ∝ FLOPs^α")
        bx.grid(True, axis="y", alpha=0.25)
        bx.legend(fontsize=7)
    bx.set_title("Per-architecture exponent α", fontsize=10)
    fig.suptitle("Comparison with published anchors")
    style.save(fig, outputs)
