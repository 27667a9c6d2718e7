"""ML.ENERGY Benchmark v3's text-to-video table, in its upstream format.

``text-to-video.json``: ``{"task": "text-to-video", "configurations": [...]}``, one object
per point with ``model_id``, ``gpu_model``, ``num_gpus`` (= ``ulysses_degree`` x
``ring_degree``), ``batch_size``, ``video_height``, ``video_width``, ``num_frames``,
``fps``, ``inference_steps``, ``weight_precision``, ``energy_per_video_joules`` (summed over
the run's GPUs), ``batch_latency_s`` and ``avg_power_watts``.

A point is one video: its energy is per video (per frame is derived downstream, energy /
frames), its ``resolution`` the frame height (as in "480p") with the width beside it.
"""

from __future__ import annotations

from pathlib import Path

from .mlenergy_v3 import configurations, point_fields
from .provenance import SourceError
from .upstream import UpstreamPoint, expect, reader

FILE = "text-to-video.json"


def _positive(entry: dict, key: str, kind: type | tuple[type, ...], where: str) -> int | float:
    value = expect(entry, key, kind, where)
    if not value > 0:
        raise SourceError(f"{where}: key {key!r} should be positive, not {value!r}")
    return value


@reader("mlenergy-v3-video")
def read(folder: Path) -> list[UpstreamPoint]:
    """Every configuration of ``folder/text-to-video.json`` (or of the file given)."""
    points = []
    for where, entry in configurations(folder, FILE, "text-to-video"):
        height = int(_positive(entry, "video_height", int, where))
        width = int(_positive(entry, "video_width", int, where))
        points.append(UpstreamPoint(
            **point_fields(entry, where, "energy_per_video_joules"), resolution=height,
            frames=int(_positive(entry, "num_frames", int, where)),
            fps=float(_positive(entry, "fps", (int, float), where)), height=height, width=width,
            video=True))
    return points
