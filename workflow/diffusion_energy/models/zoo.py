"""The model zoo: architecture files in ``config/models/`` -> pipeline components.

Each architecture file names the diffusers pipeline, each component's class and
its published architecture config. Components are built with random weights
(on the meta device for counting, directly on the GPU for measuring) or loaded
from a local folder. No code path here downloads anything: configs live in the
repository and ``from_pretrained`` is only ever called on a local path with
``local_files_only=True``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import inspect
import json
import logging
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError, load_yaml
from . import catalog

log = logging.getLogger(__name__)

#: Repository folder holding one YAML file per architecture.
MODELS_DIR = catalog.MODELS_DIR

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
#: Stages of an image: conditioning (text encoders, and a prior where a pipeline has one),
#: denoising, decoding.
STAGES = ("text", "denoise", "vae")
CFG_MODES = ("batch", "sequential")

_TOP_KEYS = {
    "name", "display_name", "family", "architecture", "pipeline", "default_precision",
    "cfg", "cfg_mode", "guidance_scale", "latent_stride", "patch_size", "max_resolution",
    "scheduler", "components", "weights", "reference", "test_only", "family_options", "video",
}
_VIDEO_KEYS = {"frames", "fps", "height", "width", "temporal_stride"}
#: Latent positions per axis (latent frames; denoiser patches down a frame's side) a video model makes:
#: the range of Wan 2.1's 3D rotary table (diffusers' ``WanTransformer3DModel``, ``rope_max_seq_len``
#: 1024), the widest of the zoo's video denoisers (CogVideoX and HunyuanVideo were trained on 13 and
#: 33 latent frames). A larger video cannot be made by Wan, and is counted for no other (FLOPs over a
#: million frames would take minutes to count and answer nothing a pipeline runs).
MAX_VIDEO_POSITIONS = 1024
_COMPONENT_KEYS = {"stage", "class", "config_class", "config", "seq_len", "text_tokens"}


class ZooError(UserError, ValueError):
    """An architecture file is missing, malformed or names something unknown."""


@dataclass(frozen=True)
class ComponentSpec:
    """One pipeline component (a text encoder, the denoiser or the VAE)."""

    name: str
    stage: str
    class_path: str
    config: Mapping[str, Any]
    config_class: str | None = None
    #: Tokens a text encoder reads per prompt (tokenizers pad to this length).
    seq_len: int | None = None
    #: Text tokens the denoiser attends to (its share of the joint sequence).
    text_tokens: int | None = None


@dataclass(frozen=True)
class VideoSpec:
    """What a text-to-video model makes by default (the ``video:`` block of its file).

    ``frames``, ``height`` and ``width`` are the published default (how ML.ENERGY
    ran it); ``temporal_stride`` is the frames per latent frame of its causal 3D
    VAE (the first frame has a latent frame of its own), so a video has
    ``(frames - 1) / temporal_stride + 1`` latent frames.
    """

    frames: int
    fps: int
    height: int
    width: int
    temporal_stride: int

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.temporal_stride + 1


@dataclass(frozen=True)
class ModelSpec:
    """An architecture from the zoo: what to build and how the pipeline runs it."""

    name: str
    display_name: str
    family: str
    architecture: str
    pipeline: str
    default_precision: str
    cfg: bool
    cfg_mode: str
    guidance_scale: float
    latent_stride: int
    patch_size: int
    scheduler_class: str
    scheduler_config: Mapping[str, Any]
    components: tuple[ComponentSpec, ...]
    max_resolution: int | None = None
    weights: Path | None = None
    source: Path | None = None
    reference: str = ""
    test_only: bool = False
    #: Settings only the model's family reads (e.g. a prior's steps), from ``family_options:``.
    family_options: Mapping[str, Any] = field(default_factory=dict)
    #: A text-to-video model's default video (None: an image model, one frame).
    video: VideoSpec | None = None

    @property
    def default_frames(self) -> int:
        """Frames of the model's usual output: 1 for an image model."""
        return self.video.frames if self.video else 1

    def frame_size(self, resolution: int) -> tuple[int, int]:
        """(height, width) in px of an output at ``resolution``.

        An image is square. A video's resolution is its short side, as video sizes
        are named (480p, 720p); its width keeps the model's default aspect ratio,
        rounded to the resolution multiple (480 -> 480 x 832 for Wan 2.1).
        """
        if self.video is None:
            return resolution, resolution
        m = self.resolution_multiple
        return resolution, max(m, round(resolution * self.video.width / self.video.height / m) * m)

    def check_frames(self, frames: int) -> None:
        """Raise unless the pipeline makes outputs of this many frames."""
        if isinstance(frames, bool) or not isinstance(frames, int) or frames <= 0:
            raise ZooError(f"frames must be a positive integer, not {frames!r}")
        if self.video is None and frames != 1:
            raise ZooError(f"model {self.name!r} makes images: frames must be 1, not {frames}")
        if self.video and (frames - 1) % self.video.temporal_stride:
            raise ZooError(f"frames {frames} is not 1 + a multiple of {self.video.temporal_stride}, the "
                           f"temporal stride of the VAE of model {self.name!r} (e.g. {self.video.frames})")
        if self.video and self.video.latent_frames(frames) > MAX_VIDEO_POSITIONS:
            most = 1 + (MAX_VIDEO_POSITIONS - 1) * self.video.temporal_stride
            raise ZooError(f"frames {frames:,} is more than model {self.name!r} makes: at most {most:,} "
                           f"({MAX_VIDEO_POSITIONS:,} latent frames, the range of the widest positional "
                           "embedding of the zoo's video denoisers)")

    @property
    def resolution_multiple(self) -> int:
        """Pixels a side must be a multiple of (latent stride x patch size)."""
        return self.latent_stride * self.patch_size

    def component(self, name: str) -> ComponentSpec:
        for comp in self.components:
            if comp.name == name:
                return comp
        raise ZooError(f"model {self.name!r} has no component {name!r}")

    def stage_components(self, stage: str) -> list[ComponentSpec]:
        return [c for c in self.components if c.stage == stage]

    @property
    def denoiser(self) -> ComponentSpec:
        return self.stage_components("denoise")[0]

    @property
    def vae(self) -> ComponentSpec:
        return self.stage_components("vae")[0]

    @property
    def text_encoders(self) -> list[ComponentSpec]:
        return self.stage_components("text")

    def check_resolution(self, resolution: int) -> None:
        """Raise if the pipeline cannot make a square image of this size."""
        m = self.resolution_multiple
        if resolution <= 0 or resolution % m:
            raise ZooError(
                f"resolution {resolution} is not a positive multiple of {m} px, "
                f"the latent stride x patch size of model {self.name!r}"
            )
        if self.max_resolution and resolution > self.max_resolution:
            raise ZooError(
                f"resolution {resolution} exceeds {self.max_resolution} px, the largest "
                f"model {self.name!r} supports (positional embedding size)"
            )
        if self.video and max(self.frame_size(resolution)) > MAX_VIDEO_POSITIONS * m:
            height, width = self.frame_size(resolution)
            raise ZooError(f"resolution {resolution:,} makes {width:,} x {height:,} px frames; model "
                           f"{self.name!r} makes frames of at most {MAX_VIDEO_POSITIONS * m:,} px a side "
                           f"({MAX_VIDEO_POSITIONS:,} denoiser patches of {m} px, the range of the widest "
                           "positional embedding of the zoo's video denoisers)")

    def effective_cfg(self, cfg: bool | None) -> bool:
        return self.cfg if cfg is None else bool(cfg)

    def denoiser_calls_per_step(self, cfg: bool) -> int:
        """Denoiser forwards per step: two batch-1 calls for sequential CFG."""
        return 2 if cfg and self.cfg_mode == "sequential" else 1

    def denoiser_call_batch(self, batch: int, cfg: bool) -> int:
        """Batch of one denoiser forward: doubled when CFG is batched."""
        return 2 * batch if cfg and self.cfg_mode == "batch" else batch

    def denoiser_evaluations(self, steps: int) -> int:
        """Denoiser evaluations (timesteps the pipeline loops over) of one generation at ``steps`` steps.

        Not always ``steps``: PNDM's PLMS warm-up (``skip_prk_steps``, SD 1.5, Openjourney) repeats
        its first timestep, so ``set_timesteps(n)`` gives n + 1 timesteps for n >= 2 and a pipeline
        called with 25 steps runs the U-Net 26 times. Per-image FLOPs, kernels and bytes multiply a
        step's counts by this number, which is what the scheduler itself answers.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise ZooError(f"steps must be a positive integer, not {steps!r}")
        config = json.dumps(dict(self.scheduler_config), sort_keys=True, default=str)
        # Beyond _ASKED_UP_TO steps the surplus there carries over (a warm-up adds a fixed number):
        # 10^15 timesteps would be allocated, and DDIM refuses more than its 1000 training steps.
        asked = min(steps, _ASKED_UP_TO)
        evaluations = _scheduler_timesteps(self.scheduler_class, config, asked, str(self.source or self.name))
        return evaluations + (steps - asked)

    def precision(self, precision: str) -> str:
        """Resolve ``default`` to the model's usual precision; check the name."""
        resolved = self.default_precision if precision == "default" else precision
        if resolved not in PRECISIONS:
            raise ZooError(
                f"unknown precision {precision!r}; allowed: default, {', '.join(PRECISIONS)}"
            )
        return resolved


