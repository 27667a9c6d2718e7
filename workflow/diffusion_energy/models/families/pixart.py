"""PixArt-Σ: a T5 encoder and a cross-attention DiT (adaLN-single) over 2x2 latent patches."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec
from .base import Call, Device, Family, Modules, Tensor, mid_timestep, noisy_latents, random_ids, register
from .sd import width


@register
class PixArt(Family):
    """PixArt-Σ (``PixArtSigmaPipeline``): T5 states and their attention mask, batched CFG.

    The transformer attends over image tokens only; the text enters through
    cross-attention (its keys and values), so a forward's sequence is the image
    tokens, not image + text as in an MMDiT.
    """

    name = "pixart"

    def text_inputs(self, spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device
                    ) -> dict[str, Any]:
        # The pipeline also passes the tokenizer's attention mask. T5 skips an all-ones mask
        # after a host-side check (impossible on meta), and a mask with padding zeros only
        # changes the additive position bias, not the work: counting runs without it.
        return {"input_ids": random_ids(comp, n_prompts, device)}

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        comp = spec.component("text_encoder")
        kwargs = self.text_inputs(spec, comp, n_prompts, device)
        mask = torch.ones_like(kwargs["input_ids"])
        out = modules[comp.name](**kwargs, attention_mask=mask)
        return {"prompt_embeds": out.last_hidden_state, "prompt_attention_mask": mask}

    def pipeline_call_kwargs(self, spec: ModelSpec, positive: Mapping[str, Tensor],
                             negative: Mapping[str, Tensor] | None, cfg: bool) -> dict[str, Any]:
        kwargs = super().pipeline_call_kwargs(spec, positive, negative, cfg)
        # negative_prompt defaults to "", which the pipeline refuses beside negative_prompt_embeds.
        # Resolution binning maps a square size to itself on the 1024 px model but needs a
        # sample_size it has a bin table for; the images measured are square.
        kwargs.update(negative_prompt=None, use_resolution_binning=False)
        return kwargs

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype) -> dict[str, Any]:
        cfg = spec.denoiser.config
        b, n_text = call_batch, int(spec.denoiser.text_tokens or 0)
        return {
            "hidden_states": noisy_latents(spec, resolution, b, device, dtype),
            "encoder_hidden_states": torch.randn(b, n_text, cfg["caption_channels"], device=device,
                                                 dtype=dtype),
            "encoder_attention_mask": torch.ones(b, n_text, device=device, dtype=torch.long),
            "timestep": mid_timestep(b, device, dtype),
            # The pipeline always passes empty micro-conditions (Σ is trained without them).
            "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
        }

    def denoiser_call(self, spec: ModelSpec, resolution: int, cfg: bool, batch: int) -> Call:
        call = super().denoiser_call(spec, resolution, cfg, batch)
        img, _ = self.denoiser_tokens(spec, resolution)
        return dataclasses.replace(call, tokens=img)  # text is cross-attended, not in the sequence

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        te = spec.component("text_encoder")
        cfg, den = spec.denoiser.config, spec.denoiser.name
        return [
            (f"{te.name}.config.d_model", width(te), f"{den}.config.caption_channels",
             int(cfg["caption_channels"])),
            # the caption projection maps text to the inner width, which the cross-attention reads
            (f"{den}.config.num_attention_heads x attention_head_dim",
             int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"]),
             f"{den}.config.cross_attention_dim", int(cfg["cross_attention_dim"])),
        ]
