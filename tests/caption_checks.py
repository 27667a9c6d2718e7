"""What each figure's caption (workflow/report/<name>.rst) claims, checked against the figure drawn.

``CLAIMS`` ties a phrase of each caption to a check of the matplotlib Figure that the figure's function
returns: line styles, units on the axes (and the data drawn in them), which series are drawn, markers
for flagged points, where legends and labels sit. A caption that drops the phrase fails (update the
claim with it); a figure that stops doing what the phrase says fails. The artists a caption speaks of
carry a ``gid`` set by the figure functions (``pooled-law``, ``flagged``, ``refit``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import Collection, LineCollection, PathCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.markers import MarkerStyle

from diffusion_energy.figures import FigureInputs, style
from diffusion_energy.laws import powerlaw

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"

Check = Callable[[Figure, FigureInputs], None]


# ----------------------------------------------------------------------------- reading a figure


def panels(fig: Figure) -> list[Axes]:
    """The visible axes that draw data (not a "no measurements yet" panel)."""
    return [ax for ax in fig.axes if ax.get_visible() and not says_no_data(ax)]


def says_no_data(ax: Axes) -> bool:
    return any(t.get_text().startswith("no ") and t.get_fontsize() == 14 for t in ax.texts)


def lines(ax: Axes, gid: str | None = None) -> list[Line2D]:
    return [ln for ln in ax.get_lines() if gid is None or ln.get_gid() == gid]


def labelled(ax: Axes) -> list[Line2D]:
    """The lines that name their series (matplotlib names unlabelled artists ``_child<n>``)."""
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def collections(ax: Axes, gid: str | None = None) -> list[Collection]:
    return [c for c in ax.collections if gid is None or c.get_gid() == gid]


def is_grey(colour: object) -> bool:
    r, g, b, _ = to_rgba(colour)
    return bool(np.isclose(r, g) and np.isclose(g, b))


def marker_of(points: PathCollection) -> str:
    """Which marker a scatter drew, read back from its path."""
    drawn = points.get_paths()[0].vertices
    for marker in ("o", "s", "^", "v", "D", "x", "+", "P", "X", "<", ">", "h"):
        style_ = MarkerStyle(marker)
        path = style_.get_path().transformed(style_.get_transform())
        if path.vertices.shape == drawn.shape and np.allclose(path.vertices, drawn):
            return marker
    raise AssertionError(f"unknown marker path {drawn[:4]}...")


def filled(points: PathCollection) -> bool:
    faces = points.get_facecolors()
    return len(faces) > 0 and bool((faces[:, 3] > 0).all())


def offsets(ax: Axes) -> np.ndarray:
    """Every scatter point of ``ax`` (x, y), in data units."""
    found = [np.asarray(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)]
    return np.vstack(found) if found else np.empty((0, 2))


def same_values(drawn: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert len(drawn) == len(expected), f"{what}: {len(drawn)} points drawn, {len(expected)} in the data"
    np.testing.assert_allclose(np.sort(drawn), np.sort(expected), rtol=1e-9, err_msg=what)


def extent(fig: Figure, artist: object):  # noqa: ANN201 - a matplotlib Bbox
    return artist.get_window_extent(fig.canvas.get_renderer())


# ----------------------------------------------------------------------------- the claims


def _single(energy: pd.DataFrame) -> pd.DataFrame:
    return style.single_gpu(energy)


def flops_lines(fig: Figure, d: FigureInputs) -> None:
    payload = d.laws or {}
    pooled = (payload.get("pooled", {}).get("image", {}).get("candidates", {}).get("flops")
              if payload.get("status") == "ok" else None)
    drawn = [ln for ax in panels(fig) for ln in lines(ax, "pooled-law")]
    if pooled is None:
        assert not drawn
        return
    law = powerlaw.LawFit.from_dict(pooled["law"])
    by_source = any(t.startswith("beta_source_") for t in law.design.terms)
    assert drawn, "no pooled law drawn"
    assert all(is_grey(ln.get_color()) for ln in drawn), "the pooled law is grey"
    for ax in panels(fig):
        styles = [ln.get_linestyle() for ln in lines(ax, "pooled-law")]
        if by_source:
            assert styles.count("-") <= 1 and set(styles) <= {"-", "--"}, styles
        else:
            assert styles in ([], ["-"]), f"{ax.get_title()}: one solid line without a source term, {styles}"
    assert "-" in {ln.get_linestyle() for ln in drawn}, "the caption promises a solid pooled law"


def flops_own_laws(fig: Figure, d: FigureInputs) -> None:
    own = [ln for ax in panels(fig) for ln in lines(ax, "own-law")]
    per_arch = (d.laws or {}).get("per_architecture", {}).get("image", {})
    if per_arch and (d.laws or {}).get("status") == "ok":
        assert own, "no architecture's own law drawn"
    for ln in own:
        assert ln.get_linestyle() == "-" and not is_grey(ln.get_color()), (ln.get_linestyle(), ln.get_color())


def flops_limits(fig: Figure, d: FigureInputs) -> None:
    sheets = set((d.laws or {}).get("datasheets", {}))
    for ax in panels(fig):
        gpu = ax.get_title().split()[0]
        limit = lines(ax, "physical-limit")
        assert len(limit) == (gpu in sheets), f"{gpu}: {len(limit)} limit lines"
        assert all(ln.get_linestyle() == ":" and to_rgba(ln.get_color()) == (0, 0, 0, 1) for ln in limit)


def flops_units(fig: Figure, d: FigureInputs) -> None:
    frame = _single(d.energy)
    for ax in panels(fig):
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert "(TFLOP)" in ax.get_xlabel()
        part = frame[frame["gpu"] == ax.get_title().split()[0]]
        xy = offsets(ax)
        same_values(xy[:, 0] * 1e12, part["flops"].to_numpy(float), "FLOPs in TFLOP")
        same_values(xy[:, 1], part["energy_j"].to_numpy(float), "energy in J")
    assert "(J)" in panels(fig)[0].get_ylabel()


def pflop_units(fig: Figure, d: FigureInputs) -> None:
    (ax,) = panels(fig)
    assert "(J/PFLOP)" in ax.get_ylabel()
    frame = _single(d.energy)
    same_values(offsets(ax)[:, 1], (frame["energy_j"] / (frame["flops"] / 1e15)).to_numpy(float), "J/PFLOP")


def pflop_labels(fig: Figure, d: FigureInputs) -> None:
    (ax,) = panels(fig)
    under = extent(fig, ax).y0
    assert all(extent(fig, t).y1 <= under for t in ax.get_xticklabels()), "the labels sit under the kinds"
    frame = _single(d.energy)
    sheets = set((d.laws or {}).get("datasheets", {}))
    for label in ax.get_xticklabels():
        text = label.get_text()
        gpu = text.split("\n")[0]
        part = frame[frame["gpu"] == gpu]
        median = float(np.median(part["energy_j"] / (part["flops"] / 1e15)))
        assert f"median {median:,.0f} J/PFLOP" in text, text
        assert ("x the limit" in text) == (gpu in sheets), text


def pflop_bars(fig: Figure, d: FigureInputs) -> None:
    (ax,) = panels(fig)
    bars = [c for c in collections(ax, "physical-limit") if isinstance(c, LineCollection)]
    sheets = set((d.laws or {}).get("datasheets", {}))
    kinds = {t.get_text().split("\n")[0] for t in ax.get_xticklabels()}
    assert sum(len(b.get_segments()) for b in bars) == len(kinds & sheets)
    assert all(to_rgba(c) == (0, 0, 0, 1) for b in bars for c in b.get_colors())


def _multi_gpu_expected(energy: pd.DataFrame) -> pd.DataFrame:
    frame = energy[(energy["num_gpus"].astype(float) > 0) & (energy["batch"] == 1)]
    several = frame.groupby(["gpu", "model", "source"])["num_gpus"].transform("nunique") > 1
    return frame[several]


def multi_gpu_rows(fig: Figure, d: FigureInputs) -> None:
    """Images in the top row, videos below; every architecture with several GPU counts drawn there."""
    frame = _multi_gpu_expected(d.energy)
    kinds = [k for k, sel in (("image", frame["frames"] == 1), ("video", frame["frames"] > 1)) if sel.any()]
    for ax in panels(fig):
        row = ax.get_subplotspec().rowspan.start
        kind, gpu = kinds[row], ax.get_title().split(":")[0]
        assert f"per {kind}" in ax.get_ylabel(), ax.get_ylabel()
        videos = frame["frames"] > 1
        part = frame[(frame["gpu"] == gpu) & (videos if kind == "video" else ~videos)]
        assert {ln.get_label() for ln in labelled(ax)} == set(part["model"]), (gpu, kind)
        for ln in labelled(ax):
            assert ln.get_ydata()[0] == 1.0, "relative to the fewest GPUs"
    drawn = {ln.get_label() for ax in panels(fig) for ln in labelled(ax)}
    assert drawn == set(frame["model"]), "every architecture measured on several GPU counts"


def multi_gpu_predicted(fig: Figure, d: FigureInputs) -> None:
    """Beside each measured series with held-out predictions, a dotted series of its colour, from 1 at
    one GPU to the predicted ratios of the splits drawn."""
    held = d.multi_gpu_predictions
    for ax in panels(fig):
        solid = {to_rgba(ln.get_color()) for ln in labelled(ax)}
        dotted = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
        for ln in dotted:
            assert to_rgba(ln.get_color()) in solid, "a prediction without its measured series"
            assert ln.get_ydata()[0] == 1.0 and ln.get_markerfacecolor() != "none"
        gpu, videos = ax.get_title().split(":")[0], "videos" in ax.get_title()
        mine = held[(held["gpu"] == gpu) & ((held["frames"] > 1) == videos)] if held is not None else None
        predicted = set() if mine is None or mine.empty else set(mine["model"])
        measured = {ln.get_label() for ln in labelled(ax)}
        assert len(dotted) == len(measured & predicted), ax.get_title()


def multi_gpu_looks(fig: Figure, d: FigureInputs) -> None:
    """Each architecture its own colour and marker: no two series look alike."""
    looks: dict[str, tuple] = {}
    for ax in panels(fig):
        for ln in labelled(ax):
            look = (to_rgba(ln.get_color()), ln.get_marker())
            assert looks.setdefault(ln.get_label(), look) == look, ln.get_label()
    assert looks, "no series named"
    colours = [c for c, _ in looks.values()]
    assert len(set(colours)) == len(colours), "two architectures share a colour"
    for ax in panels(fig):
        markers = [ln.get_marker() for ln in labelled(ax)]
        assert len(set(markers)) == len(markers), f"{ax.get_title()}: two architectures share a marker"


def one_gpu_per_panel(x: str, panel: str) -> Check:
    def check(fig: Figure, d: FigureInputs) -> None:
        seen = set()
        for ax in panels(fig):
            gpus = {ln.get_label().rsplit("(", 1)[1].rstrip(")") for ln in labelled(ax)}
            assert len(gpus) == 1, f"{ax.get_title()}: energies of {sorted(gpus)} share a panel"
            (gpu,) = gpus
            assert ax.get_title().startswith(f"{gpu}, "), ax.get_title()
            assert ax.get_title() not in seen, f"two panels {ax.get_title()}"
            seen.add(ax.get_title())
            for ln in labelled(ax):
                assert ln.get_marker() in style.SOURCE_MARKERS.values(), "marker: data source"
        frame = _single(d.energy)
        frame = frame[frame["batch"] == 1]
        varies = frame[frame.groupby(["model", "gpu", "source", panel])[x].transform("nunique") > 1]
        assert {t.split(",")[0] for t in seen} == set(varies["gpu"])
    return check


def stage_sum_axis(fig: Figure, d: FigureInputs) -> None:
    for ax in panels(fig):
        assert "stage sum" in ax.get_ylabel(), ax.get_ylabel()
        heights: dict[float, float] = {}
        for bar in ax.patches:
            heights[bar.get_x()] = heights.get(bar.get_x(), 0.0) + bar.get_height()
        assert heights and np.allclose(list(heights.values()), 100.0), "shares of the stage sum add to 100%"


def stage_flags(fig: Figure, d: FigureInputs) -> None:
    gpu = fig.get_suptitle().rsplit(" on ", 1)[1]
    marked = 0
    for ax in panels(fig):
        model, precision = ax.get_title().split(" (")
        e = d.energy
        rows = e[(e["gpu"] == gpu) & (e["model"] == model) & (e["precision"] == precision.rstrip(")"))
                 & e["text_energy_j"].notna()]
        flagged = int(rows["flag"].fillna("").astype(str).ne("").sum()) if "flag" in rows else 0
        drawn = sum(len(ln.get_xdata()) for ln in lines(ax, "flagged"))
        assert drawn == flagged, f"{model}: {drawn} flagged markers, {flagged} flagged points"
        assert all(ln.get_marker() == "v" for ln in lines(ax, "flagged")), "marked with a triangle"
        marked += drawn
    if marked:
        assert any(lg.get_title().get_text() == "flagged points (kept)" for lg in fig.legends)


def batch_styles(fig: Figure, d: FigureInputs) -> None:
    for gid, ls in (("measured", "-"), ("predicted-chosen", "--"), ("predicted-flops", ":")):
        found = [ln for ax in panels(fig) for ln in lines(ax, gid)]
        assert all(ln.get_linestyle() == ls for ln in found), gid
    assert [ln for ax in panels(fig) for ln in lines(ax, "measured")]


def lomo_markers(fig: Figure, d: FigureInputs) -> None:
    from diffusion_energy.figures import crossval

    chosen = crossval.chosen_candidate(d.laws, d.metrics, "image")
    for ax in panels(fig):
        mine = collections(ax, chosen)
        assert len(mine) == 1 and marker_of(mine[0]) == "o" and filled(mine[0]), "filled circles: chosen"
        for c in ax.collections:
            if isinstance(c, PathCollection) and c.get_gid() not in (chosen, "band") and len(c.get_offsets()):
                assert marker_of(c) == "x" or not filled(c), f"{c.get_gid()}: baselines open or crosses"
        (band,) = collections(ax, "band")
        v = band.get_paths()[0].vertices
        ratios = v[:, 1] / v[:, 0]
        assert np.isclose(ratios.max(), 1.2) and np.isclose(ratios.min(), 1 / 1.2), "the band is ±20%"


def precision_medians(fig: Figure, d: FigureInputs) -> None:
    for ax in panels(fig):
        medians = lines(ax, "median")
        assert medians and all(ln.get_linestyle() == "--" for ln in medians)


def anchors_numbers(fig: Figure, d: FigureInputs) -> None:
    """Each published point numbered, no number crossed by y = x, the legend under its panel."""
    left = [ax for ax in panels(fig) if ax.get_xlabel().startswith("published energy")]
    if not left:
        return
    (ax,) = left
    (identity,) = [ln for ln in lines(ax) if list(ln.get_xdata()) == list(ln.get_ydata())]
    path = ax.transData.transform(np.column_stack([np.geomspace(*identity.get_xdata(), 2000),
                                                   np.geomspace(*identity.get_ydata(), 2000)]))
    for t in ax.texts:
        assert not extent(fig, t).count_contains(path), f"the y = x line crosses label {t.get_text()!r}"
    numbers = [t for t in ax.texts if t.get_text().isdigit()]
    assert sorted(int(t.get_text()) for t in numbers) == list(range(1, len(d.anchor_energy) + 1))


def legends_off_the_data(fig: Figure, d: FigureInputs) -> None:
    for ax in panels(fig):
        legend = ax.get_legend()
        if legend is None:
            continue
        assert extent(fig, legend).y1 <= extent(fig, ax).y0, f"{ax.get_title()}: the legend is not under it"


def anchors_refits(fig: Figure, d: FigureInputs) -> None:
    alpha = d.anchor_laws[d.anchor_laws["metric"] == "alpha"]
    if alpha.empty:
        return
    (bx,) = [ax for ax in panels(fig) if ax.get_ylabel().startswith("exponent")]
    refits = sum(len(ln.get_xdata()) for ln in lines(bx) if ln.get_marker() == "o")
    assert refits == alpha["model"].nunique(), f"{refits} refits drawn: one per architecture, drawn once"
    published = [c for c in bx.collections if isinstance(c, PathCollection)]
    assert len(published) == len(alpha.drop_duplicates(["model", "published_gpu", "published"]))
    spans = {marker_of(c) for c in published}
    assert len(spans) == alpha["published_gpu"].nunique(), "one marker per set of GPU kinds"


def video_points(fig: Figure, d: FigureInputs) -> None:
    colours = style.model_colours(style.model_order(d.energy["model"].unique()))
    for ax in panels(fig):
        (images,) = collections(ax, "images")
        assert all(is_grey(c) for c in images.get_facecolors()), "image points in grey"
        for c in ax.collections:
            gid = c.get_gid() or ""
            if gid.startswith("video "):
                assert to_rgba(c.get_facecolors()[0]) == to_rgba(colours[gid.removeprefix("video ")])
                assert not is_grey(c.get_facecolors()[0])
        for gid, marker in (("joint_lomo", "x"), ("image_to_video", "+")):
            assert all(marker_of(c) == marker for c in collections(ax, gid)), gid
        assert "TFLOP" in ax.get_xlabel()


#: Figure name -> (a phrase its caption says, the check that what is drawn says it too).
CLAIMS: dict[str, list[tuple[str, Check]]] = {
    "energy_vs_flops": [
        ("GPU energy per image against FLOPs per image (log-log)", flops_units),
        ("Grey line: the pooled FLOPs-only law at the panel's GPU kind, solid; where the law has a source "
         "term it is drawn per source, solid for its reference source and dashed for another", flops_lines),
        ("Coloured lines: an architecture's own law", flops_own_laws),
        ("Dotted: the GPU's physical limit", flops_limits),
    ],
    "j_per_pflop": [
        ("Energy per PFLOP (J/PFLOP)", pflop_units),
        ("The label under each kind gives the median and how many times the limit it is", pflop_labels),
        ("(black bar, its value beside it)", pflop_bars),
    ],
    "multi_gpu": [
        ("energy per output (an image, or a video)", multi_gpu_rows),
        ("Images in the top row, videos in the bottom row; every architecture measured on several GPU counts "
         "is drawn", multi_gpu_rows),
        ("each with its own colour and marker", multi_gpu_looks),
        ("Dotted, filled: the multi-GPU law's prediction of the same splits with the architecture held out",
         multi_gpu_predicted),
    ],
    "energy_vs_resolution": [
        ("one panel per GPU kind and step count (energies of different GPU kinds never share a panel)",
         one_gpu_per_panel("resolution", "steps")),
    ],
    "energy_vs_steps": [
        ("one panel per GPU kind and resolution", one_gpu_per_panel("steps", "resolution")),
    ],
    "stage_shares": [
        ("Each stage's share of the stage sum", stage_sum_axis),
        ("Flagged points (the flag column: stage sum or repeats disagree) are kept and marked with a "
         "triangle", stage_flags),
    ],
    "published_anchors": [
        ("Each point is numbered; the legend under the panel names what differs", anchors_numbers),
        ("the legend under the panel", legends_off_the_data),
        ("beside the law refitted once on the paper's own numbers", anchors_refits),
        ("one marker per set of GPU kinds the paper fitted on", anchors_refits),
    ],
    "energy_vs_batch": [
        ("Dashed: each architecture predicted by the candidate chosen", batch_styles),
        ("dotted: the FLOPs-only law", batch_styles),
    ],
    "lomo_predicted_vs_measured": [
        ("Filled circles: the one law chosen for every GPU kind", lomo_markers),
        ("open markers and crosses: the baselines", lomo_markers),
        ("The grey band is ±20%", lomo_markers),
    ],
    "precision_ratio": [("Dashed lines are the per-model medians", precision_medians)],
    "video_energy_vs_flops": [
        ("image points in grey, video points coloured by architecture", video_points),
        ("x, fitted on image and video points", video_points),
        ("+, fitted on image points only", video_points),
    ],
}


def caption(name: str) -> str:
    """The caption as one line (its line breaks are layout, not content)."""
    return " ".join((REPORT / f"{name}.rst").read_text().split())


def check_caption(name: str, fig: Figure, inputs: FigureInputs) -> bool:
    """Check every claim of ``name``'s caption on ``fig``; False where the figure draws no data at all
    (a "no measurements yet" figure has no claims to check)."""
    text = caption(name)
    for phrase, _ in CLAIMS[name]:
        assert phrase in text, f"{name}.rst no longer says {phrase!r}: update tests/caption_checks.py"
    if not panels(fig):
        return False
    fig.canvas.draw()  # lay out the figure: legends and labels get their final places
    for _, check in CLAIMS[name]:
        check(fig, inputs)
    return True
