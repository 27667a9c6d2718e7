"""Qwen-Image: a Qwen2.5-VL text encoder and a 60-block MMDiT with sequential true CFG."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec
from .base import Device, Family, Modules, Tensor, latent_channels, latent_side, random_ids, register
from .sd import width

#: Qwen-Image drops the first 34 tokens of its chat template from the embeddings.
QWEN_TEMPLATE_DROP = 34


@register
class QwenImage(Family):
    name = "qwen"

    def text_inputs(self, spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device
                    ) -> dict[str, Any]:
        # An all-ones attention mask (one prompt, no padding) is the same computation
        # as none, and the mask check would need a host sync (impossible on meta).
        return {"input_ids": random_ids(comp, n_prompts, device), "output_hidden_states": True}

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        comp = spec.component("text_encoder")
        out = modules[comp.name](**self.text_inputs(spec, comp, n_prompts, device))
        states = out.hidden_states[-1][:, QWEN_TEMPLATE_DROP:]
        mask = torch.ones(states.shape[:2], dtype=torch.long, device=states.device)
        return {"prompt_embeds": states, "prompt_embeds_mask": mask}

    def pipeline_call_kwargs(self, spec: ModelSpec, positive: Mapping[str, Tensor],
                             negative: Mapping[str, Tensor] | None, cfg: bool) -> dict[str, Any]:
        # Sequential true CFG: true_cfg_scale > 1 with negative embeddings switches the second call on.
        kwargs = super().pipeline_call_kwargs(spec, positive, negative, cfg)
        kwargs.pop("guidance_scale")
        kwargs["true_cfg_scale"] = 4.0 if cfg else 1.0
        return kwargs

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype) -> dict[str, Any]:
        cfg = spec.denoiser.config
        grid = latent_side(spec, resolution) // spec.patch_size
        tokens, n_text, b = grid * grid, int(spec.denoiser.text_tokens or 0), call_batch
        return {
            "hidden_states": torch.randn(b, tokens, cfg["in_channels"], device=device, dtype=dtype),
            "encoder_hidden_states": torch.randn(b, n_text, cfg["joint_attention_dim"], device=device,
                                                 dtype=dtype),
            "encoder_hidden_states_mask": torch.ones(b, n_text, device=device, dtype=torch.long),
            "timestep": torch.full((b,), 0.5, device=device, dtype=dtype),
            "img_shapes": [[(1, grid, grid)]] * b,
        }

    def vae_latents(self, spec: ModelSpec, resolution: int, batch: int, device: Device,
                    dtype: torch.dtype) -> Tensor:
        side = latent_side(spec, resolution)  # a video VAE: a one-frame time axis
        return torch.randn(batch, latent_channels(spec), 1, side, side, device=device, dtype=dtype)

    def predicted_channels(self, spec: ModelSpec) -> int | None:
        cfg = spec.denoiser.config
        return int(cfg["in_channels"]) // spec.patch_size ** 2

    def input_channels(self, spec: ModelSpec) -> int | None:
        return int(spec.denoiser.config["in_channels"]) // spec.patch_size ** 2  # packed 2x2 latents

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        te = spec.component("text_encoder")
        return [(f"{te.name} hidden width", width(te), f"{spec.denoiser.name}.config.joint_attention_dim",
                 int(spec.denoiser.config["joint_attention_dim"]))]
