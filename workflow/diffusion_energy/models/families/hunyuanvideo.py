"""HunyuanVideo: a Llama (LLaVA) text encoder plus CLIP, a dual/single-stream DiT, a causal 3D VAE.

``HunyuanVideoPipeline`` wraps the prompt in a 95-token template, pads it to
95 + 256 tokens for the Llama encoder, takes its third-to-last hidden state and
keeps the last 256 tokens (with their mask); CLIP's pooled output of 77 tokens
conditions the modulation. The transformer is guidance-distilled: the guidance
scale enters as an embedding and one batch-1 call runs per step; true CFG (a
second call with negative embeddings) only when asked. The VAE decodes videos of
more than 16 frames in overlapping temporal tiles (``use_framewise_decoding``).
"""

from __future__ import annotations

from typing import Any

from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec
from .base import Device, DistilledGuidance, Modules, Tensor, mid_timestep, random_ids, register
from .video import VideoFamily, text_width

#: Template tokens the pipeline drops from the Llama encoder's output (DEFAULT_PROMPT_TEMPLATE crop_start).
TEMPLATE_TOKENS = 95
#: The pipeline reads this hidden state of the Llama encoder (num_hidden_layers_to_skip = 2).
HIDDEN_STATE = -3


@register
class HunyuanVideo(DistilledGuidance, VideoFamily):
    """HunyuanVideo text-to-video (``HunyuanVideoTransformer3DModel``, ``AutoencoderKLHunyuanVideo``)."""

    name = "hunyuanvideo"

    def text_inputs(self, spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device
                    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"input_ids": random_ids(comp, n_prompts, device)}
        if comp.name == "text_encoder":
            kwargs["output_hidden_states"] = True
        return kwargs

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        llama, clip = spec.component("text_encoder"), spec.component("text_encoder_2")
        states = modules[llama.name](**self.text_inputs(spec, llama, n_prompts, device)).hidden_states
        embeds = states[HIDDEN_STATE][:, TEMPLATE_TOKENS:]
        pooled = modules[clip.name](**self.text_inputs(spec, clip, n_prompts, device)).pooler_output
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled,
                "prompt_attention_mask": torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)}

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype, frames: int | None = None) -> dict[str, Any]:
        frames = spec.default_frames if frames is None else frames
        cfg, b = spec.denoiser.config, call_batch
        n_text = int(spec.denoiser.text_tokens or 0)
        kwargs = {
            "hidden_states": self.noisy_video(spec, resolution, frames, b, device, dtype),
            "timestep": mid_timestep(b, device, dtype),
            "encoder_hidden_states": torch.randn(b, n_text, cfg["text_embed_dim"], device=device,
                                                 dtype=dtype),
            "encoder_attention_mask": torch.ones(b, n_text, device=device, dtype=torch.long),
            "pooled_projections": torch.randn(b, cfg["pooled_projection_dim"], device=device, dtype=dtype),
        }
        if cfg.get("guidance_embeds", True):
            kwargs["guidance"] = torch.full((b,), spec.guidance_scale * 1000.0, device=device, dtype=dtype)
        return kwargs

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        llama, clip, den = spec.component("text_encoder"), spec.component("text_encoder_2"), spec.denoiser
        return [
            (f"{llama.name} width", text_width(llama), f"{den.name}.config.text_embed_dim",
             int(den.config["text_embed_dim"])),
            (f"{clip.name} width (its pooled output)", text_width(clip),
             f"{den.name}.config.pooled_projection_dim", int(den.config["pooled_projection_dim"])),
            (f"{llama.name}.seq_len - {TEMPLATE_TOKENS} template tokens",
             int(llama.seq_len or 0) - TEMPLATE_TOKENS,
             f"{den.name}.text_tokens", int(den.text_tokens or 0)),
        ]
