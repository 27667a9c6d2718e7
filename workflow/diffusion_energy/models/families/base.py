"""What every pipeline family says about itself: its calls, their inputs, and how it is fed.

FLOP counting (each stage's calls on the meta device) and measurement (the
real pipeline on the GPU) must agree on shapes, so both take them from the
family of the model: the token ids a text encoder reads, the embeddings the
pipeline is given, the inputs of one denoiser forward, and the latents the VAE
decodes. Random token ids of the tokenizer's padded length cost exactly what a
real prompt costs (tokenizers pad to a fixed length).

A family is a subclass of ``Family`` registered under its name; the generic
parts (one text-encoder call per prompt set, one denoiser call per step, one
VAE decode) live here, so a family only writes what differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..catalog import ZooError
from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec

if TYPE_CHECKING:
    import torch as _torch

    Tensor = _torch.Tensor
    Modules = Mapping[str, _torch.nn.Module]
    Device = str | _torch.device
else:  # names for annotations only (strings here): torch is imported when a tensor is made
    Tensor = Modules = Device = Any


@dataclass(frozen=True)
class Call:
    """One kind of forward call of a component while a pipeline makes ``batch`` images.

    ``calls`` is how many such calls there are per pipeline call (``per`` "image")
    or per denoising step (``per`` "step"). ``shape`` is everything besides the call
    batch that fixes the call's cost: calls of equal (component, shape) differ only
    in their batch, so their counts are derived from two counted batches
    (``counting.flops``). ``prepare(module, call_batch, device, dtype)`` makes the
    call's inputs and returns a function that performs it (so that counting sees
    the call alone, not the making of its inputs).
    """

    component: str
    stage: str
    shape: tuple[Any, ...]
    call_batch: int
    calls: int
    per: str
    tokens: int
    prepare: Callable[[torch.nn.Module, int, Device, torch.dtype], Callable[[], Any]]


def vocab_size(comp: ComponentSpec) -> int:
    cfg = comp.config
    if "vocab_size" in cfg:
        return int(cfg["vocab_size"])
    text_cfg = cfg.get("text_config", {})
    return int(text_cfg.get("vocab_size", 32000))


def latent_channels(spec: ModelSpec) -> int:
    cfg = spec.vae.config
    return int(cfg.get("latent_channels", cfg.get("z_dim", 4)))


def latent_side(spec: ModelSpec, resolution: int) -> int:
    spec.check_resolution(resolution)
    return resolution // spec.latent_stride


def noisy_latents(spec: ModelSpec, resolution: int, batch: int, device: Device, dtype: torch.dtype
                  ) -> Tensor:
    """The denoiser's latent input for ``batch`` samples (random: same cost)."""
    side = latent_side(spec, resolution)
    return torch.randn(batch, spec.denoiser.config["in_channels"], side, side, device=device, dtype=dtype)


def mid_timestep(batch: int, device: Device, dtype: torch.dtype) -> Tensor:
    """One timestep per sample, mid-schedule: its value changes no FLOPs."""
    return torch.full((batch,), 500.0, device=device, dtype=dtype)


def random_ids(comp: ComponentSpec, n_prompts: int, device: Device) -> Tensor:
    """Token ids of ``n_prompts`` prompts padded to the encoder's length (random: same cost)."""
    assert comp.seq_len is not None
    return torch.randint(0, vocab_size(comp), (n_prompts, comp.seq_len), device=device)


