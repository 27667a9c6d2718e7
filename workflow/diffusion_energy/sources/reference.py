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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import atomic
from ..measurement import gpu
from . import dataset

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
        if gpu.kind_of(name, gpu_kinds) != gpu_kind:
            raise dataset.DatasetError(f"{gpu_kind} dataset has rows measured on {name!r}")
    stages = ok.groupby(dataset.GRID_KEYS)["stage"].agg(lambda s: frozenset(s))
    incomplete = stages[stages != frozenset(dataset.STAGES)]
    if len(incomplete):
        point = ", ".join(f"{k}={v}" for k, v in zip(dataset.GRID_KEYS, incomplete.index[0], strict=True))
        missing = sorted(set(dataset.STAGES) - incomplete.iloc[0])
        raise dataset.DatasetError(f"{gpu_kind}: {len(incomplete)} point(s) lack a stage, e.g. "
                                   f"({point}) has no {missing} rows")


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


def datasheet(frame: pd.DataFrame, summary: DatasetSummary, protocol: Mapping[str, Any]) -> str:
    """The datasheet shipped beside the parquet (markdown; every number read from the data)."""
    first = frame.iloc[0]
    grid_rows = [
        f"| {model} | {precision} | {sorted(set(g['resolution']))} | {sorted(set(g['steps']))} "
        f"| {bool(g['cfg'].iloc[0])} |"
        for (model, precision), g in frame.groupby(["model", "precision"])
    ]
    grid_desc = "| model | precision | resolutions (px) | steps | CFG |\n|---|---|---|---|---|\n"
    grid_desc += "\n".join(grid_rows)
    j_lines = "\n".join(f"| {k} | {v:.0f} |" for k, v in sorted(summary.j_per_image_1024_50.items()))
    return f"""# Reference measurements: {summary.gpu}

- GPU: {", ".join(summary.gpu_names)} (driver {first.get("driver_version", "")}, power limit \
{first.get("power_limit_w", float("nan")):.0f} W)
- Software: torch {first.get("torch_version", "")} (CUDA {first.get("cuda_version", "")}), diffusers \
{first.get("diffusers_version", "")}, transformers {first.get("transformers_version", "")}, zeus \
{first.get("zeus_version", "")}
- Measured: {frame["measured_at"].dropna().min()} to {frame["measured_at"].dropna().max()} (UTC) \
on {", ".join(sorted(frame["hostname"].dropna().unique()))}
- Points: {summary.points} ({summary.oom} out of memory, {summary.flagged} flagged); \
GPU wall time in windows {summary.gpu_wall_time_s:.0f} s
- Repeat spread (max/min - 1 of whole-image energy): median {summary.median_spread:.1%}, \
worst {summary.worst_spread:.1%}; worst stage-sum error {summary.worst_stage_sum_error:.1%}
- Protocol: {", ".join(f"{k}={v}" for k, v in sorted(protocol.items()))}

## Grid

{grid_desc}

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


def package(point_files: list[Path], gpu_kind: str, gpu_kinds: Mapping[str, Any],
            protocol: Mapping[str, Any], out_dir: Path) -> DatasetSummary:
    """Check and write ``{out_dir}/{gpu}.parquet`` and its datasheet ``{gpu}.md``."""
    frame = dataset.read_measurements(point_files)
    frame = frame[frame["gpu"] == gpu_kind].reset_index(drop=True)
    check_reference(frame, gpu_kind, gpu_kinds)
    summary = summarize(frame, gpu_kind)
    atomic.write_parquet(frame, out_dir / f"{gpu_kind}.parquet")
    atomic.write_text(datasheet(frame, summary, protocol), out_dir / f"{gpu_kind}.md")
    return summary
