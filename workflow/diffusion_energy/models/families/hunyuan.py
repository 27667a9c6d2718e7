"""Hunyuan-DiT: a BERT (bilingual CLIP text tower) and mT5, a cross-attention DiT with long skips.

The pipeline (``diffusers.HunyuanDiTPipeline``) encodes the prompt twice, with
the BERT at 77 tokens and the mT5 encoder at 256, and passes each encoder's
last hidden state with its attention mask; the transformer projects the mT5
states to the BERT width, concatenates both into 333 cross-attention keys
(padded positions replaced by a learned embedding) and pools the mT5 states
into its conditioning vector. CFG is batched: one transformer call per step at
twice the batch. The transformer also predicts a variance (``learn_sigma``):
its output has twice the latent channels, of which the pipeline keeps the first
half. Its 2D rotary embedding is computed by the pipeline once per call, outside
the transformer, over the latent grid; no learned positional table limits the
resolution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec
from .base import (
    Device,
    Family,
    Modules,
    Tensor,
    latent_side,
    mid_timestep,
    noisy_latents,
    random_ids,
    register,
)
from .sd import width

#: The pipeline's ``image_meta_size`` row: original (1024, 1024), target (H, W), crop (0, 0).
ORIGINAL_SIZE = (1024, 1024)


def rotary_embedding(spec: ModelSpec, resolution: int, device: Device) -> tuple[Tensor, Tensor]:
    """The (cos, sin) 2D RoPE the pipeline passes to every transformer call at this resolution.

    As ``HunyuanDiTPipeline.__call__`` makes it: the latent token grid mapped
    into the crop region of a 512 px base grid.
    """
    from diffusers.models.embeddings import get_2d_rotary_pos_embed
    from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import get_resize_crop_region_for_grid

    cfg = spec.denoiser.config
    grid = latent_side(spec, resolution) // spec.patch_size
    base = 512 // spec.latent_stride // spec.patch_size
    crops = get_resize_crop_region_for_grid((grid, grid), base)
    return get_2d_rotary_pos_embed(int(cfg["attention_head_dim"]), crops, (grid, grid), device=device,
                                   output_type="pt")


@register
class HunyuanDiT(Family):
    """Hunyuan-DiT v1.x (``HunyuanDiT2DModel``): BERT + mT5 text, cross-attention DiT."""

    name = "hunyuan"

    def text_inputs(self, spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device
                    ) -> dict[str, Any]:
        # The pipeline passes the tokenizer's mask; an all-ones mask (a prompt of the full
        # padded length) costs what none costs, and needs no host sync on meta.
        return {"input_ids": random_ids(comp, n_prompts, device)}

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        bert, mt5 = spec.component("text_encoder"), spec.component("text_encoder_2")
        one = modules[bert.name](**self.text_inputs(spec, bert, n_prompts, device))[0]
        two = modules[mt5.name](**self.text_inputs(spec, mt5, n_prompts, device))[0]
        return {
            "prompt_embeds": one,
            "prompt_attention_mask": torch.ones(one.shape[:2], dtype=torch.long, device=one.device),
            "prompt_embeds_2": two,
            "prompt_attention_mask_2": torch.ones(two.shape[:2], dtype=torch.long, device=two.device),
        }

    def pipeline_call_kwargs(self, spec: ModelSpec, positive: Mapping[str, Tensor],
                             negative: Mapping[str, Tensor] | None, cfg: bool) -> dict[str, Any]:
        kwargs = super().pipeline_call_kwargs(spec, positive, negative, cfg)
        # Binning would silently replace a size outside the 10 trained shapes by the nearest
        # one (1024 x 1024, the benchmark's, is one of them): run the resolution asked for.
        kwargs["use_resolution_binning"] = False
        return kwargs

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype) -> dict[str, Any]:
        cfg = spec.denoiser.config
        b = call_batch
        n_clip, n_t5 = int(cfg["text_len"]), int(cfg["text_len_t5"])
        meta = [*ORIGINAL_SIZE, resolution, resolution, 0, 0]
        return {
            "hidden_states": noisy_latents(spec, resolution, b, device, dtype),
            "timestep": mid_timestep(b, device, dtype),
            "encoder_hidden_states": torch.randn(b, n_clip, cfg["cross_attention_dim"], device=device,
                                                 dtype=dtype),
            "text_embedding_mask": torch.ones(b, n_clip, device=device, dtype=torch.long),
            "encoder_hidden_states_t5": torch.randn(b, n_t5, cfg["cross_attention_dim_t5"], device=device,
                                                    dtype=dtype),
            "text_embedding_mask_t5": torch.ones(b, n_t5, device=device, dtype=torch.long),
            # Read only when use_style_cond_and_image_meta_size (v1.0/1.1); the pipeline always passes them.
            "image_meta_size": torch.tensor([meta] * b, device=device, dtype=dtype),
            "style": torch.zeros(b, device=device, dtype=torch.long),
            "image_rotary_emb": rotary_embedding(spec, resolution, device),
        }

    def predicted_channels(self, spec: ModelSpec) -> int | None:
        # The noise half the pipeline keeps (``learn_sigma`` doubles the output to 2 x in_channels);
        # it is also the channels of the latents the pipeline makes and the VAE decodes.
        return int(spec.denoiser.config["in_channels"])

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        bert, mt5 = spec.component("text_encoder"), spec.component("text_encoder_2")
        cfg, den = spec.denoiser.config, spec.denoiser.name
        heads, head_dim = int(cfg["num_attention_heads"]), int(cfg["attention_head_dim"])
        return [
            (f"{bert.name} hidden width", width(bert),
             f"{den}.config.cross_attention_dim", int(cfg["cross_attention_dim"])),
            (f"{mt5.name} width", width(mt5),
             f"{den}.config.cross_attention_dim_t5", int(cfg["cross_attention_dim_t5"])),
            # The learned padding table has text_len + text_len_t5 rows, the mT5 pooler
            # text_len_t5 + 1 positions: the encoders' padded lengths must be these.
            (f"{bert.name}.seq_len", int(bert.seq_len or 0), f"{den}.config.text_len", int(cfg["text_len"])),
            (f"{mt5.name}.seq_len", int(mt5.seq_len or 0),
             f"{den}.config.text_len_t5", int(cfg["text_len_t5"])),
            (f"{den}.text_tokens", int(spec.denoiser.text_tokens or 0),
             f"{den}.config.text_len + text_len_t5", int(cfg["text_len"]) + int(cfg["text_len_t5"])),
            # Patch embedding and conditioning are hidden_size wide, the blocks heads x head_dim.
            (f"{den}.config.num_attention_heads x attention_head_dim", heads * head_dim,
             f"{den}.config.hidden_size", int(cfg["hidden_size"])),
        ]
