"""The shipped reference dataset: check measured points, package them, write the datasheet.

A GPU run's point files (``results/measurements/{gpu}/...``) become
``resources/measurements/{gpu}.parquet`` plus ``{gpu}.md``, the datasheet.
Nothing is packaged unchecked: every measured row has positive energy, the GPU
named in every row is of the kind the file is for, every ok point has all four
stages, and the repeat spread and stage-sum error of every point are reported
(points over the protocol's limits stay in, with their ``flag``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import atomic
from ..gpu_kinds import kind_of
from . import dataset

#: Protocol settings every measured row records (the run's own values win over the config's).
RECORDED_PROTOCOL = ("warmup", "warmup_s", "min_window_s")
#: A grid point as the datasheet names it: (model, precision, resolution, steps, cfg, batch).
PointKey = tuple[str, str, int, int, bool, int]

ANCHOR_MODEL_NAMES = {"sd2": "sd21", "sd2.1": "sd21", "sd3.5-large": "sd35-large", "flux-dev": "flux-dev",
                      "qwen-image": "qwen-image", "sdxl": "sdxl", "sd1.5": "sd15"}


@dataclass(frozen=True)
class DatasetSummary:
    """The figures a closing note and the datasheet give about one GPU's dataset."""

    gpu: str
    gpu_names: tuple[str, ...]
    points: int
    oom: int
    flagged: int
    gpu_wall_time_s: float
    median_spread: float
    worst_spread: float
    worst_stage_sum_error: float
    j_per_image_1024_50: Mapping[str, float]


def check_reference(frame: pd.DataFrame, gpu_kind: str, gpu_kinds: Mapping[str, Any]) -> None:
    """Refuse a dataset that is not what it claims to be."""
    dataset.check_measurements(frame, f"{gpu_kind} dataset")
    if frame.empty:
        raise dataset.DatasetError(f"{gpu_kind}: no rows to package")
    kinds = set(frame["gpu"])
    if kinds != {gpu_kind}:
        raise dataset.DatasetError(f"{gpu_kind} dataset holds rows of GPU kinds {sorted(kinds)}")
    ok = frame[frame["status"] == "ok"]
    not_measured = ok[ok["energy_status"] != "measured"]
    if len(not_measured):
        raise dataset.DatasetError(
            f"{gpu_kind}: {len(not_measured)} ok rows without GPU energy "
            f"({not_measured['energy_status'].iloc[0]}); only GPU measurements ship"
        )
    for name in ok["gpu_name"].dropna().unique():
        if kind_of(name, gpu_kinds) != gpu_kind:
            raise dataset.DatasetError(f"{gpu_kind} dataset has rows measured on {name!r}")
    stages = ok.groupby(dataset.GRID_KEYS)["stage"].agg(lambda s: frozenset(s))
    incomplete = stages[stages != frozenset(dataset.STAGES)]
    if len(incomplete):
        point = ", ".join(f"{k}={v}" for k, v in zip(dataset.GRID_KEYS, incomplete.index[0], strict=True))
        missing = sorted(set(dataset.STAGES) - incomplete.iloc[0])
        raise dataset.DatasetError(f"{gpu_kind}: {len(incomplete)} point(s) lack a stage, e.g. "
                                   f"({point}) has no {missing} rows")


def point_files(measurements: str | Path, gpu_kind: str) -> list[Path]:
    """What to package: a run's point files (``{folder}/{gpu}/{model}/{precision}/*.parquet``), or
    a table of rows given directly (a ``.parquet`` file, e.g. one packaged before)."""
    path = Path(measurements)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise dataset.DatasetError(f"{path}: no such folder of measured points or parquet file")
    files = sorted((path / gpu_kind).glob("*/*/*.parquet"))
    if not files:
        raise dataset.DatasetError(f"{path}: no point files of GPU kind {gpu_kind!r} to package "
                                   f"(looked for {path / gpu_kind}/<model>/<precision>/*.parquet)")
    return files


