"""Predict the energy of one image or video: the Python API, and what ``diffusion-energy predict`` runs.

    >>> from diffusion_energy import predict_energy
    >>> answer = predict_energy("sd35-medium", resolution=1024, steps=28, gpu="h100", batch=4)
    >>> answer.energy_j, (answer.low_j, answer.high_j), answer.law, answer.data, answer.laws_file

The laws that answer are ``results/laws/laws.json`` (``modalities.json`` for a
video model, and ``parallel.json`` on several GPUs) where the working directory
holds a workflow's results, else the copies shipped with the package
(``package_data``), so ``predict`` answers right after ``pip install``; the answer
names the file. ``laws=`` / ``video_laws=`` / ``parallel_laws=`` (``--laws`` /
``--video-laws`` / ``--parallel-laws``) choose another file.

Every answer speaks for one software stack (``stack=``, ``sources.stacks``):
``diffusers`` on one GPU and ``xdit`` on several unless asked, the same for
every model on every GPU kind.
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
DEFAULT_PARALLEL_LAWS = "results/laws/parallel.json"
#: Which laws answer what: (the workflow's file, the shipped copy, the command that writes it).
_LAWS = {"image": (DEFAULT_LAWS, package_data.LAWS, "fit"),
         "video": (DEFAULT_VIDEO_LAWS, package_data.VIDEO_LAWS, "modalities"),
         "parallel": (DEFAULT_PARALLEL_LAWS, package_data.PARALLEL_LAWS, "parallel")}


@dataclass(frozen=True)
class PredictedEnergy:
    """The energy of one image or video (``per``) and what the answer rests on.

    ``energy_j`` is the median GPU energy per image or per video (raw whole-GPU
    energy, or idle-subtracted with ``energy="dynamic"``), ``low_j`` and
    ``high_j`` its prediction interval at ``level`` (0.90: nine answers in ten
    fall inside), summed over the ``num_gpus`` GPUs one output ran on. ``law``
    names the law that answered and why it was chosen, ``interval`` how the
    interval was made, ``data`` the measured points it was fitted on, ``stack``
    the software stack the answer speaks for (``source``: the data source whose
    constants answered) and ``laws_file`` the laws file that answered. ``notes`` say where the point lies
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
    stack: str
    num_gpus: int
    details: Mapping[str, Any] = dataclasses.field(repr=False, compare=False, hash=False)

    @property
    def energy_wh(self) -> float:
        return self.energy_j / 3600.0

    def as_dict(self) -> dict[str, Any]:
        """Everything the command line's ``--json`` prints."""
        return dict(self.details)


def laws_file(asked: str | Path | None, which: str) -> tuple[Path, str]:
    """(the laws file to read, how the answer names it) for ``which`` laws (image, video, parallel): the
    one asked for, else the workflow's in the working directory, else the one shipped with the package."""
    default_name, shipped_name, command = _LAWS[which]
    if asked is not None:
        path = Path(asked)
        if not path.is_file():
            from .laws.analysis_io import NoLawError

            raise NoLawError(f"no fitted law at {path} (the {which} laws): run `snakemake {default_name}` "
                             f"(or `diffusion-energy {command}`) first")
        return path, str(asked)
    default = Path(default_name)
    if default.is_file():
        return default, f"{default} (this folder's workflow results)"
    shipped = package_data.path(shipped_name)
    if shipped.is_file():
        return shipped, f"{shipped} (shipped with the package; no {default} in this folder)"
    from .laws.analysis_io import NoLawError

    raise NoLawError(f"no fitted law at {default} and none shipped with the package: run `snakemake "
                     f"{default}` (or `diffusion-energy {command}`) first")