class Family:
    """A pipeline family: the stage inputs and calls of its models (subclass per family)."""

    #: The ``family:`` value of architecture files of this family.
    name: ClassVar[str] = ""

    # ----------------------------------------------------------------- text stage

    def text_inputs(self, spec: ModelSpec, comp: ComponentSpec, n_prompts: int, device: Device
                    ) -> dict[str, Any]:
        """Keyword arguments of one call of a text encoder on ``n_prompts`` prompts."""
        return {"input_ids": random_ids(comp, n_prompts, device)}

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        """Run the conditioning as the pipeline would; the embeddings it is called with.

        Keys are the pipeline's own argument names without the ``negative_`` prefix.
        """
        raise NotImplementedError(f"family {self.name!r} does not encode prompts")

    def encode_negative_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                                ) -> dict[str, Tensor]:
        """The negative prompt's embeddings (CFG): the prompt's call unless the pipeline's differs."""
        return self.encode_prompts(spec, modules, n_prompts, device)

    def pipeline_call_kwargs(self, spec: ModelSpec, positive: Mapping[str, Tensor],
                             negative: Mapping[str, Tensor] | None, cfg: bool) -> dict[str, Any]:
        """Arguments of the pipeline call that switch CFG on or off as the model runs it."""
        kwargs: dict[str, Any] = dict(positive)
        if cfg:
            assert negative is not None, "CFG needs negative embeddings"
            kwargs.update({f"negative_{k}": v for k, v in negative.items()})
        kwargs["guidance_scale"] = spec.guidance_scale if cfg else 1.0
        return kwargs

    # ----------------------------------------------------------------- denoiser and VAE

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype) -> dict[str, Any]:
        """Keyword arguments of one denoiser forward at the batch the pipeline uses."""
        raise NotImplementedError(f"family {self.name!r} has no denoiser inputs")

    def denoiser_tokens(self, spec: ModelSpec, resolution: int) -> tuple[int, int]:
        """(image tokens, text tokens) one denoiser forward attends over, per sample."""
        side = latent_side(spec, resolution) // spec.patch_size
        return side * side, int(spec.denoiser.text_tokens or 0)

    def vae_latents(self, spec: ModelSpec, resolution: int, batch: int, device: Device,
                    dtype: torch.dtype) -> Tensor:
        """The latents the VAE decodes for ``batch`` images of this resolution."""
        side = latent_side(spec, resolution)
        return torch.randn(batch, latent_channels(spec), side, side, device=device, dtype=dtype)

    def vae_decode(self, module: torch.nn.Module, latents: Tensor) -> Any:
        return module.decode(latents)

    def replayed_modules(self, spec: ModelSpec, comp: ComponentSpec) -> tuple[str, ...]:
        """Submodules of a component that one call calls repeatedly on equal shapes without being
        repeated in structure, for counting to trace once and replay (``flops.RepeatedBlocks``)."""
        return ()

    # ----------------------------------------------------------------- consistency

    def predicted_channels(self, spec: ModelSpec) -> int | None:
        """Latent channels the denoiser predicts (before any patch packing); None: unknown."""
        den = spec.denoiser.config
        value = den.get("out_channels") or den.get("in_channels")
        return int(value) if isinstance(value, int) else None

    def input_channels(self, spec: ModelSpec) -> int | None:
        """Latent channels the denoiser takes (before any patch packing); None: unknown."""
        value = spec.denoiser.config.get("in_channels")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    def text_width_checks(self, spec: ModelSpec) -> list[tuple[str, int, str, int]]:
        """Pairs of widths that must be equal: (what, value, against what, value)."""
        return []

    def check(self, spec: ModelSpec) -> None:
        """Raise ``ZooError`` naming the mismatch if the components do not fit together.

        Checked when an architecture is loaded, so an inconsistent file fails with
        the two keys named instead of a shape error in the first forward: the VAE
        decodes the latent channels the denoiser predicts (or twice that, for a
        denoiser that also predicts its variance), and each family's text widths
        meet the denoiser's conditioning inputs.
        """
        where = spec.source or spec.name
        if spec.video is not None and type(self).calls is Family.calls:
            raise ZooError(f"{where}: family {self.name!r} makes images; a video: block is for "
                           "text-to-video families")
        predicted, channels = self.predicted_channels(spec), latent_channels(spec)
        if predicted is not None and predicted not in (channels, 2 * channels):
            raise ZooError(
                f"{where}: the denoiser {spec.denoiser.name!r} predicts {predicted} latent channels, but "
                f"{spec.vae.name}.config.latent_channels is {channels}: the VAE cannot decode them")
        taken = self.input_channels(spec)
        if taken is not None and taken != channels:
            raise ZooError(
                f"{where}: the denoiser {spec.denoiser.name!r} takes {taken} latent channels "
                f"({spec.denoiser.name}.config.in_channels), but {spec.vae.name}.config.latent_channels is "
                f"{channels}: the pipeline's latents do not fit the denoiser")
        for what, value, other, expected in self.text_width_checks(spec):
            if value != expected:
                raise ZooError(f"{where}: {what} is {value}, but {other} is {expected}: "
                               "the text embeddings do not fit the denoiser")

    # ----------------------------------------------------------------- the calls of an image

    def calls(self, spec: ModelSpec, resolution: int, cfg: bool, batch: int) -> list[Call]:
        """Every call a pipeline makes for ``batch`` images: text encoders, denoiser, VAE.

        Pipelines encode the prompt and, with CFG, the negative prompt in separate
        calls of ``batch`` prompts each; the denoiser runs once per step at the
        doubled batch (batched CFG) or twice at ``batch`` (sequential CFG); the
        VAE decodes all ``batch`` latents at once.
        """
        out = [self._text_call(spec, comp, cfg, batch) for comp in spec.text_encoders]
        out.append(self.denoiser_call(spec, resolution, cfg, batch))
        out.append(self.vae_call(spec, resolution, batch))
        return out

    def _text_call(self, spec: ModelSpec, comp: ComponentSpec, cfg: bool, batch: int) -> Call:
        def prepare(module: torch.nn.Module, b: int, device: Device, dtype: torch.dtype) -> Callable[[], Any]:
            kwargs = self.text_inputs(spec, comp, b, device)
            return lambda: module(**kwargs)

        return Call(comp.name, "text", (), batch, 2 if cfg else 1, "image", int(comp.seq_len or 0), prepare)

    def denoiser_call(self, spec: ModelSpec, resolution: int, cfg: bool, batch: int) -> Call:
        den = spec.denoiser
        img, txt = self.denoiser_tokens(spec, resolution)
        joint = img + (txt if spec.architecture != "unet" else 0)

        def prepare(module: torch.nn.Module, b: int, device: Device, dtype: torch.dtype) -> Callable[[], Any]:
            kwargs = self.denoiser_inputs(spec, resolution, b, device, dtype)
            return lambda: module(**kwargs)

        return Call(den.name, "denoise", (resolution,), spec.denoiser_call_batch(batch, cfg),
                    spec.denoiser_calls_per_step(cfg), "step", joint, prepare)

    def vae_call(self, spec: ModelSpec, resolution: int, batch: int) -> Call:
        side = latent_side(spec, resolution)

        def prepare(module: torch.nn.Module, b: int, device: Device, dtype: torch.dtype) -> Callable[[], Any]:
            latents = self.vae_latents(spec, resolution, b, device, dtype)
            return lambda: self.vae_decode(module, latents)

        return Call(spec.vae.name, "vae", (resolution,), batch, 1, "image", side * side, prepare)


#: Every family, by name (filled by ``register``).
REGISTRY: dict[str, Family] = {}


class DistilledGuidance:
    """For a guidance-distilled denoiser (FLUX.1-dev, HunyuanVideo): ``guidance_scale`` is the
    embedded distillation guidance, always passed; ``true_cfg_scale`` > 1 switches the second
    (negative-prompt) call on. Put it before the family class: ``class X(DistilledGuidance, Family)``."""

    def pipeline_call_kwargs(self, spec: ModelSpec, positive: Mapping[str, Tensor],
                             negative: Mapping[str, Tensor] | None, cfg: bool) -> dict[str, Any]:
        kwargs = super().pipeline_call_kwargs(spec, positive, negative, cfg)  # type: ignore[misc]
        kwargs["true_cfg_scale"] = 4.0 if cfg else 1.0
        kwargs["guidance_scale"] = spec.guidance_scale
        return kwargs


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: make a family known by its ``name``."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"family name {cls.name!r} is empty or taken")
    REGISTRY[cls.name] = cls()
    return cls
