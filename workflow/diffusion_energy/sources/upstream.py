"""Published points in their source's own terms, and what every reader of a source format shares.

Each upstream format has a reader module (``mlenergy_v2``, ``mlenergy_v3``,
``mlenergy_v3_video``, ``quoted``) that turns its files into ``UpstreamPoint``s
and registers itself here by its format name (``@reader("mlenergy-v2")``);
``importing`` imports the readers and maps their points onto the project's table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .provenance import SourceError


@dataclass(frozen=True)
class UpstreamPoint:
    """One published point in the source's own terms, and where it was read."""

    where: str
    upstream_model: str
    gpu_name: str
    resolution: int
    steps: int
    precision: str
    batch: int
    #: Energy per output of the pipeline: per image, or per video for a video source.
    energy_per_image_j: float
    batch_time_s: float = math.nan
    avg_power_w: float = math.nan
    num_gpus: int = 1
    ulysses_degree: int = 1
    ring_degree: int = 1
    revision: str = ""
    quoted: bool = False
    #: For quoted figures: the GPU kind and the source as the quoting table names them.
    source_label: str = ""
    #: A video's frame count (1: an image), frame rate and frame size as the source gives them
    #: (``resolution`` is then the frame height); NaN/0 where the source does not give them.
    frames: int = 1
    fps: float = math.nan
    height: int = 0
    width: int = 0
    #: Read from a source's video file (``mlenergy_v3_video``): only text-to-video models belong there,
    #: and only image models in an image file.
    video: bool = False


#: Reads a source folder (or file) into upstream points.
Reader = Callable[[Path], list[UpstreamPoint]]

#: Format name (a source.yaml's ``format:``) -> its reader; each reader module registers its own.
READERS: dict[str, Reader] = {}


def reader(fmt: str) -> Callable[[Reader], Reader]:
    """Decorator of a reader module's ``read``: make it the reader of format ``fmt``."""
    def register(read: Reader) -> Reader:
        if fmt in READERS:
            raise ValueError(f"source format {fmt!r} has two readers")
        READERS[fmt] = read
        return read
    return register


def read_json(path: Path) -> Any:
    """A source file's JSON, or a SourceError naming the file."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path}: not a readable JSON file ({exc})") from None


def expect(entry: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``entry[key]`` of the given type, or a SourceError naming the file, entry and key."""
    if key not in entry:
        raise SourceError(f"{where}: missing key {key!r} (is this file in the source's format?)")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SourceError(f"{where}: key {key!r} should be {names}, not {value!r}")
    return value


def precision_name(value: str, where: str) -> str:
    """``torch.float16`` / ``bfloat16`` / ``fp16`` -> the project's precision name."""
    names = {"float16": "fp16", "fp16": "fp16", "half": "fp16", "bfloat16": "bf16", "bf16": "bf16",
             "float32": "fp32", "fp32": "fp32"}
    key = str(value).lower().removeprefix("torch.")
    if key not in names:
        raise SourceError(f"{where}: unknown precision {value!r}; known: {sorted(names)}")
    return names[key]
