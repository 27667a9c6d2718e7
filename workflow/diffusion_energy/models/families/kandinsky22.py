"""Kandinsky 2.2: a CLIP prior (text -> image embedding), an image-conditioned U-Net, the MoVQ decoder.

``KandinskyV22CombinedPipeline`` (what ``AutoPipelineForText2Image`` gives for
kandinsky-2-2-decoder) runs ``KandinskyV22PriorPipeline`` and then the decoder
``KandinskyV22Pipeline``. The prior is this family's conditioning ("text") stage,
run in ``encode_prompts`` exactly as the prior pipeline runs it with its defaults
(diffusers 0.29.2 as ML.ENERGY ran it, and 0.42):

- the CLIP ViT-bigG/14 text tower on the prompts and, for the prior's CFG, on
  ``""`` (two calls of ``batch`` prompts, 77 tokens each);
- the ``PriorTransformer`` ``prior_steps`` times at twice the batch (batched CFG,
  ``prior_guidance_scale`` > 1), UnCLIP scheduler steps, ``post_process_latents``;
- with ``negative_prompt`` None (the benchmark passes none) the negative image
  embedding is the CLIP image tower's embedding of a 224 px zero image:
  ``get_zero_embed`` runs the image tower once per pipeline call at batch 1.

The prior's CFG does not follow the decoder's: ``guidance_scale`` 1 switches the
decoder's CFG off, the prior still runs at ``prior_guidance_scale``. So ``cfg``
here is the decoder's; the prior's is ``family_options.prior_guidance_scale``.

The decoder gets ``image_embeds`` and ``negative_image_embeds`` (both required
arguments of ``KandinskyV22Pipeline``, also without CFG), projects the 1280-d
embedding to 10 cross-attention tokens and predicts noise and variance (8
channels); the MoVQ decodes without quantizing (``force_not_quantize``).

``family_options``: ``prior_steps`` (25), ``prior_guidance_scale`` (4.0) and
``prior_scheduler`` (``class`` and ``config`` of the prior's scheduler).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..catalog import ZooError
from ..classes import import_object
from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec
from .base import Call, Device, Family, Modules, Tensor, mid_timestep, noisy_latents, random_ids, register
from .sd import projection, width

PRIOR_TEXT, PRIOR, IMAGE_ENCODER = "prior_text_encoder", "prior_prior", "prior_image_encoder"


def prior_steps(spec: ModelSpec) -> int:
    return int(spec.family_options.get("prior_steps", 25))


def prior_guidance_scale(spec: ModelSpec) -> float:
    return float(spec.family_options.get("prior_guidance_scale", 4.0))


def prior_cfg(spec: ModelSpec) -> bool:
    """Whether the prior runs CFG (the prior pipeline's ``guidance_scale > 1``)."""
    return prior_guidance_scale(spec) > 1.0


def movq_scale_factor(spec: ModelSpec) -> int:
    """The decoder pipeline's ``movq_scale_factor``: 2 ** (MoVQ blocks - 1)."""
    return 2 ** (len(spec.vae.config["block_out_channels"]) - 1)


def check_pipeline_resolution(spec: ModelSpec, resolution: int, scale: int) -> None:
    """Kandinsky pipelines round latent sides up to a multiple of ``scale``: only
    resolutions in steps of ``scale ** 2`` px make the image size asked for."""
    spec.check_resolution(resolution)
    if resolution % (scale * scale):
        raise ZooError(f"resolution {resolution} is not a multiple of {scale * scale} px: the pipeline of "
                       f"model {spec.name!r} would round its latents up to a multiple of {scale}")


def _image_size(comp: ComponentSpec) -> int:
    return int(comp.config.get("image_size", 224))


@register
class Kandinsky22(Family):
    name = "kandinsky22"

    # ----------------------------------------------------------------- the prior (conditioning stage)

    def text_inputs(self, spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device
                    ) -> dict[str, Any]:
        # The prior pipeline calls the CLIP text tower with the token ids alone (no attention mask).
        return {"input_ids": random_ids(comp, n_prompts, device)}

    def prior_inputs(self, spec: ModelSpec, call_batch: int, device: Device, dtype: torch.dtype,
                     timestep: Any = 500) -> dict[str, Any]:
        """One prior forward at ``call_batch`` (twice the prompts with the prior's CFG)."""
        cfg = spec.component(PRIOR).config
        dim, n_text = int(cfg["embedding_dim"]), int(spec.component(PRIOR_TEXT).seq_len or 0)
        b = call_batch
        return {
            "hidden_states": torch.randn(b, dim, device=device, dtype=dtype),
            "timestep": timestep,
            "proj_embedding": torch.randn(b, dim, device=device, dtype=dtype),
            "encoder_hidden_states": torch.randn(b, n_text, dim, device=device, dtype=dtype),
            "attention_mask": torch.ones(b, n_text, device=device, dtype=torch.bool),
        }

    def zero_image(self, spec: ModelSpec, device: Device, dtype: torch.dtype) -> Tensor:
        """``get_zero_embed``'s input: one zero image at the image tower's size."""
        size = _image_size(spec.component(IMAGE_ENCODER))
        return torch.zeros(1, 3, size, size, device=device, dtype=dtype)

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        """``KandinskyV22PriorPipeline.__call__`` with its defaults and ``negative_prompt`` None."""
        text_comp = spec.component(PRIOR_TEXT)
        text, prior, image = modules[PRIOR_TEXT], modules[PRIOR], modules[IMAGE_ENCODER]
        guided, scale = prior_cfg(spec), prior_guidance_scale(spec)

        out = text(**self.text_inputs(spec, text_comp, n_prompts, device))
        proj, states = out.text_embeds, out.last_hidden_state
        mask = torch.ones(states.shape[:2], device=states.device, dtype=torch.bool)
        if guided:  # the "" prompt, encoded in its own call and concatenated in front
            neg = text(**self.text_inputs(spec, text_comp, n_prompts, device))
            proj = torch.cat([neg.text_embeds, proj])
            states = torch.cat([neg.last_hidden_state, states])
            mask = torch.cat([mask, mask])

        options = spec.family_options.get("prior_scheduler") or {}
        scheduler = import_object(options.get("class", "diffusers.UnCLIPScheduler")).from_config(
            dict(options.get("config") or {}))
        scheduler.set_timesteps(prior_steps(spec), device=device)
        timesteps = scheduler.timesteps
        latents = torch.randn(n_prompts, int(spec.component(PRIOR).config["embedding_dim"]),
                              device=device, dtype=proj.dtype) * scheduler.init_noise_sigma
        for i, t in enumerate(timesteps):
            model_input = torch.cat([latents] * 2) if guided else latents
            pred = prior(model_input, timestep=t, proj_embedding=proj, encoder_hidden_states=states,
                         attention_mask=mask).predicted_image_embedding
            if guided:
                uncond, cond = pred.chunk(2)
                pred = uncond + scale * (cond - uncond)
            prev = None if i + 1 == len(timesteps) else timesteps[i + 1]
            latents = scheduler.step(pred, timestep=t, sample=latents, prev_timestep=prev).prev_sample
        image_embeds = prior.post_process_latents(latents)

        zero = image(pixel_values=self.zero_image(spec, device, image.dtype)).image_embeds
        return {"image_embeds": image_embeds, "negative_image_embeds": zero.repeat(n_prompts, 1)}

    def encode_negative_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                                ) -> dict[str, Tensor]:
        # The prior pipeline made the negative image embedding along with the positive one.
        return {}

    def pipeline_call_kwargs(self, spec: ModelSpec, positive: Mapping[str, Tensor],
                             negative: Mapping[str, Tensor] | None, cfg: bool) -> dict[str, Any]:
        return {"image_embeds": positive["image_embeds"],
                "negative_image_embeds": positive["negative_image_embeds"],
                "guidance_scale": spec.guidance_scale if cfg else 1.0}

    # ----------------------------------------------------------------- decoder U-Net and MoVQ

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype) -> dict[str, Any]:
        check_pipeline_resolution(spec, resolution, movq_scale_factor(spec))
        cfg = spec.denoiser.config
        b = call_batch
        return {
            "sample": noisy_latents(spec, resolution, b, device, dtype),
            "timestep": mid_timestep(b, device, dtype),
            "encoder_hidden_states": None,
            "added_cond_kwargs": {"image_embeds": torch.randn(b, cfg["encoder_hid_dim"], device=device,
                                                              dtype=dtype)},
        }

    def vae_latents(self, spec: ModelSpec, resolution: int, batch: int, device: Device,
                    dtype: torch.dtype) -> Tensor:
        check_pipeline_resolution(spec, resolution, movq_scale_factor(spec))
        return super().vae_latents(spec, resolution, batch, device, dtype)

    def vae_decode(self, module: torch.nn.Module, latents: Tensor) -> Any:
        return module.decode(latents, force_not_quantize=True)  # as the pipeline decodes

    # ----------------------------------------------------------------- the calls of an image

    def calls(self, spec: ModelSpec, resolution: int, cfg: bool, batch: int) -> list[Call]:
        """The prior pipeline's calls (text tower, prior steps, zero-image embedding), the decoder's
        U-Net steps and the MoVQ decode, for one pipeline call making ``batch`` images."""
        check_pipeline_resolution(spec, resolution, movq_scale_factor(spec))
        guided = prior_cfg(spec)
        text_comp, prior_comp, image_comp = (spec.component(n) for n in (PRIOR_TEXT, PRIOR, IMAGE_ENCODER))

        def prior_prepare(module: torch.nn.Module, b: int, device: Device, dtype: torch.dtype
                          ) -> Callable[[], Any]:
            kwargs = self.prior_inputs(spec, b, device, dtype)
            return lambda: module(**kwargs)

        def image_prepare(module: torch.nn.Module, b: int, device: Device, dtype: torch.dtype
                          ) -> Callable[[], Any]:
            pixels = self.zero_image(spec, device, dtype).expand(b, -1, -1, -1)
            return lambda: module(pixel_values=pixels)

        text_call = self._text_call(spec, text_comp, guided, batch)  # prompt, and "" for the prior's CFG
        prior_call = Call(prior_comp.name, "text", (), 2 * batch if guided else batch, prior_steps(spec),
                          "image", int(prior_comp.seq_len or 0), prior_prepare)
        image_call = Call(image_comp.name, "text", (), 1, 1, "image", int(image_comp.seq_len or 0),
                          image_prepare)
        return [text_call, prior_call, image_call, self.denoiser_call(spec, resolution, cfg, batch),
                self.vae_call(spec, resolution, batch)]

    # ----------------------------------------------------------------- consistency

    def check(self, spec: ModelSpec) -> None:
        super().check(spec)
        where = spec.source or spec.name
        if movq_scale_factor(spec) != spec.latent_stride:
            raise ZooError(f"{where}: latent_stride is {spec.latent_stride}, but "
                           f"{spec.vae.name}.config.block_out_channels gives a MoVQ stride of "
                           f"{movq_scale_factor(spec)} (2 ** (blocks - 1))")

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        text, prior, image = (spec.component(n) for n in (PRIOR_TEXT, PRIOR, IMAGE_ENCODER))
        pcfg, ucfg, den = prior.config, spec.denoiser.config, spec.denoiser.name
        embedding = int(pcfg["embedding_dim"])
        return [
            (f"{text.name} hidden width", width(text), f"{prior.name}.config.embedding_dim", embedding),
            (f"{text.name}.config.projection_dim", projection(text),
             f"{prior.name}.config.embedding_dim", embedding),
            (f"{text.name}.seq_len", int(text.seq_len or 0),
             f"{prior.name}.config.num_embeddings", int(pcfg["num_embeddings"])),
            (f"{prior.name}.seq_len", int(prior.seq_len or 0),
             f"{prior.name}.config.num_embeddings + additional_embeddings",
             int(pcfg["num_embeddings"]) + int(pcfg.get("additional_embeddings", 4))),
            (f"{prior.name}.config.embedding_dim", embedding, f"{den}.config.encoder_hid_dim",
             int(ucfg["encoder_hid_dim"])),
            (f"{image.name}.config.projection_dim", projection(image), f"{den}.config.encoder_hid_dim",
             int(ucfg["encoder_hid_dim"])),
        ]
