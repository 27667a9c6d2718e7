"""What an architecture file says: the specs of a model, its components and its default video.

Plain frozen dataclasses, below everything that reads or builds them: the zoo
loads and checks them (``zoo``), the pipeline families describe their calls
from them (``families``), counting and measurement build their components.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import schedulers
from .catalog import ZooError

#: Latent positions per axis (latent frames; denoiser patches down a frame's side) a video model makes:
#: the range of Wan 2.1's 3D rotary table (diffusers' ``WanTransformer3DModel``, ``rope_max_seq_len``
#: 1024), the widest of the zoo's video denoisers (CogVideoX and HunyuanVideo were trained on 13 and
#: 33 latent frames). A larger video cannot be made by Wan, and is counted for no other (FLOPs over a
#: million frames would take minutes to count and answer nothing a pipeline runs).
MAX_VIDEO_POSITIONS = 1024

#: Precisions a model runs in (``zoo.PRECISIONS`` maps them to torch dtypes).
PRECISION_NAMES = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class ComponentSpec:
    """One pipeline component (a text encoder, the denoiser or the VAE)."""

    name: str
    stage: str
    class_path: str
    config: Mapping[str, Any]
    config_class: str | None = None
    #: Tokens a text encoder reads per prompt (tokenizers pad to this length).
    seq_len: int | None = None
    #: Text tokens the denoiser attends to (its share of the joint sequence).
    text_tokens: int | None = None


@dataclass(frozen=True)
class VideoSpec:
    """What a text-to-video model makes by default (the ``video:`` block of its file).

    ``frames``, ``height`` and ``width`` are the published default (how ML.ENERGY
    ran it); ``temporal_stride`` is the frames per latent frame of its causal 3D
    VAE (the first frame has a latent frame of its own), so a video has
    ``(frames - 1) / temporal_stride + 1`` latent frames.
    """

    frames: int
    fps: int
    height: int
    width: int
    temporal_stride: int

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.temporal_stride + 1


@dataclass(frozen=True)
class ModelSpec:
    """An architecture from the zoo: what to build and how the pipeline runs it."""

    name: str
    display_name: str
    family: str
    architecture: str
    pipeline: str
    default_precision: str
    cfg: bool
    cfg_mode: str
    guidance_scale: float
    latent_stride: int
    patch_size: int
    scheduler_class: str
    scheduler_config: Mapping[str, Any]
    components: tuple[ComponentSpec, ...]
    max_resolution: int | None = None
    weights: Path | None = None
    source: Path | None = None
    reference: str = ""
    test_only: bool = False
    #: Settings only the model's family reads (e.g. a prior's steps), from ``family_options:``.
    family_options: Mapping[str, Any] = field(default_factory=dict)
    #: A text-to-video model's default video (None: an image model, one frame).
    video: VideoSpec | None = None

    @property
    def default_frames(self) -> int:
        """Frames of the model's usual output: 1 for an image model."""
        return self.video.frames if self.video else 1

    def frame_size(self, resolution: int) -> tuple[int, int]:
        """(height, width) in px of an output at ``resolution``.

        An image is square. A video's resolution is its short side, as video sizes
        are named (480p, 720p); its width keeps the model's default aspect ratio,
        rounded to the resolution multiple (480 -> 480 x 832 for Wan 2.1).
        """
        if self.video is None:
            return resolution, resolution
        m = self.resolution_multiple
        return resolution, max(m, round(resolution * self.video.width / self.video.height / m) * m)

    def check_frames(self, frames: int) -> None:
        """Raise unless the pipeline makes outputs of this many frames."""
        if isinstance(frames, bool) or not isinstance(frames, int) or frames <= 0:
            raise ZooError(f"frames must be a positive integer, not {frames!r}")
        if self.video is None and frames != 1:
            raise ZooError(f"model {self.name!r} makes images: frames must be 1, not {frames}")
        if self.video and (frames - 1) % self.video.temporal_stride:
            raise ZooError(f"frames {frames} is not 1 + a multiple of {self.video.temporal_stride}, the "
                           f"temporal stride of the VAE of model {self.name!r} (e.g. {self.video.frames})")
        if self.video and self.video.latent_frames(frames) > MAX_VIDEO_POSITIONS:
            most = 1 + (MAX_VIDEO_POSITIONS - 1) * self.video.temporal_stride
            raise ZooError(f"frames {frames:,} is more than model {self.name!r} makes: at most {most:,} "
                           f"({MAX_VIDEO_POSITIONS:,} latent frames, the range of the widest positional "
                           "embedding of the zoo's video denoisers)")

    def network(self) -> str:
        """What makes two architecture files the same network whatever their names: the pipeline, how
        it runs its stages, and every component's class and config (but for its default sample size,
        the output size a checkpoint was tuned at). OpenJourney v4 is SD 1.5's network."""
        comps = [(c.name, c.class_path, {k: v for k, v in c.config.items() if k != "sample_size"})
                 for c in self.components]
        what = [self.family, self.pipeline, self.cfg_mode, self.latent_stride, self.patch_size, comps]
        return json.dumps(what, sort_keys=True, default=str)

    @property
    def resolution_multiple(self) -> int:
        """Pixels a side must be a multiple of (latent stride x patch size)."""
        return self.latent_stride * self.patch_size

    def component(self, name: str) -> ComponentSpec:
        for comp in self.components:
            if comp.name == name:
                return comp
        raise ZooError(f"model {self.name!r} has no component {name!r}")

    def stage_components(self, stage: str) -> list[ComponentSpec]:
        return [c for c in self.components if c.stage == stage]

    @property
    def denoiser(self) -> ComponentSpec:
        return self.stage_components("denoise")[0]

    @property
    def vae(self) -> ComponentSpec:
        return self.stage_components("vae")[0]

    @property
    def text_encoders(self) -> list[ComponentSpec]:
        return self.stage_components("text")

    def check_resolution(self, resolution: int) -> None:
        """Raise if the pipeline cannot make a square image of this size."""
        m = self.resolution_multiple
        if resolution <= 0 or resolution % m:
            raise ZooError(
                f"resolution {resolution} is not a positive multiple of {m} px, "
                f"the latent stride x patch size of model {self.name!r}"
            )
        if self.max_resolution and resolution > self.max_resolution:
            raise ZooError(
                f"resolution {resolution} exceeds {self.max_resolution} px, the largest "
                f"model {self.name!r} supports (positional embedding size)"
            )
        if self.video and max(self.frame_size(resolution)) > MAX_VIDEO_POSITIONS * m:
            height, width = self.frame_size(resolution)
            raise ZooError(f"resolution {resolution:,} makes {width:,} x {height:,} px frames; model "
                           f"{self.name!r} makes frames of at most {MAX_VIDEO_POSITIONS * m:,} px a side "
                           f"({MAX_VIDEO_POSITIONS:,} denoiser patches of {m} px, the range of the widest "
                           "positional embedding of the zoo's video denoisers)")

    def effective_cfg(self, cfg: bool | None) -> bool:
        return self.cfg if cfg is None else bool(cfg)

    def denoiser_calls_per_step(self, cfg: bool) -> int:
        """Denoiser forwards per step: two batch-1 calls for sequential CFG."""
        return 2 if cfg and self.cfg_mode == "sequential" else 1

    def denoiser_call_batch(self, batch: int, cfg: bool) -> int:
        """Batch of one denoiser forward: doubled when CFG is batched."""
        return 2 * batch if cfg and self.cfg_mode == "batch" else batch

    def denoiser_evaluations(self, steps: int) -> int:
        """Denoiser evaluations (timesteps the pipeline loops over) of one generation at ``steps`` steps.

        Not always ``steps``: PNDM's PLMS warm-up (``skip_prk_steps``, SD 1.5, Openjourney) repeats
        its first timestep, so ``set_timesteps(n)`` gives n + 1 timesteps for n >= 2 and a pipeline
        called with 25 steps runs the U-Net 26 times. Per-image FLOPs, kernels and bytes multiply a
        step's counts by this number, which is what the scheduler itself answers.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise ZooError(f"steps must be a positive integer, not {steps!r}")
        return schedulers.evaluations(self.scheduler_class, self.scheduler_config, steps,
                                      str(self.source or self.name))

    def precision(self, precision: str) -> str:
        """Resolve ``default`` to the model's usual precision; check the name."""
        resolved = self.default_precision if precision == "default" else precision
        if resolved not in PRECISION_NAMES:
            raise ZooError(
                f"unknown precision {precision!r}; allowed: default, {', '.join(PRECISION_NAMES)}"
            )
        return resolved