def available_models(models_dir: Path = MODELS_DIR) -> list[str]:
    """Names of the architectures shipped in ``models_dir``."""
    return catalog.available_models(models_dir)


@functools.cache
def zoo_spec(name: str) -> ModelSpec:
    """The zoo's architecture ``name``, loaded once per process (a spec is frozen): for the many points
    of one model that each need a property of it (its denoiser evaluations)."""
    return load_spec(name)


def resolve_model_path(model: str | Path, models_dir: Path = MODELS_DIR) -> Path:
    """A zoo name or a path to an architecture file -> the file's path."""
    candidate = Path(model)
    if candidate.suffix in {".yaml", ".yml"}:
        if not candidate.is_file():
            raise ZooError(f"architecture file {candidate} does not exist")
        return candidate
    path = models_dir / f"{model}.yaml"
    if not path.is_file():
        raise ZooError(
            f"unknown model {str(model)!r}; known models: {', '.join(available_models(models_dir))}"
        )
    return path


def load_spec(model: str | Path, models_dir: Path = MODELS_DIR) -> ModelSpec:
    """Load and check one architecture file (by zoo name or path).

    Everything a file can get wrong is caught here, before any job runs: YAML syntax
    (file, line and column), keys and their types, classes that do not exist, and
    components that do not fit together (``families.check`` and ``check_geometry``).
    """
    path = resolve_model_path(model, models_dir)
    raw = load_yaml(path, ZooError, "architecture file")
    if raw is None:
        raise ZooError(f"{path}: the architecture file is empty")
    if not isinstance(raw, dict):
        raise ZooError(f"{path}: expected a mapping at the top level, not a {type(raw).__name__}")
    spec = spec_from_dict(raw, source=path)
    if spec.name != path.stem:
        # The file name is the model's name in the grid, the tables and the command line; a copied
        # file whose name: was not changed would count and label another model.
        raise ZooError(f"{path}: name: {spec.name!r} differs from the file name {path.stem!r}; set "
                       f"name: {path.stem} (or rename the file to {spec.name}{path.suffix})")
    return spec


