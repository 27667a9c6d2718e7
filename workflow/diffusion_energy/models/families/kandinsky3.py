"""Kandinsky 3: the FLAN-UL2 encoder, ``Kandinsky3UNet`` and the MoVQ decoder.

What ``Kandinsky3Pipeline`` does with the text (``encode_prompt``, diffusers
0.29.2 as ML.ENERGY ran it, and 0.42): the prompt is padded/truncated to 128
tokens and encoded with its attention mask; the pipeline then (``cut_context``)
zeroes the padded states and cuts them to the longest prompt's token count + 1,
which is what the U-Net cross-attends to (``text_tokens`` of the U-Net here: an
assumed prompt length, as prompts are not padded to a fixed length). With
``negative_prompt`` None the negative embeddings are zeros with a zero mask:
the encoder runs once per pipeline call, CFG or not, and with CFG the U-Net runs
at twice the batch.

The pipeline computes latent sides as ``ceil(side / 64) * 8`` whatever the VAE:
resolutions go in 64 px steps and the MoVQ must have a stride of 8.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..catalog import ZooError
from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec
from .base import Call, Device, Family, Modules, Tensor, mid_timestep, noisy_latents, random_ids, register
from .kandinsky22 import check_pipeline_resolution, movq_scale_factor
from .sd import width

#: ``downscale_height_and_width(height, width, 8)`` in ``Kandinsky3Pipeline.__call__``.
PIPELINE_SCALE = 8


@register
class Kandinsky3(Family):
    name = "kandinsky3"

    # ----------------------------------------------------------------- text stage

    def prompt_mask(self, spec: ModelSpec, n_prompts: int, device: Device) -> Tensor:
        """The tokenizer's attention mask of a prompt of ``text_tokens - 1`` tokens padded to ``seq_len``."""
        comp = spec.component("text_encoder")
        mask = torch.zeros(n_prompts, int(comp.seq_len or 0), device=device, dtype=torch.long)
        mask[:, : int(spec.denoiser.text_tokens or 0) - 1] = 1
        return mask

    def text_inputs(self, spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device
                    ) -> dict[str, Any]:
        # What is counted: padding is masked, not skipped, so the encoder's FLOPs are those of all
        # seq_len tokens with or without the mask (and checking a mask needs a host sync, impossible
        # on meta). encode_prompts passes the mask, as the pipeline does.
        return {"input_ids": random_ids(comp, n_prompts, device)}

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        comp = spec.component("text_encoder")
        mask = self.prompt_mask(spec, n_prompts, device)
        states = modules[comp.name](**self.text_inputs(spec, comp, n_prompts, device), attention_mask=mask)[0]
        # process_embeds(cut_context=True): zero the padding, keep the longest prompt + 1 tokens.
        keep = int(spec.denoiser.text_tokens or 0)
        states = (states * mask.unsqueeze(2).to(states.dtype))[:, :keep]
        return {"prompt_embeds": states, "attention_mask": mask[:, :keep]}

    def encode_negative_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                                ) -> dict[str, Tensor]:
        # negative_prompt None: the pipeline itself makes zero embeddings and a zero mask.
        return {}

    def pipeline_call_kwargs(self, spec: ModelSpec, positive: Mapping[str, Tensor],
                             negative: Mapping[str, Tensor] | None, cfg: bool) -> dict[str, Any]:
        return {**positive, "guidance_scale": spec.guidance_scale if cfg else 1.0}

    # ----------------------------------------------------------------- denoiser and VAE

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype) -> dict[str, Any]:
        check_pipeline_resolution(spec, resolution, PIPELINE_SCALE)
        cfg = spec.denoiser.config
        b, n_text = call_batch, int(spec.denoiser.text_tokens or 0)
        return {
            "sample": noisy_latents(spec, resolution, b, device, dtype),
            "timestep": mid_timestep(b, device, dtype),
            "encoder_hidden_states": torch.randn(b, n_text, cfg["encoder_hid_dim"], device=device,
                                                 dtype=dtype),
            "encoder_attention_mask": torch.ones(b, n_text, device=device, dtype=torch.bool),
        }

    def vae_latents(self, spec: ModelSpec, resolution: int, batch: int, device: Device,
                    dtype: torch.dtype) -> Tensor:
        check_pipeline_resolution(spec, resolution, PIPELINE_SCALE)
        return super().vae_latents(spec, resolution, batch, device, dtype)

    def vae_decode(self, module: torch.nn.Module, latents: Tensor) -> Any:
        return module.decode(latents, force_not_quantize=True)  # as the pipeline decodes

    # ----------------------------------------------------------------- the calls of an image

    def calls(self, spec: ModelSpec, resolution: int, cfg: bool, batch: int) -> list[Call]:
        """One encoder call on the prompts (the negative is zeros), the U-Net steps, the MoVQ decode."""
        check_pipeline_resolution(spec, resolution, PIPELINE_SCALE)
        text = self._text_call(spec, spec.component("text_encoder"), False, batch)
        return [text, self.denoiser_call(spec, resolution, cfg, batch),
                self.vae_call(spec, resolution, batch)]

    # ----------------------------------------------------------------- consistency

    def predicted_channels(self, spec: ModelSpec) -> int | None:
        return int(spec.denoiser.config.get("in_channels", 4))  # out_channels = in_channels

    def check(self, spec: ModelSpec) -> None:
        super().check(spec)
        where = spec.source or spec.name
        te, den = spec.component("text_encoder"), spec.denoiser
        if movq_scale_factor(spec) != PIPELINE_SCALE or spec.latent_stride != PIPELINE_SCALE:
            raise ZooError(f"{where}: latent_stride is {spec.latent_stride} and {spec.vae.name}.config."
                           f"block_out_channels gives a MoVQ stride of {movq_scale_factor(spec)}, but "
                           f"Kandinsky3Pipeline makes latents of 1/{PIPELINE_SCALE} the image side")
        if not 0 < int(den.text_tokens or 0) <= int(te.seq_len or 0):
            raise ZooError(f"{where}: {den.name}.text_tokens is {den.text_tokens}, but {te.name}.seq_len is "
                           f"{te.seq_len}: the pipeline cuts the encoder's states to at most seq_len tokens")

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        te, den = spec.component("text_encoder"), spec.denoiser
        return [(f"{te.name} width (d_model)", width(te), f"{den.name}.config.encoder_hid_dim",
                 int(den.config.get("encoder_hid_dim", 4096)))]
