"""FLUX.1: CLIP (pooled) and T5, a hybrid MMDiT on packed 2x2 latent patches."""

from __future__ import annotations

from typing import Any

from ..lazy_torch import torch
from ..spec import ModelSpec
from .base import Device, DistilledGuidance, Family, Modules, Tensor, latent_side, register
from .sd import width


@register
class Flux(DistilledGuidance, Family):
    """FLUX.1-dev: guidance-distilled; true CFG (a second call per step) only when asked."""

    name = "flux"

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        clip, t5 = spec.component("text_encoder"), spec.component("text_encoder_2")
        t5_out = modules[t5.name](**self.text_inputs(spec, t5, n_prompts, device))
        clip_out = modules[clip.name](**self.text_inputs(spec, clip, n_prompts, device))
        return {"prompt_embeds": t5_out.last_hidden_state, "pooled_prompt_embeds": clip_out.pooler_output}

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype) -> dict[str, Any]:
        cfg = spec.denoiser.config
        grid = latent_side(spec, resolution) // spec.patch_size
        tokens, n_text, b = grid * grid, int(spec.denoiser.text_tokens or 0), call_batch
        kwargs = {
            "hidden_states": torch.randn(b, tokens, cfg["in_channels"], device=device, dtype=dtype),
            "encoder_hidden_states": torch.randn(b, n_text, cfg["joint_attention_dim"], device=device,
                                                 dtype=dtype),
            "pooled_projections": torch.randn(b, cfg["pooled_projection_dim"], device=device, dtype=dtype),
            "timestep": torch.full((b,), 0.5, device=device, dtype=dtype),
            "img_ids": torch.zeros(tokens, 3, device=device, dtype=dtype),
            "txt_ids": torch.zeros(n_text, 3, device=device, dtype=dtype),
        }
        if cfg.get("guidance_embeds", False):
            kwargs["guidance"] = torch.full((b,), 3.5, device=device, dtype=dtype)
        return kwargs

    def predicted_channels(self, spec: ModelSpec) -> int | None:
        cfg = spec.denoiser.config
        return int(cfg.get("out_channels") or cfg["in_channels"]) // spec.patch_size ** 2

    def input_channels(self, spec: ModelSpec) -> int | None:
        return int(spec.denoiser.config["in_channels"]) // spec.patch_size ** 2  # packed 2x2 latents

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        clip, t5 = spec.component("text_encoder"), spec.component("text_encoder_2")
        cfg, den = spec.denoiser.config, spec.denoiser.name
        return [
            (f"{t5.name} width", width(t5), f"{den}.config.joint_attention_dim",
             int(cfg["joint_attention_dim"])),
            (f"{clip.name} hidden width (pooled)", width(clip), f"{den}.config.pooled_projection_dim",
             int(cfg["pooled_projection_dim"])),
        ]
