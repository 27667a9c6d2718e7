"""Predict the energy of one image or video: the Python API, and what ``diffusion-energy predict`` runs.

    >>> from diffusion_energy import predict_energy
    >>> answer = predict_energy("sd35-medium", resolution=1024, steps=28, gpu="h100", batch=4)
    >>> answer.energy_j, (answer.low_j, answer.high_j), answer.law, answer.data, answer.laws_file

The laws that answer are ``results/laws/laws.json`` (``modalities.json`` for a
video model) where the working directory holds a workflow's results, else the
copies shipped with the package (``package_data``), so ``predict`` answers right
after ``pip install``; the answer names the file. ``laws=`` / ``video_laws=``
(``--laws`` / ``--video-laws``) choose another file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import package_data
from .errors import UsageError

if TYPE_CHECKING:
    from .laws.predict import EnergyPrediction
    from .laws.predict_video import VideoPrediction
    from .sources.gpu_datasheets import Datasheet

#: Where the workflow writes the laws (relative to the working directory).
DEFAULT_LAWS = "results/laws/laws.json"
DEFAULT_VIDEO_LAWS = "results/laws/modalities.json"


@dataclass(frozen=True)
class PredictedEnergy:
    """The energy of one image or video (``per``) and what the answer rests on.

    ``energy_j`` is the median GPU energy per image or per video (raw whole-GPU
    energy, or idle-subtracted with ``energy="dynamic"``), ``low_j`` and
    ``high_j`` its prediction interval at ``level`` (0.90: nine answers in ten
    fall inside). ``law`` names the law that answered and why it was chosen,
    ``interval`` how the interval was made, ``data`` the measured points it was
    fitted on, ``source`` the software stack the answer speaks for and
    ``laws_file`` the laws file that answered. ``notes`` say where the point lies
    outside the fitted data (extrapolation). ``text`` is the command line's
    description; ``as_dict()`` adds the derived figures (Wh, per frame, emissions).
    """

    model: str
    gpu: str
    per: str
    energy_j: float
    low_j: float
    high_j: float
    level: float
    law: str
    interval: str
    data: str
    source: str
    laws_file: str
    precision: str
    resolution: int
    steps: int
    batch: int
    cfg: bool
    frames: int
    flops: float
    notes: tuple[str, ...]
    text: str
    details: Mapping[str, Any] = dataclasses.field(repr=False, compare=False, hash=False)

    @property
    def energy_wh(self) -> float:
        return self.energy_j / 3600.0

    def as_dict(self) -> dict[str, Any]:
        """Everything the command line's ``--json`` prints."""
        return dict(self.details)


def laws_file(asked: str | Path | None, video: bool) -> tuple[Path, str]:
    """(the laws file to read, how the answer names it): the one asked for, else the workflow's in the
    working directory, else the one shipped with the package."""
    if asked is not None:
        return Path(asked), str(asked)
    default = Path(DEFAULT_VIDEO_LAWS if video else DEFAULT_LAWS)
    if default.is_file():
        return default, f"{default} (this folder's workflow results)"
    shipped = package_data.path(package_data.VIDEO_LAWS if video else package_data.LAWS)
    if shipped.is_file():
        return shipped, f"{shipped} (shipped with the package; no {default} in this folder)"
    from .laws.analysis_io import NoLawError

    raise NoLawError(f"no fitted law at {default} and none shipped with the package: run `snakemake "
                     f"{default}` (or `diffusion-energy {'modalities' if video else 'fit'}`) first")


