"""Wan 2.1 text-to-video: a UMT5-XXL encoder, a cross-attention DiT over 3D patches, the Wan causal VAE.

``WanPipeline`` encodes the prompt with UMT5 padded to 512 tokens and calls the
transformer twice per step with CFG (prompt, then negative prompt: sequential).
The transformer patches latents 1 x 2 x 2 (no temporal patching) and applies its
3D rotary embedding itself. ``AutoencoderKLWan`` decodes one latent frame at a time
with a causal feature cache.
"""

from __future__ import annotations

from typing import Any

from ..lazy_torch import torch
from ..spec import ModelSpec
from .base import Device, mid_timestep, register
from .video import VideoFamily, text_width


@register
class Wan(VideoFamily):
    """Wan 2.1 T2V (``WanTransformer3DModel``, ``AutoencoderKLWan``)."""

    name = "wan"

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype, frames: int | None = None) -> dict[str, Any]:
        frames = spec.default_frames if frames is None else frames
        cfg, b = spec.denoiser.config, call_batch
        return {
            "hidden_states": self.noisy_video(spec, resolution, frames, b, device, dtype),
            "timestep": mid_timestep(b, device, dtype),
            "encoder_hidden_states": torch.randn(b, int(spec.denoiser.text_tokens or 0), cfg["text_dim"],
                                                 device=device, dtype=dtype),
        }

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        te, den = spec.component("text_encoder"), spec.denoiser
        return [(f"{te.name} width", text_width(te), f"{den.name}.config.text_dim",
                 int(den.config["text_dim"])),
                (f"{den.name}.text_tokens", int(den.text_tokens or 0), f"{te.name}.seq_len",
                 int(te.seq_len or 0))]