def answer(model: str, *, steps: int, resolution: int | None = None, frames: int | None = None,
           fps: float | None = None, precision: str = "default", batch: int = 1, gpu: str | None = None,
           gpu_datasheet: Datasheet | str | None = None, cfg: bool | None = None, energy: str = "raw",
           law: str = "auto", source: str | None = None, grid_intensity: float | None = None,
           images: int = 1, laws: str | Path | None = None, video_laws: str | Path | None = None,
           stack: str | None = None, gpus: int = 1, ulysses_degree: int | None = None,
           ring_degree: int | None = None, parallel_laws: str | Path | None = None
           ) -> EnergyPrediction | VideoPrediction:
    """The full answer (``laws.predict.EnergyPrediction``, or ``VideoPrediction`` for a video model)."""
    from .laws import analysis_io, parallelism, predict, predict_parallel
    from .sources import gpu_datasheets, stacks

    spec, from_path = predict.resolve_model(model)
    sheet = gpu_datasheets.parse_datasheet(gpu_datasheet) if isinstance(gpu_datasheet, str) else gpu_datasheet
    try:
        ulysses, ring = parallelism.degrees(gpus, ulysses_degree, ring_degree)
    except parallelism.ParallelError as exc:
        raise UsageError(str(exc)) from None
    if source is None:
        stack = stacks.get(stack, gpus).name
    elif stack is not None:
        raise UsageError("--stack and --source conflict: a stack is answered with one of its sources; "
                         "give one")
    elif gpus > 1:
        raise UsageError("--source does not apply on several GPUs: the multi-GPU law speaks for the xdit "
                         "stack (--stack xdit)")
    several = predict_parallel.SeveralGpus(gpus, ulysses, ring, parallelism.read_laws(
        laws_file(parallel_laws, "parallel")[0])) if gpus > 1 else None
    if spec.video is not None or frames not in (None, 1) or fps is not None:
        from .laws import predict_video

        # A video model: the joint image + video model (laws across modalities) answers, per video.
        path, named = laws_file(video_laws, "video")
        payload = analysis_io.read_laws(path)
        video = predict_video.predict_video(
            payload, spec, resolution=resolution, frames=frames, fps=fps, steps=steps,
            precision=precision, gpu=gpu, cfg=cfg, batch=batch, energy=energy, law=law,
            from_path=from_path, datasheet=sheet, source=source, grid_intensity=grid_intensity, images=images,
            stack=stack, several=several)
        return dataclasses.replace(video, energy=dataclasses.replace(video.energy, laws_file=named))
    if resolution is None:
        raise UsageError(f"--resolution is required for image model {spec.name!r}")
    path, named = laws_file(laws, "image")
    payload = analysis_io.read_laws(path)
    image = predict.predict_energy(
        payload, spec, resolution=resolution, steps=steps, precision=precision, gpu=gpu,
        cfg=cfg, batch=batch, energy=energy, law=law, from_path=from_path, datasheet=sheet, source=source,
        grid_intensity=grid_intensity, images=images, stack=stack, several=several)
    return dataclasses.replace(image, laws_file=named)


def predict_energy(model: str, *, steps: int, resolution: int | None = None, frames: int | None = None,
                   fps: float | None = None, precision: str = "default", batch: int = 1,
                   gpu: str | None = None, gpu_datasheet: Datasheet | str | None = None,
                   cfg: bool | None = None, energy: str = "raw", law: str = "auto", source: str | None = None,
                   grid_intensity: float | None = None, images: int = 1, laws: str | Path | None = None,
                   video_laws: str | Path | None = None, stack: str | None = None, gpus: int = 1,
                   ulysses_degree: int | None = None, ring_degree: int | None = None,
                   parallel_laws: str | Path | None = None) -> PredictedEnergy:
    """The energy of one image (or one video, for a text-to-video model) with its prediction interval.

    ``model`` is a zoo name (``sd35-medium``) or the path of an architecture file;
    ``resolution`` the square image's side in px (a video's short side; default:
    the model's video); ``steps`` the denoising steps; ``gpu`` a GPU kind in the
    laws (``h100``), or any name with ``gpu_datasheet`` (``Datasheet`` or
    ``"half_tflop_s=...,fp32_tflop_s=...,bandwidth_gb_s=...,power_limit_w=..."``);
    ``stack`` the software stack (``diffusers``, ``xdit``); ``gpus`` the GPUs one
    output runs on, split ``ulysses_degree`` x ``ring_degree`` (default: Ulysses
    over all of them). The other arguments are those of ``diffusion-energy predict``. Bad input raises
    an error whose message names what to fix (``errors.UserError`` and kin).
    """
    from .laws import analysis_io
    from .laws.predict_video import VideoPrediction

    full = answer(model, steps=steps, resolution=resolution, frames=frames, fps=fps, precision=precision,
                  batch=batch, gpu=gpu, gpu_datasheet=gpu_datasheet, cfg=cfg, energy=energy, law=law,
                  source=source, grid_intensity=grid_intensity, images=images, laws=laws,
                  video_laws=video_laws, stack=stack, gpus=gpus, ulysses_degree=ulysses_degree,
                  ring_degree=ring_degree, parallel_laws=parallel_laws)
    video = isinstance(full, VideoPrediction)
    e = full.energy if isinstance(full, VideoPrediction) else full
    return PredictedEnergy(
        model=e.model, gpu=e.gpu, per="video" if video else "image", energy_j=e.energy_j, low_j=e.low_j,
        high_j=e.high_j, level=e.level, law=e.law, interval=e.interval, data=e.data, source=e.source,
        laws_file=e.laws_file, precision=e.precision, resolution=e.resolution, steps=e.steps, batch=e.batch,
        cfg=e.cfg, frames=full.frames if video else 1, flops=e.flops, notes=tuple(e.notes),
        text=full.describe(), stack=e.stack, num_gpus=e.num_gpus, details=analysis_io._clean(full.to_dict()))
