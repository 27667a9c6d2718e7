"""Stable Diffusion 1.x/2.x and SDXL: CLIP text encoders and a cross-attention U-Net."""

from __future__ import annotations

from typing import Any

from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec
from .base import Call, Device, Family, Modules, Tensor, mid_timestep, noisy_latents, random_ids, register


def width(comp: ComponentSpec) -> int:
    """Hidden width of a text encoder's output (CLIP hidden_size, T5 d_model)."""
    cfg = comp.config.get("text_config", comp.config)
    return int(cfg.get("hidden_size", cfg.get("d_model", 0)))


def projection(comp: ComponentSpec) -> int:
    """Width of a CLIP text encoder's pooled, projected output."""
    return int(comp.config.get("projection_dim", width(comp)))


@register
class StableDiffusion(Family):
    """SD 1.5 / 2.1 and derivatives: one CLIP encoder's last hidden state."""

    name = "sd"

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        comp = spec.component("text_encoder")
        out = modules[comp.name](**self.text_inputs(spec, comp, n_prompts, device))
        return {"prompt_embeds": out.last_hidden_state}

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype) -> dict[str, Any]:
        cfg = spec.denoiser.config
        b = call_batch
        return {
            "sample": noisy_latents(spec, resolution, b, device, dtype),
            "timestep": mid_timestep(b, device, dtype),
            "encoder_hidden_states": torch.randn(b, int(spec.denoiser.text_tokens or 0),
                                                 cfg["cross_attention_dim"], device=device, dtype=dtype),
        }

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        te = spec.text_encoders[0]
        return [(f"{te.name} hidden width", width(te),
                 f"{spec.denoiser.name}.config.cross_attention_dim",
                 int(spec.denoiser.config["cross_attention_dim"]))]


@register
class StableDiffusionXL(StableDiffusion):
    """SDXL and derivatives: two CLIP encoders (penultimate states) and pooled text + time ids."""

    name = "sdxl"

    def text_inputs(self, spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device
                    ) -> dict[str, Any]:
        return {"input_ids": random_ids(comp, n_prompts, device), "output_hidden_states": True}

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        one, two = (modules[c.name](**self.text_inputs(spec, c, n_prompts, device))
                    for c in (spec.component("text_encoder"), spec.component("text_encoder_2")))
        return {
            "prompt_embeds": torch.cat([one.hidden_states[-2], two.hidden_states[-2]], dim=-1),
            "pooled_prompt_embeds": two.text_embeds,
        }

    def encode_negative_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                                ) -> dict[str, Tensor]:
        """Zeros: without a negative prompt the SDXL pipeline (``force_zeros_for_empty_prompt``,
        its default) uses zero embeddings and does not run the text encoders a second time."""
        one, two = spec.component("text_encoder"), spec.component("text_encoder_2")
        dtype = next(modules[two.name].parameters()).dtype
        return {
            "prompt_embeds": torch.zeros(n_prompts, int(two.seq_len or 0), width(one) + width(two),
                                         device=device, dtype=dtype),
            "pooled_prompt_embeds": torch.zeros(n_prompts, projection(two), device=device, dtype=dtype),
        }

    def _text_call(self, spec: ModelSpec, comp: ComponentSpec, cfg: bool, batch: int) -> Call:
        # One call per encoder with or without CFG: the negative embeddings are zeros.
        return super()._text_call(spec, comp, False, batch)

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype) -> dict[str, Any]:
        kwargs = super().denoiser_inputs(spec, resolution, call_batch, device, dtype)
        cfg = spec.denoiser.config
        time_dim = cfg["addition_time_embed_dim"] * 6
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(call_batch, cfg["projection_class_embeddings_input_dim"] - time_dim,
                                       device=device, dtype=dtype),
            "time_ids": torch.randn(call_batch, 6, device=device, dtype=dtype),
        }
        return kwargs

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        one, two = spec.component("text_encoder"), spec.component("text_encoder_2")
        cfg = spec.denoiser.config
        den = spec.denoiser.name
        return [
            ("the two text encoders' hidden widths together", width(one) + width(two),
             f"{den}.config.cross_attention_dim", int(cfg["cross_attention_dim"])),
            (f"{two.name}.config.projection_dim + 6 x addition_time_embed_dim",
             projection(two) + 6 * int(cfg["addition_time_embed_dim"]),
             f"{den}.config.projection_class_embeddings_input_dim",
             int(cfg["projection_class_embeddings_input_dim"])),
        ]
