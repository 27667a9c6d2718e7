"""What text-to-video families share: frames as one more axis of every stage.

A video pipeline encodes the prompt as an image pipeline does, denoises latents
of shape (channels, latent frames, height / 8, width / 8) once per step and
decodes them with a causal 3D VAE that turns each latent frame after the first
into ``temporal_stride`` frames. Its resolution is the short side of the frame
(``ModelSpec.frame_size``). Calls carry ``(resolution, frames)`` as their shape:
the cost of a call depends on both, and counting derives batches per shape.

The VAE decodes one video at a time (as ``vae.enable_slicing()`` makes a
pipeline do): a video's decode is large enough to fill a GPU alone, and the
CogVideoX VAE splits its convolutions into temporal chunks by tensor size, so
a batched decode launches other kernels at each batch (and at some batches
fails its own shape check). Counting and measuring both decode this way.

Families here take ``frames`` where image families take none; the dispatch in
``families`` passes it only to families derived from ``VideoFamily``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..catalog import ZooError
from ..lazy_torch import torch
from ..spec import ComponentSpec, ModelSpec
from .base import Call, Device, Family, Modules, Tensor, latent_channels


def video_of(spec: ModelSpec):  # noqa: ANN201 - VideoSpec
    """The model's ``video:`` block (a video family's file must have one)."""
    if spec.video is None:
        raise ZooError(f"{spec.source or spec.name}: family {spec.family!r} makes videos; the file needs "
                       "a video: block (frames, fps, height, width, temporal_stride)")
    return spec.video


class VideoFamily(Family):
    """A text-to-video pipeline family (subclass per family)."""

    def encode_prompts(self, spec: ModelSpec, modules: Modules, n_prompts: int, device: Device
                       ) -> dict[str, Tensor]:
        """One text encoder's last hidden states (Wan's UMT5, CogVideoX's T5); a family with more
        encoders overrides this."""
        te = spec.component("text_encoder")
        return {"prompt_embeds": modules[te.name](**self.text_inputs(spec, te, n_prompts, device))[0]}

    def latent_size(self, spec: ModelSpec, resolution: int) -> tuple[int, int]:
        """(height, width) of a latent frame."""
        spec.check_resolution(resolution)
        height, width = spec.frame_size(resolution)
        return height // spec.latent_stride, width // spec.latent_stride

    def latent_frames(self, spec: ModelSpec, frames: int) -> int:
        """Latent frames the VAE decodes for a video of ``frames`` frames."""
        spec.check_frames(frames)
        return video_of(spec).latent_frames(frames)

    def denoiser_frames(self, spec: ModelSpec, frames: int) -> int:
        """Latent frames the denoiser sees (a pipeline may pad them)."""
        return self.latent_frames(spec, frames)

    def temporal_patch(self, spec: ModelSpec) -> int:
        """Latent frames per denoiser token."""
        return 1

    def size_kwargs(self, spec: ModelSpec, resolution: int, frames: int) -> dict[str, int]:
        """The pipeline call's size arguments."""
        height, width = spec.frame_size(resolution)
        return {"height": height, "width": width, "num_frames": frames}

    def video_tokens(self, spec: ModelSpec, resolution: int, frames: int) -> int:
        """Video tokens one denoiser forward attends over, per sample."""
        h, w = self.latent_size(spec, resolution)
        t = self.denoiser_frames(spec, frames) // self.temporal_patch(spec)
        return t * (h // spec.patch_size) * (w // spec.patch_size)

    def noisy_video(self, spec: ModelSpec, resolution: int, frames: int, batch: int, device: Device,
                    dtype: torch.dtype) -> torch.Tensor:
        """The denoiser's latent input, (batch, channels, latent frames, h, w) (random: same cost)."""
        h, w = self.latent_size(spec, resolution)
        channels = int(spec.denoiser.config["in_channels"])
        latent_frames = self.denoiser_frames(spec, frames)
        return torch.randn(batch, channels, latent_frames, h, w, device=device, dtype=dtype)

    def vae_latents(self, spec: ModelSpec, resolution: int, batch: int, device: Device,
                    dtype: torch.dtype, frames: int | None = None) -> torch.Tensor:
        """The latents the VAE decodes for ``batch`` videos: (batch, channels, latent frames, h, w)."""
        frames = video_of(spec).frames if frames is None else frames
        h, w = self.latent_size(spec, resolution)
        return torch.randn(batch, latent_channels(spec), self.latent_frames(spec, frames), h, w,
                           device=device, dtype=dtype)

    def denoiser_inputs(self, spec: ModelSpec, resolution: int, call_batch: int, device: Device,
                        dtype: torch.dtype, frames: int | None = None) -> dict[str, Any]:
        raise NotImplementedError(f"family {self.name!r} has no denoiser inputs")

    def replayed_modules(self, spec: ModelSpec, comp: ComponentSpec) -> tuple[str, ...]:
        # The causal VAEs decode a video latent frame by latent frame (Wan), two at a time (CogVideoX)
        # or in overlapping temporal tiles (HunyuanVideo), calling their decoder once per piece:
        # pieces of equal shape after the first few launch the same kernels.
        return ("decoder",) if comp.stage == "vae" else ()

    def check(self, spec: ModelSpec) -> None:
        video_of(spec)
        super().check(spec)

    # ----------------------------------------------------------------- the calls of a video

    def calls(self, spec: ModelSpec, resolution: int, cfg: bool, batch: int,  # type: ignore[override]
              frames: int | None = None) -> list[Call]:
        """Every call a pipeline makes for ``batch`` videos of ``frames`` frames (default: the model's)."""
        frames = video_of(spec).frames if frames is None else frames
        spec.check_frames(frames)
        out = [self._text_call(spec, comp, cfg, batch) for comp in spec.text_encoders]
        out.append(self._video_denoiser_call(spec, resolution, frames, cfg, batch))
        out.append(self._video_vae_call(spec, resolution, frames, batch))
        return out

    def _video_denoiser_call(self, spec: ModelSpec, resolution: int, frames: int, cfg: bool, batch: int
                             ) -> Call:
        den = spec.denoiser
        joint = self.video_tokens(spec, resolution, frames) + int(den.text_tokens or 0)

        def prepare(module: torch.nn.Module, b: int, device: Device, dtype: torch.dtype) -> Callable[[], Any]:
            kwargs = self.denoiser_inputs(spec, resolution, b, device, dtype, frames=frames)
            return lambda: module(**kwargs)

        return Call(den.name, "denoise", (resolution, frames), spec.denoiser_call_batch(batch, cfg),
                    spec.denoiser_calls_per_step(cfg), "step", joint, prepare)

    def _video_vae_call(self, spec: ModelSpec, resolution: int, frames: int, batch: int) -> Call:
        h, w = self.latent_size(spec, resolution)

        def prepare(module: torch.nn.Module, b: int, device: Device, dtype: torch.dtype) -> Callable[[], Any]:
            latents = self.vae_latents(spec, resolution, b, device, dtype, frames=frames)
            return lambda: self.vae_decode(module, latents)

        return Call(spec.vae.name, "vae", (resolution, frames), 1, batch, "image",
                    self.latent_frames(spec, frames) * h * w, prepare)

    def vae_decode(self, module: torch.nn.Module, latents: torch.Tensor) -> Any:
        """Decode the videos one at a time (see the module's docstring)."""
        return [module.decode(one) for one in latents.split(1)]


def text_width(comp: ComponentSpec) -> int:
    """Hidden width of a text encoder's output (T5/UMT5 d_model, Llama/CLIP hidden_size)."""
    cfg = comp.config.get("text_config", comp.config)
    return int(cfg.get("hidden_size", cfg.get("d_model", 0)))
