"""Published measurements -> rows of the measurement table, with checks on import.

Each upstream format has a reader (``mlenergy_v2``, ``mlenergy_v3``,
``mlenergy_v3_video``, ``quoted``) that turns its files into ``UpstreamPoint``s,
one per published point (an image, or a video with its frames, fps and frame
size), each knowing the file (and entry) it came from. This module maps them
onto the project's table: the upstream model id to a zoo architecture
(``upstream_models`` in the config), the GPU name to a GPU kind (``gpu_kinds``),
CFG and guidance as the zoo file records the pipeline's default, and the
source's provenance into every row. Nothing a source did not measure is filled
in: no stage split, no idle power, no dynamic energy.

Every check names the file and the entry: an upstream model with no zoo name
(and which name to add), two entries for one point, a missing or non-positive
energy, a GPU name that maps to no kind, a file of the wrong format.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..gpu_kinds import AmbiguousGpuKind, kind_of
from ..models import zoo

# The reader modules register their formats in upstream.READERS when imported.
from . import gpu_datasheets, mlenergy_v2, mlenergy_v3, mlenergy_v3_video, plausibility, quoted  # noqa: F401
from .provenance import SourceError, SourceInfo, read_source_info
from .schema import conform, validate_measurements

# UpstreamPoint and the readers' helpers, also by their old address here.
from .upstream import READERS, Reader, UpstreamPoint, expect, precision_name, read_json  # noqa: F401

log = logging.getLogger(__name__)


def readers() -> dict[str, Reader]:
    """Format name -> reader, for every format a source.yaml may name."""
    return dict(READERS)


def _zoo_name(point: UpstreamPoint, upstream_models: Mapping[str, str], known: list[str]) -> str:
    name = upstream_models.get(point.upstream_model)
    if name is None:
        raise SourceError(
            f"{point.where}: upstream model {point.upstream_model!r} maps to no zoo architecture; add "
            f"'{point.upstream_model}: <zoo name>' to upstream_models in config/config.yaml (and an "
            f"architecture file config/models/<zoo name>.yaml if it is new; zoo: {', '.join(known)})")
    if name not in known:
        raise SourceError(f"upstream_models maps {point.upstream_model!r} to {name!r}, which is not in the "
                          f"zoo ({', '.join(known)})")
    return name


def check_output(point: UpstreamPoint, spec: zoo.ModelSpec) -> None:
    """A SourceError unless the model makes what the file holds: an image model's images in an image
    file; in a video file a text-to-video model's videos, of a frame count and frame size it makes
    (the FLOPs are counted for the model's own width at that height)."""
    name = f"{point.upstream_model} (zoo {spec.name})"
    if point.video and spec.video is None:
        raise SourceError(f"{point.where}: {name} makes images, not videos; its rows belong in the "
                          "source's image file, not the video file")
    if not point.video and spec.video is not None:
        raise SourceError(f"{point.where}: {name} is a text-to-video model; its rows belong in the source's "
                          "video file (in an image file a video would be taken for a 1-frame image)")
    if not point.video:
        return
    try:
        spec.check_frames(point.frames)
        spec.check_resolution(point.height)
    except zoo.ZooError as exc:
        raise SourceError(f"{point.where}: {name} cannot make this video: {exc}") from None
    height, width = spec.frame_size(point.height)
    if point.width != width:
        raise SourceError(f"{point.where}: a {point.width}x{point.height} px video, but {spec.name} makes "
                          f"{width}x{height} px at a height of {height} (its default video is "
                          f"{spec.video.width}x{spec.video.height}); the FLOPs would be counted for "
                          "another frame size")


def to_rows(points: list[UpstreamPoint], info: SourceInfo, upstream_models: Mapping[str, str],
            gpu_kinds: Mapping[str, Mapping[str, Any]], models_dir: Path | None = None) -> pd.DataFrame:
    """Measurement rows (one ``image`` row per point), checked; the source's provenance in each."""
    known = zoo.available_models(models_dir) if models_dir else zoo.available_models()
    specs: dict[str, zoo.ModelSpec] = {}
    seen: dict[tuple[Any, ...], str] = {}
    rows = []
    for p in points:
        name = _zoo_name(p, upstream_models, known)
        spec = specs.get(name) or specs.setdefault(
            name, zoo.load_spec(name, models_dir) if models_dir else zoo.load_spec(name))
        check_output(p, spec)
        try:
            kind = kind_of(p.gpu_name, gpu_kinds)
        except AmbiguousGpuKind as exc:
            raise SourceError(f"{p.where}: {exc}") from None
        if kind is None:
            raise SourceError(f"{p.where}: GPU {p.gpu_name!r} maps to no GPU kind; add a kind whose "
                              f"name_pattern it holds (as whole words) to gpu_kinds in config/config.yaml "
                              f"(kinds: {', '.join(sorted(gpu_kinds))})")
        output = "video" if p.frames > 1 else "image"
        if not (math.isfinite(p.energy_per_image_j) and p.energy_per_image_j > 0):
            raise SourceError(f"{p.where}: energy per {output} {p.energy_per_image_j!r} J is not positive")
        key = (kind, name, p.precision, p.resolution, p.width, p.frames, p.steps, p.batch, p.num_gpus,
               p.ulysses_degree, p.ring_degree)
        if key in seen:
            size = f"{p.width}x{p.height} px, {p.frames} frames" if p.frames > 1 else f"{p.resolution} px"
            raise SourceError(f"{p.where}: the same point as {seen[key]} ({p.upstream_model} on "
                              f"{p.gpu_name}, {size}, {p.steps} steps, batch {p.batch}, "
                              f"{p.num_gpus} GPU(s))")
        seen[key] = p.where
        time_s = p.batch_time_s / p.batch if math.isfinite(p.batch_time_s) else math.nan
        window = info.window_batches
        if info.window_batches_above_30_steps and p.steps > 30:
            window = info.window_batches_above_30_steps
        rows.append({
            "source": info.name, "quoted": p.quoted, "gpu": kind, "model": name,
            "architecture": spec.architecture, "precision": p.precision, "resolution": p.resolution,
            "steps": p.steps, "cfg": spec.cfg, "guidance_scale": spec.guidance_scale, "batch": p.batch,
            "frames": p.frames, "fps": p.fps, "height": p.height or math.nan, "width": p.width or math.nan,
            "num_gpus": p.num_gpus, "ulysses_degree": p.ulysses_degree, "ring_degree": p.ring_degree,
            "stage": "image", "repeat": 0, "status": "ok", "energy_status": "measured",
            "energy_j": p.energy_per_image_j, "time_s": time_s, "batch_time_s": p.batch_time_s,
            "avg_power_w": p.avg_power_w, "window_calls": window, "energy_scope": info.energy_scope,
            "gpu_name": p.gpu_name, "power_limit_w": info.power_limit(p.gpu_name), "software": info.software,
            "weights_source": f"{info.weights}:{p.upstream_model}" + (f"@{p.revision}" if p.revision else ""),
            "upstream_model": p.upstream_model, "upstream_commit": info.upstream_commit,
            "upstream_file": p.where, "flag": "",
        })
    frame = conform(pd.DataFrame(rows)) if rows else conform(pd.DataFrame(columns=["source"]))
    _refuse_impossible(frame, gpu_kinds)
    return validate_measurements(frame, f"import of {info.name}")


def _refuse_impossible(frame: pd.DataFrame, gpu_kinds: Mapping[str, Mapping[str, Any]]) -> None:
    """A SourceError naming the files whose energies their GPU cannot have spent (``plausibility``)."""
    reasons = plausibility.violations(frame, gpu_datasheets.datasheets(gpu_kinds))
    bad = frame[reasons != ""]
    if bad.empty:
        return
    first = bad.index[0]
    more = f" (and {len(bad) - 1} more of {len(frame)} points)" if len(bad) > 1 else ""
    where, energy = frame.at[first, "upstream_file"], frame.at[first, "energy_j"]
    kind = frame.at[first, "gpu"]
    raise SourceError(f"{where}: energy per image {energy:.4g} J is {reasons[first]}{more}; check the "
                      f"file's units (J, not kJ or Wh) and times, or gpu_kinds.{kind}.datasheet")


def import_source(folder: str | Path, upstream_models: Mapping[str, str],
                  gpu_kinds: Mapping[str, Mapping[str, Any]], fmt: str | None = None,
                  models_dir: Path | None = None) -> pd.DataFrame:
    """Read a published source folder (its ``source.yaml`` and files) into measurement rows."""
    folder = Path(folder)
    if not folder.exists():
        raise SourceError(f"{folder}: no such source folder")
    info = read_source_info(folder if folder.is_dir() else folder.parent)
    fmt = fmt or info.format
    available = readers()
    if fmt not in available:
        raise SourceError(f"{folder}: unknown source format {fmt!r}; known: {sorted(available)}")
    points = available[fmt](folder)
    if not points:
        raise SourceError(f"{folder}: no points found in the {fmt} format")
    frame = to_rows(points, info, upstream_models, gpu_kinds, models_dir)
    log.info("%s: %d points from %s", info.name, len(frame), folder)
    return frame
