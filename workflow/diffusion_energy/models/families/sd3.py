"""Stable Diffusion 3 / 3.5: two CLIP encoders and T5, an MMDiT over text + image tokens."""

from __future__ import annotations

from typing import Any

from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec
from .base import Device, Family, Modules, Tensor, mid_timestep, noisy_latents, random_ids, register
from .sd import projection, width


@register
class StableDiffusion3(Family):
    """SD3 Medium, SD 3.5 Medium (MMDiT-X) and Large."""

    name = "sd3"

    def text_inputs(self, spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device
                    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"input_ids": random_ids(comp, n_prompts, device)}
        if "T5" not in comp.class_path:
            kwargs["output_hidden_states"] = True
        return kwargs

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        one, two, t5 = (modules[c.name](**self.text_inputs(spec, c, n_prompts, device))
                        for c in (spec.component("text_encoder"), spec.component("text_encoder_2"),
                                  spec.component("text_encoder_3")))
        clip = torch.cat([one.hidden_states[-2], two.hidden_states[-2]], dim=-1)
        t5_states = t5.last_hidden_state
        clip = torch.nn.functional.pad(clip, (0, t5_states.shape[-1] - clip.shape[-1]))
        return {
            "prompt_embeds": torch.cat([clip, t5_states], dim=-2),
            "pooled_prompt_embeds": torch.cat([one.text_embeds, two.text_embeds], dim=-1),
        }

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype) -> dict[str, Any]:
        cfg = spec.denoiser.config
        b = call_batch
        return {
            "hidden_states": noisy_latents(spec, resolution, b, device, dtype),
            "encoder_hidden_states": torch.randn(b, int(spec.denoiser.text_tokens or 0),
                                                 cfg["joint_attention_dim"], device=device, dtype=dtype),
            "pooled_projections": torch.randn(b, cfg["pooled_projection_dim"], device=device, dtype=dtype),
            "timestep": mid_timestep(b, device, dtype),
        }

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        one, two, t5 = (spec.component(n) for n in ("text_encoder", "text_encoder_2", "text_encoder_3"))
        cfg, den = spec.denoiser.config, spec.denoiser.name
        return [
            # The CLIP states are zero-padded to T5's width, the joint text width.
            (f"{t5.name} width", width(t5),
             f"{den}.config.joint_attention_dim", int(cfg["joint_attention_dim"])),
            ("the CLIP projections together", projection(one) + projection(two),
             f"{den}.config.pooled_projection_dim", int(cfg["pooled_projection_dim"])),
        ]
