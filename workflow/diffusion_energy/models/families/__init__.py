"""Pipeline families: how each feeds its stages (one module per family, registered by name).

Callers use the functions below, which dispatch on ``spec.family``; a new family
is a module in this folder with a ``base.Family`` subclass decorated ``@register``
(every module here is imported, which registers its families).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from ..catalog import ZooError
from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec
from .base import REGISTRY, Call, Device, Family, Modules, Tensor, latent_side
from .video import VideoFamily

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REGISTRY", "Call", "Family", "VideoFamily", "family_of", "latent_side", "names"]


def names() -> tuple[str, ...]:
    """Every known family name."""
    return tuple(sorted(REGISTRY))


def family_of(spec: ModelSpec) -> Family:
    try:
        return REGISTRY[spec.family]
    except KeyError:
        raise ZooError(f"{spec.source or spec.name}: family {spec.family!r} unknown; "
                       f"allowed: {names()}") from None


def _frames(spec: ModelSpec, frames: int | None) -> dict[str, int]:
    """``frames`` as a keyword for a video family; none for an image family (after checking it is 1)."""
    frames = spec.default_frames if frames is None else frames
    spec.check_frames(frames)
    return {"frames": frames} if isinstance(family_of(spec), VideoFamily) else {}


def calls(spec: ModelSpec, resolution: int, cfg: bool, batch: int, frames: int | None = None) -> list[Call]:
    """Every call of one pipeline call making ``batch`` outputs of ``frames`` frames (None: the model's
    usual, 1 for an image model)."""
    return family_of(spec).calls(spec, resolution, cfg, batch, **_frames(spec, frames))


def size_kwargs(spec: ModelSpec, resolution: int, frames: int | None = None) -> dict[str, int]:
    """The pipeline call's size arguments: height and width, and num_frames for a video."""
    fam = family_of(spec)
    if isinstance(fam, VideoFamily):
        return fam.size_kwargs(spec, resolution, **_frames(spec, frames))
    _frames(spec, frames)
    return {"height": resolution, "width": resolution}


def output_keys(spec: ModelSpec, resolution: int, frames: int | None = None) -> dict[str, Any]:
    """What a measured row says of its output: frames, and a video's height, width and fps."""
    frames = spec.default_frames if frames is None else frames
    spec.check_frames(frames)
    if spec.video is None:
        return {"frames": frames}
    height, width = spec.frame_size(resolution)
    return {"frames": frames, "height": height, "width": width, "fps": float(spec.video.fps)}


def text_inputs(spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device) -> dict[str, Any]:
    return family_of(spec).text_inputs(spec, comp, n_prompts, device)


def encode_prompts(spec: ModelSpec, modules: Modules, n_prompts: int, device: Device) -> dict[str, Tensor]:
    return family_of(spec).encode_prompts(spec, modules, n_prompts, device)


def encode_negative_prompts(spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                            ) -> dict[str, Tensor]:
    return family_of(spec).encode_negative_prompts(spec, modules, n_prompts, device)


def pipeline_call_kwargs(spec: ModelSpec, positive: Mapping[str, Tensor],
                         negative: Mapping[str, Tensor] | None, cfg: bool) -> dict[str, Any]:
    return family_of(spec).pipeline_call_kwargs(spec, positive, negative, cfg)


def denoiser_inputs(spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                    dtype: torch.dtype, frames: int | None = None) -> dict[str, Any]:
    return family_of(spec).denoiser_inputs(spec, resolution, call_batch, device, dtype,
                                           **_frames(spec, frames))


def denoiser_tokens(spec: ModelSpec, resolution: int) -> tuple[int, int]:
    return family_of(spec).denoiser_tokens(spec, resolution)


def vae_latents(spec: ModelSpec, resolution: int, batch: int, device: Device, dtype: torch.dtype,
                frames: int | None = None) -> Tensor:
    return family_of(spec).vae_latents(spec, resolution, batch, device, dtype, **_frames(spec, frames))


def replayed_modules(spec: ModelSpec, comp: ComponentSpec) -> tuple[str, ...]:
    return family_of(spec).replayed_modules(spec, comp)


def vae_decode(spec: ModelSpec, module: torch.nn.Module, latents: Tensor) -> Any:
    return family_of(spec).vae_decode(module, latents)


def check(spec: ModelSpec) -> None:
    """Raise ``ZooError`` if the architecture's components do not fit together."""
    family_of(spec).check(spec)
