"""Energy of one video for a text-to-video architecture, at any frame count, from the joint model.

A video model is answered by the model fitted on image and video points together
(``laws.modalities.joint_laws``, ``results/laws/modalities.json``): the law the
choice (``laws.choice``) picks on held-out video architectures, its interval
calibrated on those held-out errors. The FLOPs, kernels and bytes of the
asked video (its frames, its short side as resolution, the model's aspect ratio)
are the workflow's counts where shipped, else counted on the meta device as the
workflow counts them (``counting.lookup``); the answer is per
video, and per frame and per second of video (at ``fps``) derived from it.

``fps`` changes no computation (it is the rate the frames are played at), so it
only turns energy per video into energy per second of video.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..counting import lookup
from ..errors import UsageError
from ..models import zoo
from ..sources import dataset
from . import predict, roofline
from .analysis_io import NoLawError
from .crossval import ALL
from .predict import CountedPoint, EnergyPrediction


@dataclass(frozen=True)
class VideoPrediction:
    """A prediction per video (``energy``'s J are per video), with the video it is for."""

    energy: EnergyPrediction
    frames: int
    fps: float
    height: int
    width: int

    @property
    def seconds(self) -> float:
        """Length of the video when played at ``fps``, s."""
        return self.frames / self.fps

    def per_frame(self, joules: float) -> float:
        return joules / self.frames

    def per_second(self, joules: float) -> float:
        return joules / self.seconds

    def to_dict(self) -> dict[str, Any]:
        e = self.energy
        d = e.to_dict()
        d.update(frames=self.frames, fps=self.fps, height=self.height, width=self.width,
                 video_seconds=self.seconds, unit="video", energy_per_frame_j=self.per_frame(e.energy_j),
                 low_per_frame_j=self.per_frame(e.low_j), high_per_frame_j=self.per_frame(e.high_j),
                 energy_per_video_second_j=self.per_second(e.energy_j), videos=e.images)
        return d

    def describe(self) -> str:
        e = self.energy
        pct = round(e.level * 100)
        kind = "dynamic (idle-subtracted)" if e.energy == "dynamic" else "GPU"
        lines = [
            f"{e.model}: {self.frames} frames of {self.width}x{self.height} px ({self.seconds:.3g} s at "
            f"{self.fps:g} fps), {e.steps} steps, {e.precision}, CFG {'on' if e.cfg else 'off'}, "
            f"batch {e.batch}, on {e.on}",
            f"  FLOPs per video: {e.flops / 1e15:,.4g} PFLOP",
            f"  {kind} energy: {e.energy_j:,.0f} J/video = {e.energy_wh:.4g} Wh/video",
            f"  {pct}% prediction interval: [{e.low_j:,.0f}, {e.high_j:,.0f}] J/video"
            f" = [{e.low_wh:.4g}, {e.high_wh:.4g}] Wh/video ({e.interval})",
            f"  per frame: {self.per_frame(e.energy_j):,.4g} J [{self.per_frame(e.low_j):,.4g}, "
            f"{self.per_frame(e.high_j):,.4g}]; per second of video: {self.per_second(e.energy_j):,.4g} J",
        ]
        if e.grid_intensity_g_per_kwh is not None:
            lines.append(f"  emissions at {e.grid_intensity_g_per_kwh:g} gCO2e/kWh: "
                         f"{e.grams(e.energy_j):.3g} gCO2e/video "
                         f"[{e.grams(e.low_j):.3g}, {e.grams(e.high_j):.3g}]")
        if e.images > 1:
            total, low, high = (j * e.images / predict.J_PER_KWH for j in (e.energy_j, e.low_j, e.high_j))
            lines.append(f"  {e.images:,} videos: {total:.4g} kWh [{low:.4g}, {high:.4g}]")
        lines += [f"  model: {e.law}", f"  data: {e.data}", f"  {e.stack_line()}"]
        lines += [f"  laws: {e.laws_file}"] if e.laws_file else []
        lines += [f"  note: {n}" for n in e.notes]
        return "\n".join(lines)


def at_frames(spec: zoo.ModelSpec, frames: int) -> zoo.ModelSpec:
    """The architecture making ``frames``-frame videos: the same model whose default video has them."""
    if spec.video is None:
        raise UsageError(f"model {spec.name!r} makes images, not videos: --frames does not apply")
    try:
        spec.check_frames(frames)
    except zoo.ZooError as exc:
        raise UsageError(f"--frames: {exc}") from None
    return dataclasses.replace(spec, video=dataclasses.replace(spec.video, frames=frames))


def count_video(spec: zoo.ModelSpec, gpu: str, precision: str, resolution: int, steps: int, cfg: bool,
                batch: int, frames: int) -> CountedPoint:
    """FLOPs, kernels and bytes of one pipeline call of ``batch`` videos of ``frames`` frames, per video
    as ``dataset.per_image_costs`` defines it for measured points (a batch above 2 derived from 1 and 2,
    as the workflow counts)."""
    at = at_frames(spec, frames)
    table, ops = lookup.count_batch(at, resolution, cfg, batch)
    keys = pd.DataFrame([{"gpu": gpu, "model": at.name, "architecture": at.architecture,
                          "precision": precision, "resolution": resolution, "steps": steps, "cfg": bool(cfg),
                          "batch": batch, "frames": frames,
                          "denoiser_evaluations": at.denoiser_evaluations(steps)}])
    feats = dataset.per_image_costs(keys, table)
    if feats.empty:
        raise ValueError(f"no FLOPs counted for {at.name} at {resolution} px, {frames} frames")
    for col in dataset.ENERGY_COLUMNS:
        if col not in feats:
            feats[col] = np.nan
    feats = feats[list(dataset.ENERGY_COLUMNS)].assign(status="ok", point_id=0)
    return CountedPoint(feats, roofline.inputs_from_ops(feats, ops, table), table, ops)


#: The joint model's target in ``modalities.json`` (``modalities.TARGET``: energy per output).
TARGET = "image"


def _check_gpu(payload: dict[str, Any], spec: zoo.ModelSpec, gpu: str | None, by_datasheet: bool) -> None:
    """Refuse, before any count, a GPU kind the joint model cannot speak for: one nobody measured (it
    has no form for a kind known only by its datasheet)."""
    measured = list(payload.get("gpus", []))
    pooled = payload.get("pooled", {}).get(TARGET, {})
    if payload.get("status") != "ok" or pooled.get("selected_unmeasured_gpu"):
        return
    if by_datasheet or (gpu is not None and gpu not in measured):
        videos = sorted(k for k in payload.get("ranges", {}) if k != ALL)
        how = "given by its datasheet" if by_datasheet else "not in the fitted data"
        raise NoLawError(f"{spec.name} is a video model, and GPU kind {gpu or 'custom'!r} is {how}: videos "
                         "are answered only on the GPU kinds the joint image + video model was fitted on "
                         f"({', '.join(measured)}); it has no form for a GPU kind nobody measured (videos "
                         f"were measured on {', '.join(videos) or 'no kind'} only, too few kinds to check "
                         "one held out)")


def predict_video(payload: dict[str, Any], spec: zoo.ModelSpec, *, resolution: int | None = None,
                  frames: int | None = None, fps: float | None = None, steps: int,
                  source: str | None = None, counted: CountedPoint | None = None,
                  **options: Any) -> VideoPrediction:
    """Predict the energy of one video (``options``: those of ``predict.predict_energy``; ``law``
    "architecture" answers with the joint model too, and says so: no video model has a law of its own)."""
    if spec.video is None:
        raise UsageError(f"model {spec.name!r} makes images: predict it without --frames/--fps")
    notes: list[str] = []
    if options.pop("law", "pooled") == "architecture":
        notes.append("--law architecture does not apply to video models: no video model has a law of its "
                     "own (this workflow measures no videos), so the joint image + video model answers")
    predict.check_counts(steps=steps, batch=options.get("batch", 1), images=options.get("images", 1))
    _check_gpu(payload, spec, options.get("gpu"), options.get("datasheet") is not None)
    frames = spec.video.frames if frames is None else frames
    resolution = spec.video.height if resolution is None else resolution
    fps = float(spec.video.fps if fps is None else fps)
    if not (math.isfinite(fps) and fps > 0):
        raise UsageError(f"--fps must be a positive number of frames per second, not {fps}")
    at = at_frames(spec, frames)
    try:
        height, width = at.frame_size(resolution)
        at.check_resolution(resolution)
    except zoo.ZooError as exc:
        raise UsageError(f"--resolution: {exc}") from None
    if options.get("precision") == predict.TF32:
        raise NoLawError("--precision tf32 is carried from half precision by a roofline model, and the "
                         "joint image + video model that answers videos holds none: ask for an image model")
    if counted is None:
        precision = spec.precision(options.get("precision", "default"))
        counted = count_video(spec, options.get("gpu") or "", precision, resolution, steps,
                              spec.effective_cfg(options.get("cfg")), options.get("batch", 1), frames)
    answer = predict.predict_energy(payload, at, resolution=resolution, steps=steps, counted=counted,
                                    source=source, law="pooled", **options)
    answer = dataclasses.replace(answer, notes=(*answer.notes, *notes))
    ranges = payload.get("ranges", {})
    fitted = (ranges.get(answer.gpu) or ranges.get(ALL) or {}).get("frames")
    if fitted and not fitted[0] <= frames <= fitted[1]:
        note = (f"{frames} frames is outside the fitted range [{fitted[0]:g}, {fitted[1]:g}] frames: "
                "extrapolation")
        answer = dataclasses.replace(answer, notes=(*answer.notes, note))
    return VideoPrediction(answer, frames, fps, height, width)
