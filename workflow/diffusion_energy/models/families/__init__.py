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

import torch

from ..zoo import ComponentSpec, ModelSpec, ZooError
from .base import REGISTRY, Call, Device, Family, Modules, Tensor, latent_side

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REGISTRY", "Call", "Family", "family_of", "latent_side", "names"]


def names() -> tuple[str, ...]:
    """Every known family name."""
    return tuple(sorted(REGISTRY))


def family_of(spec: ModelSpec) -> Family:
    try:
        return REGISTRY[spec.family]
    except KeyError:
        raise ZooError(f"{spec.source or spec.name}: family {spec.family!r} unknown; "
                       f"allowed: {names()}") from None


def calls(spec: ModelSpec, resolution: int, cfg: bool, batch: int) -> list[Call]:
    return family_of(spec).calls(spec, resolution, cfg, batch)


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
                    dtype: torch.dtype) -> dict[str, Any]:
    return family_of(spec).denoiser_inputs(spec, resolution, call_batch, device, dtype)


def denoiser_tokens(spec: ModelSpec, resolution: int) -> tuple[int, int]:
    return family_of(spec).denoiser_tokens(spec, resolution)


def vae_latents(spec: ModelSpec, resolution: int, batch: int, device: Device, dtype: torch.dtype) -> Tensor:
    return family_of(spec).vae_latents(spec, resolution, batch, device, dtype)


def vae_decode(spec: ModelSpec, module: torch.nn.Module, latents: Tensor) -> Any:
    return family_of(spec).vae_decode(module, latents)


def check(spec: ModelSpec) -> None:
    """Raise ``ZooError`` if the architecture's components do not fit together."""
    family_of(spec).check(spec)
