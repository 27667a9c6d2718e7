"""Count every model the workflow needs in one job: imports paid once, models in parallel.

Why one job: importing torch, diffusers and transformers costs seconds per
process, more than counting a small model; one job per model paid it every
time. Here the imports happen once, then worker processes forked from this one
(they inherit the imported modules) count one model each, the costliest first,
so a few cores share the work evenly. Each model is built once on meta and each
distinct call counted at most at two batches (``flops.count_shapes``).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd
import torch

from ..models import zoo
from . import flops

log = logging.getLogger(__name__)

Shape = tuple[int, bool, int, int]  # (resolution, cfg, batch, frames); frames 1 for an image


@dataclass(frozen=True)
class Counted:
    """One model's FLOPs table, per-op table and how long counting it took."""

    model: str
    table: pd.DataFrame
    ops: pd.DataFrame
    seconds: float


def shapes_from_requests(requests: Mapping[str, Mapping[str, Iterable]]) -> dict[str, set[Shape]]:
    """``grid.flops_requests`` (per model: resolutions, cfgs, batches, frames) -> per model, its shapes.

    A request without ``frames`` is of images (one frame).
    """
    return {model: {(int(r), bool(c), int(b), int(f)) for r in req["resolutions"] for c in req["cfgs"]
                    for b in req["batches"] for f in req.get("frames", [1])}
            for model, req in requests.items()}


def shapes_from_points(points: pd.DataFrame) -> dict[str, set[Shape]]:
    """Per model, the shapes of measured or imported points (rows of a measurement table; a table
    without ``frames`` is of images)."""
    out: dict[str, set[Shape]] = {}
    if points.empty:
        return out
    points = points if "frames" in points else points.assign(frames=1)
    keys = ["model", "resolution", "cfg", "batch", "frames"]
    for model, res, cfg, batch, frames in points[keys].drop_duplicates().itertuples(index=False):
        out.setdefault(str(model), set()).add((int(res), bool(cfg), int(batch), int(frames)))
    return out


def union(*parts: Mapping[str, set[Shape]]) -> dict[str, set[Shape]]:
    out: dict[str, set[Shape]] = {}
    for part in parts:
        for model, shapes in part.items():
            out.setdefault(model, set()).update(shapes)
    return dict(sorted(out.items()))


def _count_one(job: tuple[str, list[Shape]]) -> Counted:
    model, shapes = job
    torch.set_num_threads(1)  # meta tensors compute nothing; one thread per worker process
    start = time.perf_counter()
    table, ops = flops.count_shapes(zoo.load_spec(model), shapes)
    return Counted(model, table, ops, time.perf_counter() - start)


def _cost(model: str, shapes: set[Shape]) -> float:
    """A rough cost, to count the costliest models first: the calls traced (two batches per
    resolution and frames at most) times the denoiser's depth (the sum of its config's layer
    counts), twice that for a video model (it also traces a 3D VAE's decode of a whole video: about
    1.5 s of one core per video model, as much as FLUX.1-dev)."""
    def layers(value: object) -> int:
        return sum(layers(v) for v in value) if isinstance(value, list) else int(value) \
            if isinstance(value, int) else 0

    spec = zoo.load_spec(model)
    depth = sum(layers(v) for k, v in spec.denoiser.config.items() if "layers" in k) or 1
    sizes = {(r, f) for r, _, _, f in shapes}
    traces = sum(min(2, len({b for r2, _, b, f2 in shapes if (r2, f2) == rf})) for rf in sizes)
    return traces * depth * (2 if spec.video else 1)


def count_all(shapes: Mapping[str, set[Shape]], jobs: int = 1) -> list[Counted]:
    """Every model's counts, in parallel over ``jobs`` forked processes (1: in this process)."""
    work = sorted(((m, sorted(s)) for m, s in shapes.items() if s), key=lambda ms: -_cost(ms[0], set(ms[1])))
    if jobs <= 1 or len(work) <= 1:
        return [_count_one(w) for w in work]
    context = multiprocessing.get_context("fork")
    with context.Pool(min(jobs, len(work))) as pool:
        return list(pool.imap_unordered(_count_one, work))


def merge(counted: list[Counted]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One FLOPs table and one per-op table, models in name order."""
    counted = sorted(counted, key=lambda c: c.model)
    if not counted:
        return pd.DataFrame(columns=flops.FLOPS_COLUMNS), pd.DataFrame(columns=flops.OPS_COLUMNS)
    return (pd.concat([c.table for c in counted], ignore_index=True),
            pd.concat([c.ops for c in counted], ignore_index=True))
