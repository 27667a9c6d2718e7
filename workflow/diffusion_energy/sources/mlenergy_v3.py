"""ML.ENERGY Benchmark v3's text-to-image table, in its upstream format.

``text-to-image.json``: ``{"task": "text-to-image", "configurations": [...]}``, one
object per point with ``model_id``, ``gpu_model``, ``num_gpus`` (= ``ulysses_degree`` x
``ring_degree``), ``batch_size``, ``image_height``, ``image_width``, ``inference_steps``,
``weight_precision``, ``energy_per_image_joules`` (summed over the run's GPUs),
``batch_latency_s`` and ``avg_power_watts``.
"""

from __future__ import annotations

from pathlib import Path

from .importing import UpstreamPoint, expect, precision_name, read_json
from .provenance import SourceError

FILE = "text-to-image.json"


def read(folder: Path) -> list[UpstreamPoint]:
    """Every configuration of ``folder/text-to-image.json`` (or of the file given)."""
    path = folder if folder.is_file() else folder / FILE
    if not path.exists():
        raise SourceError(f"{path}: missing; is {folder} an ML.ENERGY v3 text-to-image folder?")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("configurations"), list):
        raise SourceError(f"{path}: expected an object with a 'configurations' list (ML.ENERGY v3 format)")
    if data.get("task", "text-to-image") != "text-to-image":
        raise SourceError(f"{path}: task {data.get('task')!r}, not text-to-image")
    points = []
    for i, entry in enumerate(data["configurations"]):
        where = f"{path} configurations[{i}]"
        if not isinstance(entry, dict):
            raise SourceError(f"{where}: expected an object")
        height = expect(entry, "image_height", int, where)
        width = expect(entry, "image_width", int, where)
        if height != width:
            raise SourceError(f"{where}: image {width}x{height} is not square; a point of this project "
                              "has one resolution, width = height")
        num_gpus = expect(entry, "num_gpus", int, where)
        ulysses = expect(entry, "ulysses_degree", int, where)
        ring = expect(entry, "ring_degree", int, where)
        if ulysses * ring != num_gpus:
            raise SourceError(f"{where}: ulysses_degree {ulysses} x ring_degree {ring} "
                              f"!= num_gpus {num_gpus}")
        power = entry.get("avg_power_watts")
        points.append(UpstreamPoint(
            where=where, upstream_model=expect(entry, "model_id", str, where),
            gpu_name=expect(entry, "gpu_model", str, where), resolution=height,
            steps=expect(entry, "inference_steps", int, where),
            precision=precision_name(expect(entry, "weight_precision", str, where), where),
            batch=expect(entry, "batch_size", int, where),
            energy_per_image_j=float(expect(entry, "energy_per_image_joules", (int, float), where)),
            batch_time_s=float(expect(entry, "batch_latency_s", (int, float), where)),
            avg_power_w=float(power) if isinstance(power, int | float) else float("nan"),
            num_gpus=num_gpus, ulysses_degree=ulysses, ring_degree=ring))
    return points