def point_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per measured point: median J and s per image, repeat spread, the stage-sum error of
    every repeat ((text + denoise + VAE) / image - 1), warm-up images and the flag, as measured."""
    image = frame[(frame["status"] == "ok") & (frame["stage"] == "image")].sort_values("repeat")
    keys = ["model", "precision", "resolution", "steps", "cfg", "batch"]
    table = image.groupby(keys).agg(
        j_per_image=("energy_j", "median"), s_per_image=("time_s", "median"),
        repeats=("energy_j", "size"), repeat_spread=("repeat_spread", "first"),
        stage_sum_errors=("stage_sum_error", lambda s: tuple(float(v) for v in s)),
        warmup_images=("warmup_images", "first"), flag=("flag", "first")).reset_index()
    table["stage_sum_median"] = [float(pd.Series(e).abs().median()) for e in table["stage_sum_errors"]]
    table["stage_sum_worst"] = [float(pd.Series(e).abs().max()) for e in table["stage_sum_errors"]]
    table["flag"] = table["flag"].fillna("")
    return table


def missing_points(frame: pd.DataFrame, expected: Iterable[PointKey]) -> list[PointKey]:
    """The expected points (the config's grid) of the groups this dataset measured that it lacks."""
    keys = ["model", "precision", "resolution", "steps", "cfg", "batch"]
    have = {(str(m), str(p), int(r), int(s), bool(c), int(b))
            for m, p, r, s, c, b in frame[keys].drop_duplicates().itertuples(index=False)}
    groups = {(m, p) for m, p, *_ in have}
    return sorted(k for k in set(expected) if (k[0], k[1]) in groups and k not in have)


def unmeasured_groups(frame: pd.DataFrame, expected: Iterable[PointKey]) -> dict[tuple[str, str], int]:
    """Groups (model, precision) of the expected grid with no point in this dataset, and their sizes."""
    have = set(map(tuple, frame[["model", "precision"]].drop_duplicates().to_numpy()))
    out: dict[tuple[str, str], int] = {}
    for k in expected:
        if (k[0], k[1]) not in have:
            out[(k[0], k[1])] = out.get((k[0], k[1]), 0) + 1
    return dict(sorted(out.items()))


def run_protocol(frame: pd.DataFrame, configured: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The protocol the rows were measured with: the config's, with the values every row records
    (warm-up, shortest window) taken from the rows; also which keys came from the rows."""
    protocol, recorded = dict(configured), set()
    for key in RECORDED_PROTOCOL:
        values = frame[key].dropna().unique() if key in frame else []
        if len(values):
            protocol[key] = "/".join(str(v.item() if hasattr(v, "item") else v) for v in sorted(values))
            recorded.add(key)
    return protocol, recorded


def summarize(frame: pd.DataFrame, gpu_kind: str) -> DatasetSummary:
    points = frame.drop_duplicates(dataset.GRID_KEYS)
    ok = frame[frame["status"] == "ok"]
    image = ok[ok["stage"] == "image"]
    per_point = image.groupby(dataset.GRID_KEYS).agg(
        spread=("repeat_spread", "first"), stage_sum=("stage_sum_error", lambda s: s.abs().max()),
        energy=("energy_j", "median"), flag=("flag", "first"))
    # GPU wall time: every window of the dataset (shared text/VAE windows counted once).
    windows = ok.drop_duplicates(["model", "precision", "stage", "repeat", "window_s", "energy_j"])
    wall = float(windows["window_s"].sum())
    big = per_point.reset_index()
    big = big[(big["resolution"] == 1024) & (big["steps"] == 50)]
    j_1024 = {f"{r.model} {r.precision}": float(r.energy) for r in big.itertuples()}
    return DatasetSummary(
        gpu=gpu_kind,
        gpu_names=tuple(sorted(frame["gpu_name"].dropna().unique())),
        points=len(points),
        oom=int((points["status"] == "oom").sum()),
        flagged=int((per_point["flag"].fillna("") != "").sum()),
        gpu_wall_time_s=wall,
        median_spread=float(per_point["spread"].median()) if len(per_point) else math.nan,
        worst_spread=float(per_point["spread"].max()) if len(per_point) else math.nan,
        worst_stage_sum_error=float(per_point["stage_sum"].max()) if len(per_point) else math.nan,
        j_per_image_1024_50=j_1024,
    )


def anchor_ratios(energy: pd.DataFrame, anchors: pd.DataFrame) -> pd.DataFrame:
    """Measured / published J per image where model, GPU, resolution, steps and precision match."""
    pub = anchors[anchors["metric"] == "energy_per_image"].copy()
    pub["model"] = pub["model"].map(lambda m: ANCHOR_MODEL_NAMES.get(m, m))
    pub["published_j"] = pub["value"].astype(float) * pub["unit"].map({"Wh": 3600.0, "J": 1.0})
    for col in ("resolution", "steps"):
        pub[col] = pub[col].astype(float).astype(int)
    ours = energy[energy["status"] == "ok"][["model", "gpu", "resolution", "steps", "precision", "energy_j"]]
    matched = pub.merge(ours, on=["model", "gpu", "resolution", "steps", "precision"])
    matched["ratio"] = matched["energy_j"] / matched["published_j"]
    return matched[["source", "model", "gpu", "resolution", "steps", "precision", "published_j",
                    "energy_j", "ratio", "note"]]


def _point_name(key: PointKey) -> str:
    model, precision, res, steps, cfg, batch = key
    return f"{model} {precision} {res} px / {steps} steps (CFG {'on' if cfg else 'off'}, batch {batch})"


def _range(values: pd.Series, unit: str) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return "not recorded"
    lo, hi = values.min(), values.max()
    return f"{lo:.1f} {unit}" if round(lo, 1) == round(hi, 1) else f"{lo:.1f}-{hi:.1f} {unit}"


def _signed(values: Sequence[float]) -> str:
    return ", ".join(f"{v:+.1%}" for v in values)


def datasheet(frame: pd.DataFrame, summary: DatasetSummary, protocol: Mapping[str, Any],
              expected: Iterable[PointKey] = (), code: str = "", notes: Sequence[str] = ()) -> str:
    """The datasheet shipped beside the parquet (markdown; every number read from the data).

    ``protocol`` is the config's; the values the rows record override it. ``expected`` is the
    grid the run set out to measure: the points of measured groups it lacks are named, never
    filled in. ``code`` says which code measured (commit and changes), ``notes`` anything else
    the packager must say about the run.
    """
    first = frame.iloc[0]
    expected = list(expected)
    used, recorded = run_protocol(frame, protocol)
    protocol_text = ", ".join(f"{k}={v}" + (" (recorded in the rows)" if k in recorded else "")
                              for k, v in sorted(used.items()))
    grid_rows = [
        f"| {model} | {precision} | {sorted({int(v) for v in g['resolution']})} "
        f"| {sorted({int(v) for v in g['steps']})} "
        f"| {bool(g['cfg'].iloc[0])} |"
        for (model, precision), g in frame.groupby(["model", "precision"])
    ]
    grid_desc = "| model | precision | resolutions (px) | steps | CFG |\n|---|---|---|---|---|\n"
    grid_desc += "\n".join(grid_rows)
    points = point_table(frame)
    point_rows = "\n".join(
        f"| {r.model} | {r.precision} | {r.resolution} | {r.steps} | {r.j_per_image:.1f} "
        f"| {r.s_per_image:.3f} "
        f"| {r.repeat_spread:.1%} | {_signed(r.stage_sum_errors)} | {r.stage_sum_median:.1%} "
        f"| {r.warmup_images} | {r.flag or '-'} |" for r in points.itertuples())
    missing = missing_points(frame, expected)
    missing_text = "\n".join(f"- {_point_name(k)}: not measured (no row; nothing filled in)" for k in missing)
    missing_text = missing_text or "- none: every point of the measured groups' grid is here"
    others = unmeasured_groups(frame, expected)
    if others:
        missing_text += ("\n- groups of the grid with no point on this GPU: "
                         + ", ".join(f"{m} {p} ({n} points)" for (m, p), n in others.items()))
    j_lines = "\n".join(f"| {k} | {v:.0f} |" for k, v in sorted(summary.j_per_image_1024_50.items()))
    j_lines = j_lines or "| (none measured at these settings) | - |"
    note_lines = "".join(f"- {n}\n" for n in notes)
    return f"""# Reference measurements: {summary.gpu}

- GPU: {", ".join(summary.gpu_names)} (driver {first.get("driver_version", "")}, power limit \
{first.get("power_limit_w", float("nan")):.0f} W)
- Software: torch {first.get("torch_version", "")} (CUDA {first.get("cuda_version", "")}), diffusers \
{first.get("diffusers_version", "")}, transformers {first.get("transformers_version", "")}, zeus \
{first.get("zeus_version", "")}
- Code: {code or "not recorded"}
- Idle power with the CUDA context alive: {_range(frame["idle_power_w"], "W")}
- Measured: {frame["measured_at"].dropna().min()} to {frame["measured_at"].dropna().max()} (UTC) \
on {", ".join(sorted(frame["hostname"].dropna().unique()))}
- Rows: {len(frame)}; points: {summary.points} ({summary.oom} out of memory, {summary.flagged} flagged, \
kept with their flag); GPU wall time in windows {summary.gpu_wall_time_s:.0f} s
- Repeat spread (max/min - 1 of whole-image energy): median {summary.median_spread:.1%}, \
worst {summary.worst_spread:.1%}; worst stage-sum error {summary.worst_stage_sum_error:.1%}
- Protocol: {protocol_text}
{note_lines}
## Grid

{grid_desc}

## Points

J and s per image: medians of the repeats' whole-image windows. Stage sum: (text + denoise + VAE) /
image - 1 per repeat; the flag uses the median of their absolute values.

| model | precision | px | steps | J/image | s/image | spread | stage sum per repeat | stage sum (median) \
| warm-up images | flag |
|---|---|---|---|---|---|---|---|---|---|---|
{point_rows}

## Not measured

{missing_text}

## J per image at 1024 px, 50 steps

| model | J/image |
|---|---|
{j_lines}

## Caveats

- Random weights ({", ".join(sorted(frame["weights_source"].dropna().unique()))}): energy depends on
  shapes, not weight values, to within a few per cent; real weights can be loaded from a local path.
- Eager PyTorch (no torch.compile, no CUDA graphs), SDPA attention: small configurations are
  launch-bound.
- GPU energy only (NVML counter via Zeus); CPU and DRAM energy are not included.
- Text encoding and VAE decoding are measured once per model/precision (and per resolution for
  the VAE) and shared by the points that use them.
"""


def point_energies(frame: pd.DataFrame) -> pd.DataFrame:
    """Median whole-image energy per point (for comparisons that need no FLOPs)."""
    image = frame[(frame["status"] == "ok") & (frame["stage"] == "image")]
    return image.groupby(dataset.GRID_KEYS, as_index=False).agg(energy_j=("energy_j", "median")).assign(
        status="ok")


def package(files: list[Path], gpu_kind: str, gpu_kinds: Mapping[str, Any],
            protocol: Mapping[str, Any], out_dir: Path, expected: Iterable[PointKey] = (),
            code: str = "", notes: Sequence[str] = ()) -> DatasetSummary:
    """Check and write ``{out_dir}/{gpu}.parquet`` and its datasheet ``{gpu}.md`` (``datasheet``
    says what ``expected``, ``code`` and ``notes`` add)."""
    frame = dataset.read_measurements(files)
    frame = frame[frame["gpu"] == gpu_kind].reset_index(drop=True)
    check_reference(frame, gpu_kind, gpu_kinds)
    summary = summarize(frame, gpu_kind)
    atomic.write_parquet(frame, out_dir / f"{gpu_kind}.parquet")
    atomic.write_text(datasheet(frame, summary, protocol, expected, code, notes), out_dir / f"{gpu_kind}.md")
    return summary
