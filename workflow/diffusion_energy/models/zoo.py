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
import importlib
import inspect
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

log = logging.getLogger(__name__)

def _models_dir() -> Path:
    """The zoo folder: $DIFFUSION_ENERGY_MODELS, else the checkout's config/models.

    The package is used from its checkout (``pip install -e .``); a copy installed
    elsewhere finds the zoo through the variable or the working directory.
    """
    if os.environ.get("DIFFUSION_ENERGY_MODELS"):
        return Path(os.environ["DIFFUSION_ENERGY_MODELS"])
    beside = Path(__file__).resolve().parents[3] / "config" / "models"
    return beside if beside.is_dir() else Path.cwd() / "config" / "models"


#: Repository folder holding one YAML file per architecture.
MODELS_DIR = _models_dir()

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
    "scheduler", "components", "weights", "reference", "test_only", "family_options",
}
_COMPONENT_KEYS = {"stage", "class", "config_class", "config", "seq_len", "text_tokens"}


class ZooError(ValueError):
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

    def effective_cfg(self, cfg: bool | None) -> bool:
        return self.cfg if cfg is None else bool(cfg)

    def denoiser_calls_per_step(self, cfg: bool) -> int:
        """Denoiser forwards per step: two batch-1 calls for sequential CFG."""
        return 2 if cfg and self.cfg_mode == "sequential" else 1

    def denoiser_call_batch(self, batch: int, cfg: bool) -> int:
        """Batch of one denoiser forward: doubled when CFG is batched."""
        return 2 * batch if cfg and self.cfg_mode == "batch" else batch

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
    return sorted(p.stem for p in models_dir.glob("*.yaml"))


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
    """Load and check one architecture file (by zoo name or path)."""
    path = resolve_model_path(model, models_dir)
    with path.open() as fh:
        raw = yaml.safe_load(fh)
    if not isinstance(raw, dict):
        raise ZooError(f"{path}: expected a mapping at the top level")
    return spec_from_dict(raw, source=path)


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
    components = []
    for comp_name, comp in raw["components"].items():
        bad = set(comp) - _COMPONENT_KEYS
        if bad:
            raise ZooError(
                f"{where}: component {comp_name!r} has unknown key(s) {sorted(bad)}; "
                f"allowed: {sorted(_COMPONENT_KEYS)}"
            )
        if comp.get("stage") not in STAGES:
            raise ZooError(
                f"{where}: component {comp_name!r} needs stage one of {STAGES}, "
                f"got {comp.get('stage')!r}"
            )
        components.append(
            ComponentSpec(
                name=comp_name,
                stage=comp["stage"],
                class_path=comp["class"],
                config=dict(comp.get("config", {})),
                config_class=comp.get("config_class"),
                seq_len=comp.get("seq_len"),
                text_tokens=comp.get("text_tokens"),
            )
        )
    for stage in ("denoise", "vae"):
        if sum(c.stage == stage for c in components) != 1:
            raise ZooError(f"{where}: exactly one component must have stage {stage!r}")
    for comp in components:
        if comp.stage == "text" and not comp.seq_len:
            raise ZooError(f"{where}: text component {comp.name!r} needs seq_len")
    sched = raw["scheduler"]
    weights = raw.get("weights")
    spec = ModelSpec(
        name=str(raw["name"]),
        display_name=str(raw.get("display_name", raw["name"])),
        family=raw["family"],
        architecture=str(raw.get("architecture", raw["family"])),
        pipeline=raw["pipeline"],
        default_precision=default_precision,
        cfg=bool(raw.get("cfg", True)),
        cfg_mode=cfg_mode,
        guidance_scale=float(raw.get("guidance_scale", 7.5)),
        latent_stride=int(raw["latent_stride"]),
        patch_size=int(raw.get("patch_size", 1)),
        scheduler_class=sched["class"],
        scheduler_config=dict(sched.get("config", {})),
        components=tuple(components),
        max_resolution=raw.get("max_resolution"),
        weights=Path(weights).expanduser() if weights else None,
        source=source,
        reference=str(raw.get("reference", "")),
        test_only=bool(raw.get("test_only", False)),
        family_options=dict(raw.get("family_options") or {}),
    )
    try:
        families.check(spec)
    except KeyError as exc:
        raise ZooError(f"{where}: the {spec.family} family needs config key {exc} "
                       "of a component to check that the components fit together") from None
    return spec


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
            _check_config_class_keys(config_cls, comp, spec.name)
            config = config_cls(**comp.config)
            module = cls(config)
        else:
            _check_config_keys(cls, comp, spec.name)
            module = cls(**comp.config)
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
    """The default scheduler, built outside any device context (see NOTES.md)."""
    cls = import_object(spec.scheduler_class)
    return cls.from_config(dict(spec.scheduler_config))


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def weights_source(spec: ModelSpec) -> str:
    """Provenance string for the measurement rows."""
    return f"local:{spec.weights}" if spec.weights else "random-init"