def answer(model: str, *, steps: int, resolution: int | None = None, frames: int | None = None,
           fps: float | None = None, precision: str = "default", batch: int = 1, gpu: str | None = None,
           gpu_datasheet: Datasheet | str | None = None, cfg: bool | None = None, energy: str = "raw",
           law: str = "auto", source: str | None = None, grid_intensity: float | None = None,
           images: int = 1, laws: str | Path | None = None, video_laws: str | Path | None = None
           ) -> EnergyPrediction | VideoPrediction:
    """The full answer (``laws.predict.EnergyPrediction``, or ``VideoPrediction`` for a video model)."""
    from .laws import analysis_io, predict
    from .sources import gpu_datasheets

    spec, from_path = predict.resolve_model(model)
    sheet = gpu_datasheets.parse_datasheet(gpu_datasheet) if isinstance(gpu_datasheet, str) else gpu_datasheet
    if spec.video is not None or frames not in (None, 1) or fps is not None:
        from .laws import predict_video

        # A video model: the joint image + video model (laws across modalities) answers, per video.
        path, named = laws_file(video_laws, video=True)
        if video_laws is not None and not path.is_file():
            raise analysis_io.NoLawError(f"no image + video model at {path}: run `snakemake "
                                         f"{DEFAULT_VIDEO_LAWS}` (or `diffusion-energy modalities`) first")
        video = predict_video.predict_video(
            analysis_io.read_laws(path), spec, resolution=resolution, frames=frames, fps=fps, steps=steps,
            precision=precision, gpu=gpu, cfg=cfg, batch=batch, energy=energy, law=law,
            from_path=from_path, datasheet=sheet, source=source, grid_intensity=grid_intensity, images=images)
        return dataclasses.replace(video, energy=dataclasses.replace(video.energy, laws_file=named))
    if resolution is None:
        raise UsageError(f"--resolution is required for image model {spec.name!r}")
    path, named = laws_file(laws, video=False)
    image = predict.predict_energy(
        analysis_io.read_laws(path), spec, resolution=resolution, steps=steps, precision=precision, gpu=gpu,
        cfg=cfg, batch=batch, energy=energy, law=law, from_path=from_path, datasheet=sheet, source=source,
        grid_intensity=grid_intensity, images=images)
    return dataclasses.replace(image, laws_file=named)


def predict_energy(model: str, *, steps: int, resolution: int | None = None, frames: int | None = None,
                   fps: float | None = None, precision: str = "default", batch: int = 1,
                   gpu: str | None = None, gpu_datasheet: Datasheet | str | None = None,
                   cfg: bool | None = None, energy: str = "raw", law: str = "auto", source: str | None = None,
                   grid_intensity: float | None = None, images: int = 1, laws: str | Path | None = None,
                   video_laws: str | Path | None = None) -> PredictedEnergy:
    """The energy of one image (or one video, for a text-to-video model) with its prediction interval.

    ``model`` is a zoo name (``sd35-medium``) or the path of an architecture file;
    ``resolution`` the square image's side in px (a video's short side; default:
    the model's video); ``steps`` the denoising steps; ``gpu`` a GPU kind in the
    laws (``h100``), or any name with ``gpu_datasheet`` (``Datasheet`` or
    ``"half_tflop_s=...,fp32_tflop_s=...,bandwidth_gb_s=...,power_limit_w=..."``).
    The other arguments are those of ``diffusion-energy predict``. Bad input raises
    an error whose message names what to fix (``errors.UserError`` and kin).
    """
    from .laws import analysis_io
    from .laws.predict_video import VideoPrediction

    full = answer(model, steps=steps, resolution=resolution, frames=frames, fps=fps, precision=precision,
                  batch=batch, gpu=gpu, gpu_datasheet=gpu_datasheet, cfg=cfg, energy=energy, law=law,
                  source=source, grid_intensity=grid_intensity, images=images, laws=laws,
                  video_laws=video_laws)
    video = isinstance(full, VideoPrediction)
    e = full.energy if isinstance(full, VideoPrediction) else full
    return PredictedEnergy(
        model=e.model, gpu=e.gpu, per="video" if video else "image", energy_j=e.energy_j, low_j=e.low_j,
        high_j=e.high_j, level=e.level, law=e.law, interval=e.interval, data=e.data, source=e.source,
        laws_file=e.laws_file, precision=e.precision, resolution=e.resolution, steps=e.steps, batch=e.batch,
        cfg=e.cfg, frames=full.frames if video else 1, flops=e.flops, notes=tuple(e.notes),
        text=full.describe(), details=analysis_io._clean(full.to_dict()))
