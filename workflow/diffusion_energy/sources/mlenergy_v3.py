"""ML.ENERGY Benchmark v3's text-to-image table, in its upstream format.

``text-to-image.json``: ``{"task": "text-to-image", "configurations": [...]}``, one
object per point with ``model_id``, ``gpu_model``, ``num_gpus`` (= ``ulysses_degree`` x
``ring_degree``), ``batch_size``, ``image_height``, ``image_width``, ``inference_steps``,
``weight_precision``, ``energy_per_image_joules`` (summed over the run's GPUs),
``batch_latency_s`` and ``avg_power_watts``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .provenance import SourceError
from .upstream import UpstreamPoint, expect, precision_name, read_json, reader

FILE = "text-to-image.json"


def configurations(folder: Path, file: str, task: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, entry) of every configuration of ``folder/file`` (or of the file given), whose
    ``task`` must be ``task``; errors name the file (and the entry)."""
    path = folder if folder.is_file() else folder / file
    if not path.exists():
        raise SourceError(f"{path}: missing; is {folder} an ML.ENERGY v3 {task} folder?")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("configurations"), list):
        raise SourceError(f"{path}: expected an object with a 'configurations' list (ML.ENERGY v3 format)")
    if data.get("task", task) != task:
        raise SourceError(f"{path}: task {data.get('task')!r}, not {task}")
    out = []
    for i, entry in enumerate(data["configurations"]):
        where = f"{path} configurations[{i}]"
        if not isinstance(entry, dict):
            raise SourceError(f"{where}: expected an object")
        out.append((where, entry))
    return out


def parallel_degrees(entry: dict[str, Any], where: str) -> tuple[int, int, int]:
    """(num_gpus, ulysses_degree, ring_degree) of an entry; their product must hold."""
    num_gpus = expect(entry, "num_gpus", int, where)
    ulysses = expect(entry, "ulysses_degree", int, where)
    ring = expect(entry, "ring_degree", int, where)
    if ulysses * ring != num_gpus:
        raise SourceError(f"{where}: ulysses_degree {ulysses} x ring_degree {ring} != num_gpus {num_gpus}")
    return num_gpus, ulysses, ring


def optional_power(entry: dict[str, Any]) -> float:
    """``avg_power_watts`` where the entry gives a number, else NaN (nothing filled in)."""
    power = entry.get("avg_power_watts")
    return float(power) if isinstance(power, int | float) and not isinstance(power, bool) else float("nan")


def point_fields(entry: dict[str, Any], where: str, energy_key: str) -> dict[str, Any]:
    """The ``UpstreamPoint`` fields every v3 configuration has, images and videos alike (the
    size is the task's own; ``energy_key`` names the energy per image or per video)."""
    num_gpus, ulysses, ring = parallel_degrees(entry, where)
    return dict(
        where=where, upstream_model=expect(entry, "model_id", str, where),
        gpu_name=expect(entry, "gpu_model", str, where),
        steps=expect(entry, "inference_steps", int, where),
        precision=precision_name(expect(entry, "weight_precision", str, where), where),
        batch=expect(entry, "batch_size", int, where),
        energy_per_image_j=float(expect(entry, energy_key, (int, float), where)),
        batch_time_s=float(expect(entry, "batch_latency_s", (int, float), where)),
        avg_power_w=optional_power(entry), num_gpus=num_gpus, ulysses_degree=ulysses, ring_degree=ring)


@reader("mlenergy-v3")
def read(folder: Path) -> list[UpstreamPoint]:
    """Every configuration of ``folder/text-to-image.json`` (or of the file given)."""
    points = []
    for where, entry in configurations(folder, FILE, "text-to-image"):
        height = expect(entry, "image_height", int, where)
        width = expect(entry, "image_width", int, where)
        if height != width:
            raise SourceError(f"{where}: image {width}x{height} is not square; a point of this project "
                              "has one resolution, width = height")
        fields = point_fields(entry, where, "energy_per_image_joules")
        points.append(UpstreamPoint(**fields, resolution=height))
    return points
