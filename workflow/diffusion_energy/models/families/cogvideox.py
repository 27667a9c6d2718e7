"""CogVideoX (1.0 and 1.5): a T5-XXL encoder, an expert-adaLN DiT over text + video tokens, a causal 3D VAE.

``CogVideoXPipeline`` encodes the prompt with T5 padded to 226 tokens and runs
CFG batched (one transformer call per step at twice the batch). Its transformer
takes latents frames-first, (batch, frames, channels, h, w), and attends jointly
over the 226 text tokens and the video tokens. CogVideoX 1.0 (2B) adds 3D sincos
positions inside the transformer; 1.5 patches two latent frames per token, so the
pipeline pads the latent frames to an even count (21 -> 22 for 81 frames), passes
a 3D rotary embedding it computes once per call, and drops the pad before the VAE.
The VAE decodes two latent frames at a time with a convolution cache; it returns the
frames asked for when the latent frames are odd (49 frames: 13, 81: 21), 4 per latent frame
otherwise, as the pipeline's own decode does.
"""

from __future__ import annotations

from typing import Any

from ..lazy_torch import torch
from ..spec import ModelSpec
from .base import Device, Tensor, register
from .video import VideoFamily, text_width


def rotary_embedding(spec: ModelSpec, height: int, width: int, latent_frames: int, device: Device
                     ) -> tuple[Tensor, Tensor]:
    """The (cos, sin) 3D RoPE CogVideoX 1.5's pipeline passes to every transformer call, as
    ``CogVideoXPipeline._prepare_rotary_positional_embeddings`` makes it (the 1.5 branch)."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    cfg = spec.denoiser.config
    p, p_t = int(cfg["patch_size"]), int(cfg["patch_size_t"])
    grid_h, grid_w = height // (spec.latent_stride * p), width // (spec.latent_stride * p)
    return get_3d_rotary_pos_embed(
        embed_dim=int(cfg["attention_head_dim"]), crops_coords=None, grid_size=(grid_h, grid_w),
        temporal_size=(latent_frames + p_t - 1) // p_t, grid_type="slice",
        max_size=(int(cfg["sample_height"]) // p, int(cfg["sample_width"]) // p), device=device)


@register
class CogVideoX(VideoFamily):
    """CogVideoX-2b / 5b / 1.5-5B text-to-video (``CogVideoXTransformer3DModel``)."""

    name = "cogvideox"

    def temporal_patch(self, spec: ModelSpec) -> int:
        return int(spec.denoiser.config.get("patch_size_t") or 1)

    def denoiser_frames(self, spec: ModelSpec, frames: int) -> int:
        latent, p_t = self.latent_frames(spec, frames), self.temporal_patch(spec)
        return latent + (-latent) % p_t  # the pipeline's additional_frames

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype, frames: int | None = None) -> dict[str, Any]:
        frames = spec.default_frames if frames is None else frames
        cfg, b = spec.denoiser.config, call_batch
        latents = self.noisy_video(spec, resolution, frames, b, device, dtype).transpose(1, 2).contiguous()
        kwargs: dict[str, Any] = {
            "hidden_states": latents,
            "encoder_hidden_states": torch.randn(b, int(spec.denoiser.text_tokens or 0),
                                                 cfg["text_embed_dim"], device=device, dtype=dtype),
            "timestep": torch.full((b,), 500, device=device, dtype=torch.long),
        }
        if cfg.get("use_rotary_positional_embeddings"):
            height, width = spec.frame_size(resolution)
            kwargs["image_rotary_emb"] = rotary_embedding(spec, height, width, latents.shape[1], device)
        return kwargs

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        te, den = spec.component("text_encoder"), spec.denoiser
        return [
            (f"{te.name} width", text_width(te), f"{den.name}.config.text_embed_dim",
             int(den.config["text_embed_dim"])),
            # The transformer's text/video split is max_text_seq_length; the tokenizer pads to seq_len.
            (f"{te.name}.seq_len", int(te.seq_len or 0), f"{den.name}.config.max_text_seq_length",
             int(den.config.get("max_text_seq_length", 226))),
            (f"{den.name}.text_tokens", int(den.text_tokens or 0),
             f"{te.name}.seq_len", int(te.seq_len or 0)),
        ]
