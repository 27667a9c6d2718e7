"""ML.ENERGY Leaderboard v2's text-to-image files, in their upstream layout.

``text-to-image/<GPU name>/<org>/<model>/bs<B>+steps<S>.json`` holds one point:
``{"Model", "GPU" (NVML name), "Energy/image (J)", "Batch latency (s)", "Batch size",
"Denoising steps"}``. ``text-to-image/models.json`` gives each model's resolution
(``"512x512"``); ``pipeline-kwargs/<org>/<model>/kwargs.json`` its ``torch_dtype`` and
``revision.txt`` the weights' revision. A file whose contents contradict its path
(another model, GPU, batch or step count) is refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .provenance import SourceError
from .upstream import UpstreamPoint, expect, precision_name, read_json, reader

_POINT = re.compile(r"bs(\d+)\+steps(\d+)\.json")


def _resolution(models: dict[str, Any], model: str, models_path: Path, where: str) -> int:
    """The model's square resolution from ``models.json``; errors name that file (and the point)."""
    info = models.get(model)
    if not isinstance(info, dict) or "resolution" not in info:
        raise SourceError(f"{models_path}: no resolution for {model!r} (needed by {where})")
    m = re.fullmatch(r"(\d+)x(\d+)", str(info["resolution"]))
    if not m or m.group(1) != m.group(2):
        raise SourceError(f"{models_path}: resolution {info['resolution']!r} of {model!r} is not square WxW "
                          f"(needed by {where})")
    return int(m.group(1))


def _pipeline_settings(folder: Path, model: str) -> tuple[str, str]:
    """(precision, revision) of a model from ``pipeline-kwargs/``."""
    kwargs_path = folder / "pipeline-kwargs" / model / "kwargs.json"
    if not kwargs_path.is_file():
        raise SourceError(f"{kwargs_path}: missing (the pipeline kwargs give the precision of {model!r})")
    kwargs = read_json(kwargs_path)
    if not isinstance(kwargs, dict):
        raise SourceError(f"{kwargs_path}: expected a JSON object of pipeline kwargs")
    precision = precision_name(expect(kwargs, "torch_dtype", str, str(kwargs_path)), str(kwargs_path))
    revision_path = kwargs_path.with_name("revision.txt")
    revision = revision_path.read_text().strip() if revision_path.is_file() else ""
    return precision, revision


@reader("mlenergy-v2")
def read(folder: Path) -> list[UpstreamPoint]:
    """Every point under ``folder/text-to-image/``."""
    root = folder / "text-to-image"
    models_path = root / "models.json"
    if not models_path.is_file():
        raise SourceError(f"{models_path}: missing; is {folder} an ML.ENERGY v2 text-to-image folder?")
    models = read_json(models_path)
    if not isinstance(models, dict):
        raise SourceError(f"{models_path}: expected a JSON object keyed by model id")
    points = []
    settings: dict[str, tuple[str, str]] = {}
    for path in sorted(root.glob("*/*/*/*.json")):
        where = str(path)
        name = _POINT.fullmatch(path.name)
        if not name:
            raise SourceError(f"{where}: not a point file name (want bs<batch>+steps<steps>.json)")
        gpu_folder, org, model_name = path.parts[-4:-1]
        model = f"{org}/{model_name}"
        entry = read_json(path)
        if not isinstance(entry, dict):
            raise SourceError(f"{where}: expected one JSON object per point")
        upstream_model = expect(entry, "Model", str, where)
        gpu_name = expect(entry, "GPU", str, where)
        energy = float(expect(entry, "Energy/image (J)", (int, float), where))
        latency = float(expect(entry, "Batch latency (s)", (int, float), where))
        batch = expect(entry, "Batch size", int, where)
        steps = expect(entry, "Denoising steps", int, where)
        for what, in_file, in_path in (("model", upstream_model, model), ("batch size", batch, int(name[1])),
                                       ("steps", steps, int(name[2]))):
            if in_file != in_path:
                raise SourceError(f"{where}: the file says {what} {in_file!r}, its path says {in_path!r}")
        if gpu_folder.lower() not in gpu_name.lower():
            raise SourceError(f"{where}: the file says GPU {gpu_name!r}, its folder says {gpu_folder!r}")
        if model not in settings:
            settings[model] = _pipeline_settings(folder, model)
        precision, revision = settings[model]
        points.append(UpstreamPoint(
            where=where, upstream_model=model, gpu_name=gpu_name,
            resolution=_resolution(models, model, models_path, where), steps=steps, precision=precision,
            batch=batch,
            energy_per_image_j=energy, batch_time_s=latency, revision=revision))
    return points
