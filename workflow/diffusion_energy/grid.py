"""The grid: validated config -> grid points, measurement groups and paths.

The config is checked against ``workflow/schemas/config.schema.yaml`` and then
against the zoo (unknown model, resolution not a multiple of the model's latent
stride x patch size, unknown precision). Every error names the offending key
and the allowed values, so a typo stops the run before anything is measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import UsageError, UserError, json_argument, load_yaml
from .gpu_kinds import pattern_clashes
from .models.zoo import MODELS_DIR, PRECISIONS, ModelSpec, ZooError, available_models, load_spec, zoo_spec
from .sources.schema import point_slug

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(UserError, ValueError):
    """The workflow config is invalid; the message names the key and allowed values."""


@dataclass(frozen=True, order=True)
class GridPoint:
    """One measurable configuration (the GPU kind is added by the workflow)."""

    model: str
    precision: str
    resolution: int
    steps: int
    cfg: bool
    batch: int
    #: Frames per output: 1 for an image, a video's length (``ModelSpec.check_frames``).
    frames: int = 1

    def __post_init__(self) -> None:
        for name in ("resolution", "steps", "batch", "frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{self.model} {self.precision}: {name} must be a positive integer, "
                                  f"not {value!r}")

    @property
    def shape(self) -> tuple[int, bool, int, int]:
        """(resolution, CFG, batch, frames): points of one shape run the same kernels, whatever their
        steps."""
        return (self.resolution, self.cfg, self.batch, self.frames)

    @property
    def slug(self) -> str:
        """File stem of this point inside ``{gpu}/{model}/{precision}/``."""
        return point_slug(self.resolution, self.steps, self.cfg, self.batch, self.frames)

    @classmethod
    def from_slug(cls, model: str, precision: str, slug: str) -> GridPoint:
        m = re.fullmatch(r"(\d+)px(?:_(\d+)frames)?_(\d+)steps_cfg([01])_b(\d+)", slug)
        if not m:
            raise ConfigError(f"not a grid point name: {slug!r} (want e.g. 512px_50steps_cfg1_b1, "
                              "or 480px_81frames_50steps_cfg1_b1 for a video)")
        res, frames, steps, cfg, batch = m.groups()
        try:
            return cls(model, precision, int(res), int(steps), cfg == "1", int(batch), int(frames or 1))
        except ConfigError as exc:
            raise ConfigError(f"point {slug!r}: {str(exc).split(': ', 1)[1]}") from None


def _schema() -> dict[str, Any]:
    with SCHEMA_PATH.open() as fh:
        return yaml.safe_load(fh)


_TYPE_WORDS = {"boolean": "true or false", "integer": "an integer", "number": "a number",
               "string": "a string", "array": "a list", "object": "a mapping"}


def _alternatives(subschemas: list[dict[str, Any]]) -> str:
    """``[{type: boolean}, {enum: [default]}]`` -> ``"true or false, or 'default'"``."""
    words = []
    for sub in subschemas:
        if "enum" in sub:
            words.extend(repr(v) for v in sub["enum"])
        elif sub.get("type") == "array" and "type" in sub.get("items", {}):
            words.append(f"a list of {sub['items']['type']}s")
        elif "type" in sub:
            words.append(_TYPE_WORDS.get(sub["type"], sub["type"]))
    return ", or ".join(words)


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"unknown key(s) {extra} in {where}; allowed keys: {allowed}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not allowed; allowed values: {error.validator_value}"
    if error.validator in ("oneOf", "anyOf"):
        allowed = _alternatives(error.validator_value)
        return f"{where}: {error.instance!r} is not allowed; allowed values: {allowed}"
    return f"{where}: {error.message}"


def non_finite(value: Any, where: str = "") -> list[str]:
    """Keys (dotted paths) holding NaN or an infinity, anywhere in a config block.

    Why: JSON schema bounds cannot refuse them (NaN compares false with every bound, so ``.nan``
    passes ``minimum: 0``), and a NaN tolerance switches its check off without a word.
    """
    if isinstance(value, Mapping):
        return [w for k, v in value.items() for w in non_finite(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, (list, tuple)):
        return [w for i, v in enumerate(value) for w in non_finite(v, f"{where}[{i}]")]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where or '<top level>'}: {value} is not a finite number"]
    return []


def _refuse_non_finite(value: Any, error: type[Exception], prefix: str) -> None:
    bad = non_finite(value)
    if bad:
        raise error(f"{prefix}{'; '.join(bad)} (NaN and infinities are refused everywhere: a NaN bound "
                    "or tolerance would switch its check off)")


def validate_schema(config: Mapping[str, Any]) -> None:
    """Check the config's structure against the JSON schema (and refuse NaN and infinities)."""
    _refuse_non_finite(config, ConfigError, "invalid config: ")
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid config: " + "; ".join(_describe(e) for e in errors))


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a workflow config file: YAML errors name the file, line and column; empty is refused."""
    config = load_yaml(path, ConfigError, "config file")
    if config is None:
        raise ConfigError(f"{path}: the config file is empty (start from config/config.yaml)")
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, "
                          f"not a {type(config).__name__}")
    return config


def validate_config(config: Mapping[str, Any], models_dir: Path | None = None,
                    workdir: Path | None = None) -> None:
    """Schema check, then zoo checks of every subgrid, the measurement order and the upstream model
    names; with ``workdir``, the folders the config names must exist there. Raises ConfigError."""
    if not isinstance(config, Mapping) or not config:
        raise ConfigError("the config is empty: give at least grids (start from config/config.yaml)")
    validate_schema(config)
    grid_points(config, models_dir)
    order = list(config.get("measure_order", []))
    known = available_models(models_dir or MODELS_DIR)
    unknown = [m for m in order if m not in known]
    if unknown:
        raise ConfigError(f"measure_order: unknown model(s) {unknown}; known models: {known}")
    if len(set(order)) != len(order):
        raise ConfigError(f"measure_order: a model is listed twice: {order}")
    clashes = pattern_clashes(config.get("gpu_kinds", {}))
    if clashes:
        raise ConfigError(f"gpu_kinds: {'; '.join(clashes)}: a GPU name could not tell them apart")
    for upstream, name in config.get("upstream_models", {}).items():
        if name not in known:
            raise ConfigError(f"upstream_models.{upstream}: {name!r} is not a zoo model; known models: "
                              f"{known} (add config/models/{name}.yaml for a new architecture)")
    if workdir is not None:
        check_paths(config, workdir)


def check_paths(config: Mapping[str, Any], workdir: Path) -> None:
    """The folders the config names exist (relative to the working directory): a typo in
    ``reference_dir`` would otherwise read no shipped rows without a word."""
    folders = [("reference_dir", config.get("reference_dir", "resources/measurements"))]
    folders += [(f"public_sources.{name}", path) for name, path in config.get("public_sources", {}).items()]
    for key, path in folders:
        full = Path(workdir) / path
        if not full.exists():
            raise ConfigError(f"{key}: folder {path!r} does not exist (in {Path(workdir).resolve()})")
        if key == "reference_dir" and not full.is_dir():
            raise ConfigError(f"{key}: {path!r} is a file, not a folder of <gpu kind>.parquet files")


def protocol_settings(text: str | None, name: str = "--protocol") -> dict[str, Any]:
    """A JSON protocol block (the measure job's ``--protocol``), checked by the config's schema."""
    return _checked_block(text, name, "protocol")


def gpu_kinds_settings(text: str | None, name: str = "--gpu-kinds") -> dict[str, Any]:
    """A JSON gpu_kinds block (``--gpu-kinds``), checked by the config's schema."""
    return _checked_block(text, name, "gpu_kinds")


def _checked_block(text: str | None, name: str, key: str) -> dict[str, Any]:
    value = json_argument(text, name)
    _refuse_non_finite(value, UsageError, f"{name}: ")
    validator = jsonschema.Draft202012Validator(_schema()["properties"][key])
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        described = "; ".join(_describe(e) for e in errors).replace("<top level>", "the block")
        raise UsageError(f"{name}: {described}")
    return value


def _load(model: str, where: str, models_dir: Path | None) -> ModelSpec:
    try:
        return load_spec(model, models_dir) if models_dir else load_spec(model)
    except ZooError as exc:
        known = available_models(models_dir or MODELS_DIR)
        raise ConfigError(f"{where}: {exc}" if "unknown model" not in str(exc)
                          else f"{where}: unknown model {model!r}; known models: {known}") from exc


def grid_points(config: Mapping[str, Any], models_dir: Path | None = None) -> list[GridPoint]:
    """All points of the union of the subgrids, sorted, without duplicates."""
    cfg_setting = config.get("cfg", "default")
    batch = int(config.get("batch_size", 1))
    points: set[GridPoint] = set()
    for name, sub in config["grids"].items():
        for model in sub["models"]:
            where = f"grids.{name}.models"
            spec = _load(model, where, models_dir)
            for res in sub["resolutions"]:
                try:
                    spec.check_resolution(int(res))
                except ZooError as exc:
                    raise ConfigError(f"grids.{name}.resolutions: {exc}") from exc
            frame_counts = [int(f) for f in sub.get("frames", [spec.default_frames])]
            for frames in frame_counts:
                try:
                    spec.check_frames(frames)
                except ZooError as exc:
                    raise ConfigError(f"grids.{name}.frames: {exc}") from exc
            for precision in sub["precisions"]:
                if precision != "default" and precision not in PRECISIONS:
                    raise ConfigError(
                        f"grids.{name}.precisions: unknown precision {precision!r}; "
                        f"allowed values: ['default', {', '.join(repr(p) for p in PRECISIONS)}]"
                    )
                prec = spec.precision(precision)
                cfg = spec.cfg if cfg_setting == "default" else bool(cfg_setting)
                for res in sub["resolutions"]:
                    for steps in sub["steps"]:
                        for frames in frame_counts:
                            points.add(GridPoint(spec.name, prec, int(res), int(steps), cfg, batch, frames))
    return sorted(points)


#: Protocol settings as the measure job defaults them (``measurement.measure.Protocol``): the yardstick
#: of ``protocol_warnings``.
DEFAULT_PROTOCOL = {"idle_s": 1.0, "warmup": 1, "warmup_s": 0.5, "repeats": 3, "min_window_s": 1.0,
                    "min_window_updates": 10, "stage_window_s": 0.3}
#: The energy counter's update period on the GPUs measured so far (NVML, H100/H200: about 100 ms); the
#: job measures it at start.
COUNTER_PERIOD_S = 0.1
#: A protocol whose windows alone take this many times the default protocol's on the grid is warned about.
SLOW_FACTOR = 5.0
#: ... when that least time is above this, s.
SLOW_FLOOR_S = 600.0


def protocol_least_s(protocol: Mapping[str, Any], points: Iterable[GridPoint]) -> float:
    """Seconds the protocol's windows, warm-ups and idle baselines take at least, on one GPU kind.

    A lower bound (every call shorter than its window; re-measured windows not counted): per job
    (model and precision) the idle baseline and the text/VAE windows, per shape the warm-up, per
    point ``repeats`` image and denoise windows, each the longer of ``min_window_s`` and
    ``min_window_updates`` counter updates.
    """
    p = {**DEFAULT_PROTOCOL, **{k: v for k, v in protocol.items() if k in DEFAULT_PROTOCOL}}
    window = max(float(p["min_window_s"]), int(p["min_window_updates"]) * COUNTER_PERIOD_S)
    stage_window = max(float(p["stage_window_s"]), 3 * COUNTER_PERIOD_S)
    total = 0.0
    for group in measurement_groups(points).values():
        shapes = {pt.shape for pt in group}
        total += float(p["idle_s"]) + 2 * int(p["repeats"]) * stage_window * len(shapes)
        total += len(shapes) * float(p["warmup_s"]) + len(group) * 2 * int(p["repeats"]) * window
    return total


def _duration(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 60:,.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def protocol_warnings(config: Mapping[str, Any], points: Iterable[GridPoint]) -> list[str]:
    """A warning, with the time it implies, when the protocol makes measuring the grid far slower
    than the default protocol would (a setting typed 1,000 times too large runs until killed)."""
    points = list(points)
    protocol = dict(config.get("protocol") or {})
    if not points:
        return []
    least, usual = protocol_least_s(protocol, points), protocol_least_s({}, points)
    if least <= max(SLOW_FLOOR_S, SLOW_FACTOR * usual):
        return []
    changed = {k: v for k, v in protocol.items() if k in DEFAULT_PROTOCOL and v != DEFAULT_PROTOCOL[k]}
    settings = ", ".join(f"protocol.{k}: {v} (default {DEFAULT_PROTOCOL[k]})" for k, v in changed.items())
    return [f"the measurement protocol's windows alone take at least {_duration(least)} for the grid's "
            f"{len(points)} points on each GPU kind, against {_duration(usual)} with the default protocol "
            f"({settings or 'the settings given'}; a window lasts the longer of min_window_s and "
            f"min_window_updates x the ~{COUNTER_PERIOD_S * 1000:.0f} ms counter period): check these "
            "settings in config/config.yaml"]


def measurement_groups(points: Iterable[GridPoint]) -> dict[tuple[str, str], list[GridPoint]]:
    """Points grouped by (model, precision): the points of one precision inside a model's job
    (``measurement_jobs``), which share its pipeline, text-encoder and VAE windows and warm-ups."""
    groups: dict[tuple[str, str], list[GridPoint]] = {}
    for p in sorted(points):
        groups.setdefault((p.model, p.precision), []).append(p)
    return groups


def measurement_jobs(points: Iterable[GridPoint]) -> dict[str, list[GridPoint]]:
    """Points grouped by model, in the order one job measures them: its usual precision first.

    Why one job (one process) per model: start-up and imports, the energy counter's probe
    and the idle baseline are paid once for all its precisions and points; within a
    precision, the pipeline, the text/VAE windows and each shape's warm-up are shared by
    its points (``measure.measure_group``).
    """
    jobs: dict[str, list[GridPoint]] = {}
    for p in sorted(points):
        jobs.setdefault(p.model, []).append(p)
    for model, found in jobs.items():
        usual = zoo_spec(model).default_precision
        found.sort(key=lambda p: (p.precision != usual, p))
    return jobs


def job_point_names(points: Iterable[GridPoint]) -> str:
    """A job's points as the measure command takes them: ``fp16/512px_10steps_cfg1_b1,...``."""
    return ",".join(f"{p.precision}/{p.slug}" for p in points)


def measure_priorities(config: Mapping[str, Any], models: Iterable[str]) -> dict[str, int]:
    """Snakemake priority of each model's measurement job: higher runs first on a GPU measured in turn.

    Why: a run stopped early (a lent GPU's time is short) keeps whole models done first.
    Models run in ``measure_order`` (checked by ``validate_config``; listed models outside
    the grid are ignored, so a smaller grid keeps the order); models not listed run last.
    """
    order = list(config.get("measure_order", []))
    rank = {m: len(order) - i for i, m in enumerate(order)}
    return {model: rank.get(model, 0) for model in models}


def flops_requests(points: Iterable[GridPoint]) -> dict[str, dict[str, list]]:
    """Per model: the resolutions, CFG settings, batches and frame counts whose FLOPs are needed."""
    req: dict[str, dict[str, set]] = {}
    for p in points:
        r = req.setdefault(p.model, {"resolutions": set(), "cfgs": set(), "batches": set(), "frames": set()})
        r["resolutions"].add(p.resolution)
        r["cfgs"].add(p.cfg)
        r["batches"].add(p.batch)
        r["frames"].add(p.frames)
    return {m: {k: sorted(v) for k, v in r.items()} for m, r in sorted(req.items())}


def measurement_path(root: str | Path, gpu: str, point: GridPoint) -> Path:
    """``results/measurements/{gpu}/{model}/{precision}/{slug}.parquet``."""
    return Path(root) / gpu / point.model / point.precision / f"{point.slug}.parquet"


def rule_name(model: str) -> str:
    """A Snakemake rule name for a model's measurement job (letters, digits, _)."""
    return "measure_" + re.sub(r"\W", "_", model)
