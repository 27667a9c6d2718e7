"""SANA / SANA 1.5: a Gemma-2 decoder as text encoder, a linear-attention DiT, the DC-AE f32c32.

What ``SanaPipeline`` does with the text (diffusers ``encode_prompt``): the
prompt gets the complex human instruction prepended and is padded to
``instruction_tokens + max_sequence_length - 2`` tokens; of the Gemma outputs
``select_index`` keeps the first and the last ``max_sequence_length - 1``, so
the transformer cross-attends to ``max_sequence_length`` text tokens. The
negative prompt is encoded without the instruction, padded to
``max_sequence_length`` tokens and used whole. With CFG the two embeddings are
concatenated: one transformer call per step at twice the batch.

``family_options``: ``max_sequence_length`` (the pipeline's, 300) and
``instruction_tokens`` (the instruction's length in Gemma tokens with ``<bos>``;
0 without the instruction). The prompt encoder's ``seq_len`` must equal
``instruction_tokens + max_sequence_length - 2`` (or ``max_sequence_length``
without the instruction), and the denoiser's ``text_tokens`` must equal
``max_sequence_length``: both are checked when a file is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from ..catalog import ZooError
from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec
from .base import Call, Device, Family, Modules, Tensor, mid_timestep, noisy_latents, register, vocab_size
from .sd import width


def max_sequence_length(spec: ModelSpec) -> int:
    return int(spec.family_options.get("max_sequence_length", 300))


def instruction_tokens(spec: ModelSpec) -> int:
    return int(spec.family_options.get("instruction_tokens", 0))


def prompt_length(spec: ModelSpec) -> int:
    """Tokens the text encoder reads for the prompt (instruction + prompt, padded)."""
    n, chi = max_sequence_length(spec), instruction_tokens(spec)
    return chi + n - 2 if chi else n


@register
class Sana(Family):
    name = "sana"

    # ----------------------------------------------------------------- text stage

    def _ids(self, comp: ComponentSpec, n_prompts: int, tokens: int, device: Device) -> Tensor:
        return torch.randint(0, vocab_size(comp), (n_prompts, tokens), device=device)

    def text_inputs(self, spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device
                    ) -> dict[str, Any]:
        # The prompt's call. An all-ones attention mask is the same computation as none
        # (padding is masked, not skipped), and checking a mask needs a host sync (impossible on meta).
        return {"input_ids": self._ids(comp, n_prompts, int(comp.seq_len or 0), device)}

    def negative_text_inputs(self, spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device
                             ) -> dict[str, Any]:
        """The negative prompt's call: no instruction, ``max_sequence_length`` tokens."""
        return {"input_ids": self._ids(comp, n_prompts, max_sequence_length(spec), device)}

    def _embeds(self, spec: ModelSpec, modules: Modules, inputs: dict[str, Any], select: bool
                ) -> dict[str, Tensor]:
        comp = spec.component("text_encoder")
        states = modules[comp.name](**inputs)[0]
        if select:  # SanaPipeline.encode_prompt's select_index: the first and the last n - 1
            n = max_sequence_length(spec)
            index = [0, *range(states.shape[1] - n + 1, states.shape[1])]
            states = states[:, index]
        mask = torch.ones(states.shape[:2], dtype=torch.long, device=states.device)
        return {"prompt_embeds": states, "prompt_attention_mask": mask}

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        comp = spec.component("text_encoder")
        return self._embeds(spec, modules, self.text_inputs(spec, comp, n_prompts, device), select=True)

    def encode_negative_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                                ) -> dict[str, Tensor]:
        comp = spec.component("text_encoder")
        inputs = self.negative_text_inputs(spec, comp, n_prompts, device)
        return self._embeds(spec, modules, inputs, select=False)

    def pipeline_call_kwargs(self, spec: ModelSpec, positive: Mapping[str, Tensor],
                             negative: Mapping[str, Tensor] | None, cfg: bool) -> dict[str, Any]:
        kwargs = super().pipeline_call_kwargs(spec, positive, negative, cfg)
        # Generate the asked resolution: resolution binning would map e.g. 512 px to a 1024 px bin
        # (a no-op for square images at the model's own sample size, as ML.ENERGY ran it).
        kwargs["use_resolution_binning"] = False
        if cfg:  # the default negative_prompt "" and negative_prompt_embeds exclude each other
            kwargs["negative_prompt"] = None
        return kwargs

    # ----------------------------------------------------------------- denoiser

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype) -> dict[str, Any]:
        cfg = spec.denoiser.config
        n_text, b = int(spec.denoiser.text_tokens or 0), call_batch
        return {
            "hidden_states": noisy_latents(spec, resolution, b, device, dtype),
            "encoder_hidden_states": torch.randn(b, n_text, cfg["caption_channels"], device=device,
                                                 dtype=dtype),
            "encoder_attention_mask": torch.ones(b, n_text, device=device, dtype=torch.long),
            "timestep": mid_timestep(b, device, dtype),
        }

    # ----------------------------------------------------------------- consistency

    def predicted_channels(self, spec: ModelSpec) -> int | None:
        cfg = spec.denoiser.config
        return int(cfg.get("out_channels") or cfg["in_channels"])

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        te, den = spec.component("text_encoder"), spec.denoiser
        return [(f"{te.name} hidden width", width(te), f"{den.name}.config.caption_channels",
                 int(den.config["caption_channels"]))]

    def check(self, spec: ModelSpec) -> None:
        super().check(spec)
        where = spec.source or spec.name
        te, den, n = spec.component("text_encoder"), spec.denoiser, max_sequence_length(spec)
        if te.seq_len != prompt_length(spec):
            raise ZooError(
                f"{where}: {te.name}.seq_len is {te.seq_len}, but family_options.instruction_tokens "
                f"{instruction_tokens(spec)} + family_options.max_sequence_length {n} - 2 is "
                f"{prompt_length(spec)}: the pipeline pads the prompt to the latter")
        if den.text_tokens != n:
            raise ZooError(
                f"{where}: {den.name}.text_tokens is {den.text_tokens}, but "
                f"family_options.max_sequence_length is {n}: the transformer sees that many text tokens")

    # ----------------------------------------------------------------- the calls of an image

    def calls(self, spec: ModelSpec, resolution: int, cfg: bool, batch: int) -> list[Call]:
        """The prompt's encoder call, the negative prompt's (CFG), the denoiser, the decoder.

        The two encoder calls differ in length (instruction + prompt vs the bare
        negative prompt), so they are two kinds of call with their own shapes.
        The denoiser's ``tokens`` are its image tokens: the text enters only as
        cross-attention keys and values.
        """
        te = spec.component("text_encoder")
        out = [self._encoder_call(spec, te, batch, self.text_inputs)]
        if cfg:
            out.append(self._encoder_call(spec, te, batch, self.negative_text_inputs))
        den = self.denoiser_call(spec, resolution, cfg, batch)
        out.append(dataclasses.replace(den, tokens=self.denoiser_tokens(spec, resolution)[0]))
        out.append(self.vae_call(spec, resolution, batch))
        return out

    def _encoder_call(self, spec: ModelSpec, comp: ComponentSpec, batch: int,
                      inputs: Callable[[ModelSpec, ComponentSpec, int, Device], dict[str, Any]]) -> Call:
        tokens = int(inputs(spec, comp, 1, "meta")["input_ids"].shape[1])

        def prepare(module: torch.nn.Module, b: int, device: Device, dtype: torch.dtype) -> Callable[[], Any]:
            kwargs = inputs(spec, comp, b, device)
            return lambda: module(**kwargs)

        return Call(comp.name, "text", (tokens,), batch, 1, "image", tokens, prepare)