def _positive_int(raw: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int | None:
    """``raw[key]`` as a positive integer (not 8.5, not "8", not true), or ``default`` if absent."""
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ZooError(f"{where}: {key} must be a positive integer, not {value!r}")
    return value


def _mapping(value: Any, what: str, where: str, example: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        kind = "a list" if isinstance(value, list) else repr(value)
        raise ZooError(f"{where}: {what} must be a mapping ({example}), not {kind}")
    return value


@functools.cache
def _listed_names(module_name: str) -> frozenset[str]:
    """Names a lazy package lists in the source of its ``_import_structure`` (diffusers), read
    without importing it (importing diffusers takes seconds: it imports torch). Empty if none."""
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return frozenset()
    if found is None or not found.origin or not found.origin.endswith("__init__.py"):
        return frozenset()
    source = Path(found.origin).read_text(errors="replace")
    if "_import_structure" not in source:
        return frozenset()
    return frozenset(re.findall(r"[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']", source))


@functools.cache
def _module_names(module_name: str) -> frozenset[str] | None:
    """Names a module exports (lazy modules such as transformers list theirs without importing them)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return frozenset(dir(module))


def check_class(dotted: Any, key: str, where: str) -> None:
    """Refuse a ``class:`` that names nothing (``diffusers.UNet2DConditionModelX``), naming the key."""
    if not isinstance(dotted, str) or "." not in dotted:
        raise ZooError(f"{where}: {key} must be a dotted class name such as "
                       f"'diffusers.UNet2DConditionModel', not {dotted!r}")
    module_name, _, attr = dotted.rpartition(".")
    if attr in _listed_names(module_name):
        return
    names = _module_names(module_name)
    if names is None:
        raise ZooError(f"{where}: {key}: cannot import module {module_name!r} (of {dotted!r})")
    if attr not in names:
        stem = attr.lower()[:8]
        close = sorted(n for n in names if n.lower().startswith(stem))
        hint = f"; similar: {', '.join(close[:5])}" if close else ""
        raise ZooError(f"{where}: {key}: {module_name} has no class {attr!r}{hint}")


def _component(name: str, comp: Any, where: str) -> ComponentSpec:
    comp = _mapping(comp, f"component {name!r}", where, "stage, class, config")
    bad = set(comp) - _COMPONENT_KEYS
    if bad:
        raise ZooError(
            f"{where}: component {name!r} has unknown key(s) {sorted(bad)}; "
            f"allowed: {sorted(_COMPONENT_KEYS)}"
        )
    if comp.get("stage") not in STAGES:
        raise ZooError(f"{where}: component {name!r} needs stage one of {STAGES}, got {comp.get('stage')!r}")
    if "class" not in comp:
        raise ZooError(f"{where}: component {name!r} needs a class (components.{name}.class)")
    check_class(comp["class"], f"components.{name}.class", where)
    if comp.get("config_class") is not None:
        check_class(comp["config_class"], f"components.{name}.config_class", where)
    config = _mapping(comp.get("config") or {}, f"components.{name}.config", where, "key: value")
    for key in ("seq_len", "text_tokens"):
        _positive_int(comp, key, f"{where}: components.{name}")
    return ComponentSpec(
        name=str(name),
        stage=comp["stage"],
        class_path=comp["class"],
        config=dict(config),
        config_class=comp.get("config_class"),
        seq_len=comp.get("seq_len"),
        text_tokens=comp.get("text_tokens"),
    )


def _video(raw: Any, where: str) -> VideoSpec:
    """The ``video:`` block: every key a positive integer, the default size a valid video."""
    block = _mapping(raw, "video", where, "frames, fps, height, width, temporal_stride")
    if set(block) != _VIDEO_KEYS:
        raise ZooError(f"{where}: video needs exactly the keys {sorted(_VIDEO_KEYS)}, "
                       f"not {sorted(block)}")
    values = {k: _positive_int(block, k, f"{where}: video") for k in sorted(_VIDEO_KEYS)}
    video = VideoSpec(**values)  # type: ignore[arg-type]
    if (video.frames - 1) % video.temporal_stride:
        raise ZooError(f"{where}: video.frames {video.frames} is not 1 + a multiple of "
                       f"video.temporal_stride {video.temporal_stride}")
    return video


def spec_from_dict(raw: Mapping[str, Any], source: Path | None = None) -> ModelSpec:
    """Validate a parsed architecture file; errors name the file and the key."""
    where = str(source) if source else "<architecture>"
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ZooError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}"
        )
    for key in ("name", "family", "pipeline", "scheduler", "components", "latent_stride"):
        if key not in raw:
            raise ZooError(f"{where}: missing required key {key!r}")
    from . import families  # families build on this module's specs

    if raw["family"] not in families.names():
        raise ZooError(f"{where}: family {raw['family']!r} unknown; allowed: {families.names()}")
    cfg_mode = raw.get("cfg_mode", "batch")
    if cfg_mode not in CFG_MODES:
        raise ZooError(f"{where}: cfg_mode {cfg_mode!r} unknown; allowed: {CFG_MODES}")
    default_precision = raw.get("default_precision", "fp16")
    if default_precision not in PRECISIONS:
        raise ZooError(
            f"{where}: default_precision {default_precision!r} unknown; "
            f"allowed: {sorted(PRECISIONS)}"
        )
    latent_stride = _positive_int(raw, "latent_stride", where)
    patch_size = _positive_int(raw, "patch_size", where, default=1)
    max_resolution = _positive_int(raw, "max_resolution", where)
    comps = _mapping(raw["components"], "components", where,
                     "component name -> {stage, class, config}, e.g. 'unet: {stage: denoise, ...}'")
    components = [_component(name, comp, where) for name, comp in comps.items()]
    for stage in ("denoise", "vae"):
        if sum(c.stage == stage for c in components) != 1:
            raise ZooError(f"{where}: exactly one component must have stage {stage!r}")
    for comp in components:
        if comp.stage == "text" and not comp.seq_len:
            raise ZooError(f"{where}: text component {comp.name!r} needs seq_len")
    sched = _mapping(raw["scheduler"], "scheduler", where, "class: diffusers.<Scheduler>, config: {...}")
    if "class" not in sched:
        raise ZooError(f"{where}: scheduler needs a class (scheduler.class)")
    check_class(sched["class"], "scheduler.class", where)
    sched_config = _mapping(sched.get("config") or {}, "scheduler.config", where, "key: value")
    guidance = raw.get("guidance_scale", 7.5)
    if isinstance(guidance, bool) or not isinstance(guidance, int | float):
        raise ZooError(f"{where}: guidance_scale must be a number, not {guidance!r}")
    for key in ("cfg", "test_only"):
        if key in raw and not isinstance(raw[key], bool):
            raise ZooError(f"{where}: {key} must be true or false, not {raw[key]!r}")
    options = _mapping(raw.get("family_options") or {}, "family_options", where, "key: value")
    video = _video(raw["video"], where) if "video" in raw else None
    weights = raw.get("weights")
    if weights and not Path(str(weights)).expanduser().is_dir():
        raise ZooError(f"{where}: weights: {weights} is not a folder (no such folder; it should hold one "
                       "subfolder of local weights per component)")
    assert latent_stride is not None and patch_size is not None
    spec = ModelSpec(
        name=str(raw["name"]),
        display_name=str(raw.get("display_name", raw["name"])),
        family=raw["family"],
        architecture=str(raw.get("architecture", raw["family"])),
        pipeline=raw["pipeline"],
        default_precision=default_precision,
        cfg=bool(raw.get("cfg", True)),
        cfg_mode=cfg_mode,
        guidance_scale=float(guidance),
        latent_stride=latent_stride,
        patch_size=patch_size,
        scheduler_class=sched["class"],
        scheduler_config=dict(sched_config),
        components=tuple(components),
        max_resolution=max_resolution,
        weights=Path(weights).expanduser() if weights else None,
        source=source,
        reference=str(raw.get("reference", "")),
        test_only=bool(raw.get("test_only", False)),
        family_options=dict(options),
        video=video,
    )
    try:
        families.check(spec)
    except KeyError as exc:
        raise ZooError(f"{where}: the {spec.family} family needs config key {exc} "
                       "of a component to check that the components fit together") from None
    check_geometry(spec)
    return spec


#: Families whose pipeline packs latents into patches before the denoiser: FLUX packs 2x2
#: latents into one token, and its transformer's own ``patch_size`` is 1.
PIPELINE_PACKING = {"flux": 2}


def vae_stride(comp: ComponentSpec) -> int | None:
    """Pixels per latent of a VAE, from its config (None where the config does not say)."""
    cfg = comp.config
    cls = comp.class_path.rsplit(".", 1)[-1]
    for key in {"AutoencoderDC": ("encoder_block_out_channels",),
                "AutoencoderKLQwenImage": ("dim_mult",),
                "AutoencoderKLWan": ("dim_mult",)}.get(cls, ("block_out_channels",)):
        if isinstance(cfg.get(key), list) and cfg[key]:
            return int(2 ** (len(cfg[key]) - 1))
    return None


def check_geometry(spec: ModelSpec) -> None:
    """The file's latent stride and patch size match its VAE and denoiser (the resolution multiple).

    A mismatch would make every resolution check wrong and fail only in the first
    forward on a GPU: the VAE's downsampling (``2 ** (len(block_out_channels) - 1)``)
    must equal ``latent_stride``, the denoiser's ``patch_size`` (times the pipeline's
    own packing) must equal ``patch_size``, and ``max_resolution`` must not exceed
    what the denoiser's positional embedding covers (``pos_embed_max_size``).
    """
    where = spec.source or spec.name
    stride = vae_stride(spec.vae)
    if stride is not None and stride != spec.latent_stride:
        raise ZooError(f"{where}: latent_stride is {spec.latent_stride}, but the VAE {spec.vae.name!r} "
                       f"downsamples by {stride} (its config's block count): resolutions would be checked "
                       "against the wrong multiple")
    den = spec.denoiser.config
    patch = den.get("patch_size")
    if isinstance(patch, int) and not isinstance(patch, bool):
        expected = patch * PIPELINE_PACKING.get(spec.family, 1)
        if expected != spec.patch_size:
            raise ZooError(f"{where}: patch_size is {spec.patch_size}, but the denoiser "
                           f"{spec.denoiser.name!r} patches {expected}x{expected} latents "
                           f"({spec.denoiser.name}.config.patch_size {patch})")
    pos = den.get("pos_embed_max_size")
    if isinstance(pos, int) and spec.max_resolution:
        covered = pos * spec.patch_size * spec.latent_stride
        if spec.max_resolution > covered:
            raise ZooError(f"{where}: max_resolution {spec.max_resolution} exceeds {covered} px, what the "
                           f"denoiser's pos_embed_max_size {pos} covers (x patch {spec.patch_size} "
                           f"x stride {spec.latent_stride})")
    m = spec.resolution_multiple
    if spec.video and (spec.video.height % m or spec.video.width % m):
        raise ZooError(f"{where}: video size {spec.video.height} x {spec.video.width} is not a multiple of "
                       f"{spec.resolution_multiple} px (latent_stride x patch_size)")
    if isinstance(pos, int) and not spec.max_resolution:
        raise ZooError(f"{where}: max_resolution is missing: the denoiser's pos_embed_max_size {pos} "
                       f"limits images to {pos * spec.patch_size * spec.latent_stride} px")


def import_object(dotted: str) -> Any:
    """``"diffusers.UNet2DConditionModel"`` -> the class (clear error if absent)."""
    module_name, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ZooError(f"cannot import {dotted!r}: {exc}") from exc


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Create parameters directly in ``dtype`` (no fp32 copy of a 20B model)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _check_config_keys(cls: Any, comp: ComponentSpec, model: str) -> None:
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = set(comp.config) - set(params)
    if unknown:
        raise ZooError(
            f"model {model!r}, component {comp.name!r}: {comp.class_path} has no "
            f"config key(s) {sorted(unknown)}"
        )


def _check_config_class_keys(config_cls: Any, comp: ComponentSpec, model: str) -> None:
    """Refuse keys a transformers config does not know (nested sub-configs too).

    Transformers configs accept any keyword and keep an unknown one as a plain
    attribute, so a typo (``num_hiden_layers``) would silently build the default
    architecture. A key is unknown when it is kept verbatim but absent from the
    default config; legacy keys the config converts (``rope_scaling``) pass.
    """
    built, default = config_cls(**comp.config).to_dict(), config_cls().to_dict()
    unknown = [k for k in comp.config if k in built and k not in default]
    for sub, values in comp.config.items():
        if isinstance(values, Mapping) and isinstance(default.get(sub), Mapping):
            unknown += [f"{sub}.{k}" for k in values if k in built[sub] and k not in default[sub]]
    if unknown:
        raise ZooError(
            f"model {model!r}, component {comp.name!r}: {comp.config_class} has no "
            f"config key(s) {sorted(unknown)}"
        )


def _construct(spec: ModelSpec, comp: ComponentSpec, make: Any) -> Any:
    """``make()``; an error the library's constructor raises on a config (a list of the wrong
    length, heads that do not divide the width) becomes one line naming the file and the key."""
    try:
        return make()
    except ZooError:
        raise
    except Exception as exc:  # noqa: BLE001 - a constructor fails on its config only; cause kept
        inner: BaseException = exc
        while inner.__cause__ is not None:  # huggingface_hub wraps the config's own ValueError
            inner = inner.__cause__
        detail = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
        raise ZooError(f"{spec.source or spec.name}: components.{comp.name}.config does not build a "
                       f"{comp.class_path.rsplit('.', 1)[-1]}: {detail}") from exc


def build_component(
    spec: ModelSpec,
    comp: ComponentSpec,
    device: str | torch.device = "meta",
    dtype: torch.dtype = torch.float32,
) -> torch.nn.Module:
    """Build one component with random weights (or local weights) on ``device``."""
    cls = import_object(comp.class_path)
    if spec.weights is not None:
        # diffusers takes torch_dtype=, transformers 5 dtype=
        dtype_kw = {"dtype": dtype} if comp.config_class else {"torch_dtype": dtype}
        module = cls.from_pretrained(spec.weights, subfolder=comp.name, local_files_only=True, **dtype_kw)
        return module.to(device).eval().requires_grad_(False)
    with torch.device(device), default_dtype(dtype):
        if comp.config_class:
            config_cls = import_object(comp.config_class)
            _construct(spec, comp, lambda: _check_config_class_keys(config_cls, comp, spec.name))
            module = _construct(spec, comp, lambda: cls(config_cls(**comp.config)))
        else:
            _check_config_keys(cls, comp, spec.name)
            module = _construct(spec, comp, lambda: cls(**comp.config))
    if any(p.dtype != dtype for p in module.parameters() if p.is_floating_point()):
        module = module.to(dtype=dtype)
    return module.eval().requires_grad_(False)


def build_components(
    spec: ModelSpec,
    device: str | torch.device = "meta",
    dtype: torch.dtype = torch.float32,
    stages: tuple[str, ...] = STAGES,
) -> dict[str, torch.nn.Module]:
    """All components of the given stages, keyed by their pipeline name."""
    return {
        c.name: build_component(spec, c, device, dtype) for c in spec.components if c.stage in stages
    }


def build_scheduler(spec: ModelSpec) -> Any:
    """The default scheduler, built outside any device context: inside one, diffusers' Euler and
    DPM-Solver schedulers fail in ``set_timesteps`` on CUDA and most fail on meta."""
    cls = import_object(spec.scheduler_class)
    try:
        return cls.from_config(dict(spec.scheduler_config))
    except Exception as exc:  # noqa: BLE001 - a scheduler fails on its config only; cause kept
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ZooError(f"{spec.source or spec.name}: scheduler.config does not build a "
                       f"{spec.scheduler_class.rsplit('.', 1)[-1]}: {detail}") from exc


#: Steps up to which the scheduler itself is asked for its timesteps (its training steps, for DDIM).
_ASKED_UP_TO = 1000

#: ``mu`` (log of the resolution-dependent time shift) given to a scheduler that shifts its
#: timesteps by the image size: the shift changes where the timesteps lie, not how many there are.
_NEUTRAL_MU = 0.0


@functools.lru_cache(maxsize=1024)
def _scheduler_timesteps(scheduler_class: str, config_json: str, steps: int, where: str) -> int:
    """``len(scheduler.timesteps)`` after ``set_timesteps(steps)`` (cached: keyed on the class and a
    frozen JSON of its config, so every model with the same scheduler shares one answer)."""
    cls = import_object(scheduler_class)
    # On CPU even inside a caller's meta/CUDA device context (schedulers fail there, as above); a
    # terminal shift at one step divides by zero in the timestep values, never in their number.
    try:
        with torch.device("cpu"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            scheduler = cls.from_config(json.loads(config_json))
            kwargs: dict[str, Any] = {}
            if ("mu" in inspect.signature(scheduler.set_timesteps).parameters
                    and scheduler.config.get("use_dynamic_shifting", False)):
                kwargs["mu"] = _NEUTRAL_MU
            scheduler.set_timesteps(steps, device="cpu", **kwargs)
    except Exception as exc:  # noqa: BLE001 - a scheduler fails on its config only; cause kept
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ZooError(f"{where}: the scheduler {scheduler_class.rsplit('.', 1)[-1]} cannot set {steps} "
                       f"timesteps: {detail}") from exc
    return int(len(scheduler.timesteps))


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def weights_source(spec: ModelSpec) -> str:
    """Provenance string for the measurement rows."""
    return f"local:{spec.weights}" if spec.weights else "random-init"
