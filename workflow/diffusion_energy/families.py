"""How each pipeline family feeds its stages: inputs of the right shapes.

FLOP counting (one forward of each stage on the meta device) and measurement
(the real pipeline on the GPU) must agree on shapes, so both take them from
here: the token ids a text encoder reads, the embeddings the pipeline is
given, the inputs of one denoiser forward, and the latents the VAE decodes.
Random token ids of the tokenizer's padded length cost exactly what a real
prompt costs (tokenizers pad to a fixed length).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .zoo import ComponentSpec, ModelSpec

Tensor = torch.Tensor
Modules = Mapping[str, torch.nn.Module]

#: Qwen-Image drops the first 34 tokens of its chat template from the embeddings.
QWEN_TEMPLATE_DROP = 34


def _vocab_size(comp: ComponentSpec) -> int:
    cfg = comp.config
    if "vocab_size" in cfg:
        return int(cfg["vocab_size"])
    text_cfg = cfg.get("text_config", {})
    return int(text_cfg.get("vocab_size", 32000))


def _latent_channels(spec: ModelSpec) -> int:
    cfg = spec.vae.config
    return int(cfg.get("latent_channels", cfg.get("z_dim", 4)))


def latent_side(spec: ModelSpec, resolution: int) -> int:
    spec.check_resolution(resolution)
    return resolution // spec.latent_stride


def text_inputs(
    spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: str | torch.device
) -> dict[str, Any]:
    """Keyword arguments of one call of a text encoder on ``n_prompts`` prompts."""
    assert comp.seq_len is not None
    ids = torch.randint(0, _vocab_size(comp), (n_prompts, comp.seq_len), device=device)
    kwargs: dict[str, Any] = {"input_ids": ids}
    if spec.family == "sdxl" or spec.family == "sd3":
        if "T5" not in comp.class_path:
            kwargs["output_hidden_states"] = True
    if spec.family == "qwen":
        # An all-ones attention mask (one prompt, no padding) is the same computation
        # as none, and the mask check would need a host sync (impossible on meta).
        kwargs["output_hidden_states"] = True
    return kwargs


def encode_prompts(
    spec: ModelSpec, modules: Modules, n_prompts: int, device: str | torch.device
) -> dict[str, Tensor]:
    """Run every text encoder as the pipeline would; return its prompt embeddings.

    Keys are the pipeline's own argument names without the ``negative_`` prefix.
    """
    outs = {
        c.name: modules[c.name](**text_inputs(spec, c, n_prompts, device)) for c in spec.text_encoders
    }
    fam = spec.family
    if fam == "sd":
        return {"prompt_embeds": outs["text_encoder"].last_hidden_state}
    if fam == "sdxl":
        one, two = outs["text_encoder"], outs["text_encoder_2"]
        return {
            "prompt_embeds": torch.cat([one.hidden_states[-2], two.hidden_states[-2]], dim=-1),
            "pooled_prompt_embeds": two.text_embeds,
        }
    if fam == "sd3":
        one, two, t5 = outs["text_encoder"], outs["text_encoder_2"], outs["text_encoder_3"]
        clip = torch.cat([one.hidden_states[-2], two.hidden_states[-2]], dim=-1)
        t5_states = t5.last_hidden_state
        clip = torch.nn.functional.pad(clip, (0, t5_states.shape[-1] - clip.shape[-1]))
        return {
            "prompt_embeds": torch.cat([clip, t5_states], dim=-2),
            "pooled_prompt_embeds": torch.cat([one.text_embeds, two.text_embeds], dim=-1),
        }
    if fam == "flux":
        return {
            "prompt_embeds": outs["text_encoder_2"].last_hidden_state,
            "pooled_prompt_embeds": outs["text_encoder"].pooler_output,
        }
    if fam == "qwen":
        states = outs["text_encoder"].hidden_states[-1][:, QWEN_TEMPLATE_DROP:]
        mask = torch.ones(states.shape[:2], dtype=torch.long, device=states.device)
        return {"prompt_embeds": states, "prompt_embeds_mask": mask}
    raise ValueError(f"unknown family {fam!r}")


def pipeline_call_kwargs(
    spec: ModelSpec, positive: Mapping[str, Tensor], negative: Mapping[str, Tensor] | None, cfg: bool
) -> dict[str, Any]:
    """Arguments of the pipeline call that switch CFG on or off as the model runs it."""
    kwargs: dict[str, Any] = dict(positive)
    if cfg:
        assert negative is not None, "CFG needs negative embeddings"
        kwargs.update({f"negative_{k}": v for k, v in negative.items()})
    if spec.cfg_mode == "batch":
        kwargs["guidance_scale"] = spec.guidance_scale if cfg else 1.0
    else:
        # Sequential CFG (FLUX true CFG, Qwen-Image): guidance_scale is distillation
        # guidance (FLUX) and true_cfg_scale > 1 switches the second call on.
        kwargs["true_cfg_scale"] = 4.0 if cfg else 1.0
        if spec.family == "flux":
            kwargs["guidance_scale"] = spec.guidance_scale
    return kwargs


def denoiser_inputs(
    spec: ModelSpec,
    resolution: int,
    call_batch: int,
    device: str | torch.device,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """Keyword arguments of one denoiser forward at the batch the pipeline uses."""
    side = latent_side(spec, resolution)
    den = spec.denoiser
    cfg = den.config
    b = call_batch
    assert den.text_tokens is not None, f"{spec.name}: denoiser needs text_tokens"
    n_text = den.text_tokens

    def empty(*shape: int) -> Tensor:
        return torch.randn(*shape, device=device, dtype=dtype)

    timestep = torch.full((b,), 500.0, device=device, dtype=dtype)
    fam = spec.family
    if fam in ("sd", "sdxl"):
        kwargs: dict[str, Any] = {
            "sample": empty(b, cfg["in_channels"], side, side),
            "timestep": timestep,
            "encoder_hidden_states": empty(b, n_text, cfg["cross_attention_dim"]),
        }
        if fam == "sdxl":
            time_dim = cfg["addition_time_embed_dim"] * 6
            kwargs["added_cond_kwargs"] = {
                "text_embeds": empty(b, cfg["projection_class_embeddings_input_dim"] - time_dim),
                "time_ids": empty(b, 6),
            }
        return kwargs
    if fam == "sd3":
        return {
            "hidden_states": empty(b, cfg["in_channels"], side, side),
            "encoder_hidden_states": empty(b, n_text, cfg["joint_attention_dim"]),
            "pooled_projections": empty(b, cfg["pooled_projection_dim"]),
            "timestep": timestep,
        }
    patch = spec.patch_size
    grid = side // patch
    tokens = grid * grid
    if fam == "flux":
        kwargs = {
            "hidden_states": empty(b, tokens, cfg["in_channels"]),
            "encoder_hidden_states": empty(b, n_text, cfg["joint_attention_dim"]),
            "pooled_projections": empty(b, cfg["pooled_projection_dim"]),
            "timestep": timestep / 1000,
            "img_ids": torch.zeros(tokens, 3, device=device, dtype=dtype),
            "txt_ids": torch.zeros(n_text, 3, device=device, dtype=dtype),
        }
        if cfg.get("guidance_embeds", False):
            kwargs["guidance"] = torch.full((b,), 3.5, device=device, dtype=dtype)
        return kwargs
    if fam == "qwen":
        return {
            "hidden_states": empty(b, tokens, cfg["in_channels"]),
            "encoder_hidden_states": empty(b, n_text, cfg["joint_attention_dim"]),
            "encoder_hidden_states_mask": torch.ones(b, n_text, device=device, dtype=torch.long),
            "timestep": timestep / 1000,
            "img_shapes": [[(1, grid, grid)]] * b,
        }
    raise ValueError(f"unknown family {fam!r}")


def vae_latents(
    spec: ModelSpec, resolution: int, batch: int, device: str | torch.device, dtype: torch.dtype
) -> Tensor:
    """The latents the VAE decodes for ``batch`` images of this resolution."""
    side = latent_side(spec, resolution)
    shape: tuple[int, ...] = (batch, _latent_channels(spec), side, side)
    if spec.family == "qwen":  # video VAE: a one-frame time axis
        shape = (batch, _latent_channels(spec), 1, side, side)
    return torch.randn(*shape, device=device, dtype=dtype)


def denoiser_tokens(spec: ModelSpec, resolution: int) -> tuple[int, int]:
    """(image tokens, text tokens) one denoiser forward attends over, per sample."""
    side = latent_side(spec, resolution) // spec.patch_size
    return side * side, int(spec.denoiser.text_tokens or 0)
