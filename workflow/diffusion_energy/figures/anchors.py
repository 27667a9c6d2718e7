"""Figure of the published anchors: published energies and exponents beside ours."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
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


#: Markers of the published exponents, by the GPU kinds their fit spans (one kind, or several).
PUBLISHED_MARKERS = ("D", "s", "^", "v")


def published_anchors(energy_anchors: pd.DataFrame, law_anchors: pd.DataFrame, outputs: Sequence[str | Path]
                      ) -> Figure:
    """Published energies beside other sources' points of the same model, resolution, steps and batch
    (each point numbered, the legend naming what differs: GPU kind, precision, software stack), and the
    paper's exponents beside the law refitted on the paper's own numbers (95% bootstrap intervals): one
    refit per architecture, beside every published exponent of it (one GPU kind, or a fit across kinds).

    A point's number sits on the side away from the y = x line (``gid`` ``identity``), so no line
    crosses it; both legends sit under their panel, off the data."""
    fig, axes = style.figure(1, 2, width=11.5, height=5.6)
    ax, bx = axes[0, 0], axes[0, 1]
    xlabel, ylabel = "published energy per image (J)", "measured by another source (J)"
    if energy_anchors.empty:
        style.no_data(ax, xlabel, ylabel, message="no other source at the published settings",
                      hint="the published points: resources/anchors/published.csv")
    else:
        models = style.model_order(energy_anchors["model"].unique())
        colours = style.model_colours(models)
        numbered = []
        rows = energy_anchors.assign(_order=energy_anchors["model"].map(models.index)).sort_values(
            ["_order", "published_j", "measured_j"])
        for i, (_, r) in enumerate(rows.iterrows(), start=1):
            colour = colours[r["model"]]
            same = bool(r["same_gpu"])
            ax.scatter([r["published_j"]], [r["measured_j"]], s=36, marker="o", linewidth=1.3,
                       facecolor=colour if same else "none", edgecolor=colour)
            # Away from the diagonal: below it to the lower right, above it to the upper left.
            below = r["measured_j"] <= r["published_j"]
            ax.annotate(str(i), (r["published_j"], r["measured_j"]), fontsize=8, color="0.15",
                        xytext=(5, -5) if below else (-5, 5), textcoords="offset points",
                        ha="left" if below else "right", va="top" if below else "bottom")
            numbered.append(Line2D([], [], color=colour, marker="o", linestyle="none",
                                   markerfacecolor=colour if same else "none",
                                   label=f"{i}: {r['model']}: " + "; ".join(differences(r))))
        lo = float(min(energy_anchors["published_j"].min(), energy_anchors["measured_j"].min())) / 1.5
        hi = float(max(energy_anchors["published_j"].max(), energy_anchors["measured_j"].max())) * 1.5
        ax.plot([lo, hi], [lo, hi], color="0.2", lw=1, gid="identity")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.25)
        extra = [Line2D([], [], color="0.3", marker="o", linestyle="none", label="filled: same GPU kind"),
                 Line2D([], [], color="0.3", marker="o", markerfacecolor="none", linestyle="none",
                        label="open: another GPU kind"),
                 Line2D([], [], color="0.2", label="y = x")]
        ax.legend(handles=numbered + extra, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  ncols=1, frameon=False)
    ax.set_title("Energy per image: published vs another source\n(same model, resolution, steps and batch; "
                 "what differs is named)", fontsize=10)
    alpha = law_anchors[law_anchors["metric"] == "alpha"] if len(law_anchors) else law_anchors
    if alpha.empty:
        style.no_data(bx, "architecture", "exponent α", message="no fitted law yet",
                      hint="published exponents: resources/anchors/published.csv")
    else:
        _exponents(bx, alpha.reset_index(drop=True))
    bx.set_title("Per-architecture exponent α", fontsize=10)
    fig.suptitle("Comparison with published anchors")
    style.save(fig, outputs)
    return fig


def _exponents(bx: Axes, alpha: pd.DataFrame) -> None:
    """One column per architecture: every published exponent of it (a marker per span of GPU kinds),
    and the refit once (``gid`` ``refit``): a refit is drawn once however many published figures
    it is compared with."""
    models = list(dict.fromkeys(alpha["model"]))
    spans = list(dict.fromkeys(alpha["published_gpu"].astype(str)))
    markers = {g: PUBLISHED_MARKERS[i % len(PUBLISHED_MARKERS)] for i, g in enumerate(spans)}
    refit_cols = ["ours", "ours_ci_low", "ours_ci_high", "our_gpus", "our_source"]
    handles: dict[str, Line2D] = {}
    for i, m in enumerate(models):
        rows = alpha[alpha["model"] == m]
        pubs = rows.drop_duplicates(["published_gpu", "published"])
        offsets = np.linspace(-0.22, -0.06, len(pubs)) if len(pubs) > 1 else np.array([-0.12])
        for dx, (_, r) in zip(offsets, pubs.iterrows(), strict=True):
            span = str(r["published_gpu"])
            bx.scatter([i + dx], [r["published"]], marker=markers[span], color="0.3", s=30, zorder=3)
            handles.setdefault(f"p{span}", Line2D([], [], color="0.3", marker=markers[span], linestyle="none",
                                                  label=f"published, fitted on {span}"))
        refits = rows.drop_duplicates(refit_cols)
        offsets = np.linspace(0.08, 0.22, len(refits)) if len(refits) > 1 else np.array([0.12])
        for dx, (_, r) in zip(offsets, refits.iterrows(), strict=True):
            # A percentile interval need not contain the point estimate: no negative bar lengths.
            err = np.clip(np.nan_to_num([[r["ours"] - r["ours_ci_low"]], [r["ours_ci_high"] - r["ours"]]]), 0,
                          None)
            bx.errorbar([i + dx], [r["ours"]], yerr=err, fmt="o", color="#c44e52", capsize=3, gid="refit")
    label = "refitted here (95% bootstrap CI)"
    if "our_source" in alpha and "our_points" in alpha:
        src = ", ".join(style.source_label(s) for s in sorted(set(alpha["our_source"].astype(str))))
        lo, hi = int(alpha["our_points"].min()), int(alpha["our_points"].max())
        gpus = ", ".join(sorted(set(" ".join(alpha["our_gpus"].astype(str)).split())))
        label = (f"refitted on {src}, {gpus}: {lo if lo == hi else f'{lo}–{hi}'} points each; "
                 "95% bootstrap CI")
    refit = Line2D([], [], color="#c44e52", marker="o", linestyle="-", label=label)
    bx.axhline(1.0, color="0.6", lw=0.8, linestyle=":")
    bx.set_xticks(range(len(models)), models, fontsize=8)
    bx.set_xlim(-0.6, len(models) - 0.4)
    bx.set_xlabel("architecture")
    bx.set_ylabel("exponent α of E ∝ FLOPs^α")
    bx.grid(True, axis="y", alpha=0.25)
    bx.legend(handles=[*handles.values(), refit], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              frameon=False)
