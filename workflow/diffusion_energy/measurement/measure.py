"""One measurement job: the grid points of one (model, precision) on one GPU.

The protocol (DESIGN.md): build the pipeline on the device; idle baseline with
the CUDA context alive; text encoding and VAE decoding measured in their own
windows (once per CFG/batch and per resolution: they do not depend on the
steps); then, per grid point, warm-up and ``repeats`` windows of the whole
image (text + denoising + VAE decode), with the denoising nested inside when
one image fills a window, or in its own window otherwise. Work shorter than
``min_window_s`` is repeated back to back inside one window and divided, so
that every window spans many updates of the NVML energy counter.

Warm-up runs at least ``warmup`` calls and at least ``warmup_s`` seconds (a
single short call does not bring clocks and power up: the first repeat after
one 0.4 s warm-up image was often the highest on an H200). A point whose shape
(resolution, CFG, batch) an earlier point of the job already ran needs no new
kernels and follows a measured point directly, so it is not warmed up again:
its window is sized from that point's time per step. Warm-up of the 25- and
50-step points was a sixth of the default grid's estimated GPU time
(``benchmarks/grid_time.py``).

Each point's rows are written atomically as soon as it is measured; an
out-of-memory point is recorded with status ``oom`` and the job goes on.
"""

from __future__ import annotations

import gc
import inspect
import logging
import math
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import torch

from ..errors import UsageError
from ..grid import GridPoint
from ..models import families
from ..models.zoo import (
    PRECISIONS,
    ModelSpec,
    build_component,
    build_scheduler,
    import_object,
    weights_source,
)
from ..sources.schema import THIS_WORKFLOW
from .energy import Meter, Window, calls_to_fill

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    """Measurement settings (config ``protocol:``); times in seconds."""

    idle_s: float = 3.0
    warmup: int = 1
    warmup_s: float = 1.0
    repeats: int = 3
    min_window_s: float = 1.0
    stage_sum_tolerance: float = 0.05
    spread_flag: float = 0.10
    nvml_update_s: float = 0.1

    @classmethod
    def from_config(cls, raw: dict[str, Any] | None, where: str = "protocol") -> Protocol:
        """The settings of a config's ``protocol:`` block; unknown keys are named."""
        raw = dict(raw or {})
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {unknown}; allowed keys: "
                             f"{sorted(cls.__dataclass_fields__)}")
        return cls(**raw)


@dataclass(frozen=True)
class StageResult:
    """One repeat of one stage, per image."""

    stage: str
    repeat: int
    energy_j: float
    time_s: float
    window_s: float
    window_calls: int


@dataclass(frozen=True)
class ImageResult:
    """The whole-image and denoise repeats of one point, and how it was warmed up."""

    images: list[StageResult]
    denoise: list[StageResult]
    denoiser_calls: float  # denoiser forwards per image (steps x CFG calls)
    warmup_calls: int  # warm-up images run before the repeats (0: the shape was warm)
    warmup_s: float


@dataclass
class JobTimings:
    """Where a job's wall time goes (the fixed cost is everything but the repeats)."""

    build_s: float = 0.0
    idle_s: float = 0.0
    shared_stages_s: float = 0.0
    warmup_s: float = 0.0
    repeats_s: float = 0.0
    points: int = 0

    def fixed_s(self, total_s: float) -> float:
        """Of a job's ``total_s``, what is not a measurement window (start-up, build, idle, warm-up)."""
        return total_s - self.repeats_s - self.shared_stages_s


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class Workload:
    """A model's pipeline on a device, with one callable per stage.

    The text encoders run outside the pipeline (pipelines take precomputed
    embeddings), the denoising is the pipeline itself with ``output_type=
    "latent"``, and the VAE decode is called directly on latents of the right
    shape: together exactly the work of one image, each part measurable alone.
    """

    def __init__(self, spec: ModelSpec, precision: str, device: str | torch.device) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = PRECISIONS[precision]
        # SDXL's pipeline decodes in fp32 when its VAE asks for it (force_upcast).
        upcast = spec.family == "sdxl" and spec.vae.config.get("force_upcast", True)
        self.vae_dtype = torch.float32 if upcast and self.dtype == torch.float16 else self.dtype
        self.modules: dict[str, torch.nn.Module] = {}
        for comp in spec.components:
            dtype = self.vae_dtype if comp.stage == "vae" else self.dtype
            self.modules[comp.name] = build_component(spec, comp, self.device, dtype)
        self.pipe = self._pipeline()
        self.denoiser_calls = 0
        self.modules[spec.denoiser.name].register_forward_pre_hook(self._count_call)
        self._embeds: dict[tuple[bool, int], dict[str, Any]] = {}

    def _count_call(self, *_: Any) -> None:
        self.denoiser_calls += 1

    def _pipeline(self) -> Any:
        cls = import_object(self.spec.pipeline)
        params = inspect.signature(cls.__init__).parameters
        kwargs: dict[str, Any] = {"scheduler": build_scheduler(self.spec)}
        for name in params:
            if name in ("self", "scheduler") or params[name].kind is inspect.Parameter.VAR_KEYWORD:
                continue
            is_text = name.startswith(("text_encoder", "tokenizer"))
            kwargs[name] = None if is_text else self.modules.get(name)
        if "requires_safety_checker" in params:
            kwargs["requires_safety_checker"] = False
        pipe = cls(**kwargs)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def encode(self, cfg: bool, batch: int) -> dict[str, Any]:
        """Run the text encoders for one image (prompt, and negative prompt with CFG)."""
        positive = families.encode_prompts(self.spec, self.modules, batch, self.device)
        negative = (families.encode_negative_prompts(self.spec, self.modules, batch, self.device)
                    if cfg else None)
        return families.pipeline_call_kwargs(self.spec, positive, negative, cfg)

    def embeddings(self, cfg: bool, batch: int) -> dict[str, Any]:
        """Embeddings computed once, reused by denoise-only windows."""
        key = (cfg, batch)
        if key not in self._embeds:
            with torch.inference_mode():
                self._embeds[key] = self.encode(cfg, batch)
        return self._embeds[key]

    def denoise(self, point: GridPoint, call_kwargs: dict[str, Any]) -> Any:
        return self.pipe(
            **call_kwargs,
            height=point.resolution,
            width=point.resolution,
            num_inference_steps=point.steps,
            output_type="latent",
        )

    def latents(self, resolution: int, batch: int) -> torch.Tensor:
        return families.vae_latents(self.spec, resolution, batch, self.device, self.vae_dtype)

    def decode(self, latents: torch.Tensor) -> Any:
        return families.vae_decode(self.spec, self.modules[self.spec.vae.name], latents)

    def text_fn(self, cfg: bool, batch: int) -> Callable[[], Any]:
        return lambda: self.encode(cfg, batch)

    def vae_fn(self, resolution: int, batch: int) -> Callable[[], Any]:
        latents = self.latents(resolution, batch)
        return lambda: self.decode(latents)

    def denoise_fn(self, point: GridPoint) -> Callable[[], Any]:
        call_kwargs = self.embeddings(point.cfg, point.batch)
        return lambda: self.denoise(point, call_kwargs)

    def image_fn(self, point: GridPoint, inner: Callable[[str], Any] | None = None) -> Callable[[], Any]:
        """The whole image; ``inner(name)`` brackets the denoising (a nested window)."""
        latents = self.latents(point.resolution, point.batch)

        def run() -> Any:
            call_kwargs = self.encode(point.cfg, point.batch)
            if inner:
                inner("begin")
            self.denoise(point, call_kwargs)
            if inner:
                inner("end")
            return self.decode(latents)

        return run


class Runner:
    """Runs stage callables in windows of the meter, per the protocol."""

    def __init__(
        self,
        meter: Meter,
        protocol: Protocol,
        device: torch.device,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.meter = meter
        self.protocol = protocol
        self.device = device
        self.clock = clock  # injectable, so window sizing is tested deterministically
        self.sleep = sleep

    def timed(self, fn: Callable[[], Any]) -> float:
        """Synchronised wall time of one call (used for warm-up and window sizing)."""
        sync(self.device)
        start = self.clock()
        fn()
        sync(self.device)
        return self.clock() - start

    def warm_up(self, fn: Callable[[], Any], min_calls: int) -> tuple[float, int, float]:
        """Run ``fn`` at least ``min_calls`` (>= 1) times and ``warmup_s`` seconds.

        Returns the last call's time (it sizes the windows), the calls run and their total time.
        """
        calls, total, last = 0, 0.0, math.inf
        while calls < max(1, min_calls) or total < self.protocol.warmup_s:
            last = self.timed(fn)
            calls += 1
            total += last
        return last, calls, total

    def window(self, name: str, fn: Callable[[], Any], calls: int) -> Window:
        self.meter.begin(name)
        for _ in range(calls):
            fn()
        return self.meter.end(name)

    def idle_power_w(self) -> float:
        """Mean power of the idle GPU with the CUDA context alive."""
        if self.protocol.idle_s <= 0:
            return math.nan
        sync(self.device)
        self.meter.begin("idle")
        self.sleep(self.protocol.idle_s)
        window = self.meter.end("idle")
        return window.power_w

    def stage(self, stage: str, fn: Callable[[], Any], warmup: int = 1) -> list[StageResult]:
        """Warm up, size the window from the last warm-up call, then measure the repeats."""
        single, _, _ = self.warm_up(fn, warmup)
        calls = calls_to_fill(single, self.protocol.min_window_s)
        results = []
        for r in range(self.protocol.repeats):
            w = self.window(f"{stage}-{r}", fn, calls)
            results.append(StageResult(stage, r, w.energy_j / calls, w.time_s / calls, w.time_s, calls))
        return results

    def image(self, workload: Workload, point: GridPoint, warmup: int,
              single_s: float | None = None) -> ImageResult:
        """Whole-image and denoise repeats of one point.

        Warms up first, unless ``single_s`` (the expected time of one image, from a
        point of the same shape measured just before) is given: then it sizes the
        windows and no warm-up runs.
        """
        plain = workload.image_fn(point)
        warm_calls, warm_s = 0, 0.0
        if single_s is None:
            single_s, warm_calls, warm_s = self.warm_up(plain, warmup)
        calls = calls_to_fill(single_s, self.protocol.min_window_s)
        images: list[StageResult] = []
        denoise: list[StageResult] = []
        calls_per_image = math.nan
        for r in range(self.protocol.repeats):
            before = workload.denoiser_calls
            if calls == 1:
                inner_windows: dict[str, Window] = {}

                def inner(edge: str, r: int = r, found: dict[str, Window] = inner_windows) -> None:
                    if edge == "begin":
                        self.meter.begin(f"denoise-{r}")
                    else:
                        found["denoise"] = self.meter.end(f"denoise-{r}")

                w = self.window(f"image-{r}", workload.image_fn(point, inner), 1)
                calls_per_image = workload.denoiser_calls - before
                d = inner_windows["denoise"]
                denoise.append(StageResult("denoise", r, d.energy_j, d.time_s, d.time_s, 1))
            else:
                w = self.window(f"image-{r}", plain, calls)
                calls_per_image = (workload.denoiser_calls - before) / calls
                d = self.window(f"denoise-{r}", workload.denoise_fn(point), calls)
                denoise.append(StageResult("denoise", r, d.energy_j / calls, d.time_s / calls,
                                           d.time_s, calls))
            images.append(StageResult("image", r, w.energy_j / calls, w.time_s / calls, w.time_s, calls))
        return ImageResult(images, denoise, float(calls_per_image), warm_calls, warm_s)


def paced_image_s(previous: list[StageResult], previous_steps: int, steps: int,
                  text: list[StageResult], vae: list[StageResult]) -> float:
    """Expected time of one image at ``steps``, from a point of the same shape at ``previous_steps``.

    Text encoding and VAE decoding do not depend on the steps; the rest of the
    image (the denoising) scales with them.
    """
    image_s = statistics.median(r.time_s for r in previous)
    fixed_s = statistics.median(r.time_s for r in text) + statistics.median(r.time_s for r in vae)
    return fixed_s + max(image_s - fixed_s, 0.0) * steps / previous_steps


def spread(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v) and v > 0]
    return max(finite) / min(finite) - 1 if len(finite) >= 2 else math.nan


#: What this workflow's energies cover (``energy_scope`` of its rows).
ENERGY_SCOPE = ("one stage per row (image: text encoding + denoising + VAE decode, latents kept on the GPU); "
                "whole GPU (NVML energy counter, one GPU); raw, and idle-subtracted in dynamic_energy_j")


def point_keys(point: GridPoint, gpu_kind: str, spec: ModelSpec) -> dict[str, Any]:
    """The coordinates and source every row of a point carries."""
    # A guidance-distilled model (no CFG by default) runs its embedded guidance scale.
    guidance = spec.guidance_scale if point.cfg or not spec.cfg else 1.0
    return {"source": THIS_WORKFLOW, "quoted": False, "gpu": gpu_kind, "model": spec.name,
            "architecture": spec.architecture, "precision": point.precision, "resolution": point.resolution,
            "steps": point.steps, "cfg": point.cfg, "guidance_scale": guidance, "batch": point.batch,
            "num_gpus": 1, "ulysses_degree": 1, "ring_degree": 1, "energy_scope": ENERGY_SCOPE}


def point_rows(
    point: GridPoint,
    gpu_kind: str,
    spec: ModelSpec,
    stages: dict[str, list[StageResult]],
    idle_power_w: float,
    protocol: Protocol,
    context: dict[str, Any],
    energy_status: str,
) -> pd.DataFrame:
    """The rows of one measured point, with the stage-sum check and the flags."""
    by_repeat = {s: {r.repeat: r for r in results} for s, results in stages.items()}
    stage_sum = {}
    for r, img in by_repeat["image"].items():
        parts = [by_repeat[s][r].energy_j for s in ("text", "denoise", "vae")]
        stage_sum[r] = sum(parts) / img.energy_j - 1 if img.energy_j > 0 else math.nan
    image_spread = spread([r.energy_j for r in stages["image"]])
    errors = [abs(v) for v in stage_sum.values() if math.isfinite(v)]
    flags = []
    if math.isfinite(image_spread) and image_spread > protocol.spread_flag:
        flags.append(f"repeat spread {image_spread:.1%} > {protocol.spread_flag:.0%}")
    if errors and statistics.median(errors) > protocol.stage_sum_tolerance:
        flags.append(f"stage sum off by {statistics.median(errors):.1%} > "
                     f"{protocol.stage_sum_tolerance:.0%}")
    throttle = context.get("throttle_reasons", "")
    if any(t in throttle for t in ("thermal", "hw_slowdown", "power_brake")):
        flags.append(f"clocks throttled ({throttle})")
    rows = []
    for stage, results in stages.items():
        for res in results:
            dynamic = res.energy_j - idle_power_w * res.time_s if math.isfinite(idle_power_w) else math.nan
            rows.append({
                **point_keys(point, gpu_kind, spec), "stage": stage, "repeat": res.repeat,
                "status": "ok", "energy_status": energy_status,
                "energy_j": res.energy_j, "dynamic_energy_j": dynamic, "time_s": res.time_s,
                "batch_time_s": res.time_s * point.batch,
                "window_s": res.window_s, "window_calls": res.window_calls,
                "idle_power_w": idle_power_w,
                "stage_sum_error": stage_sum[res.repeat] if stage == "image" else math.nan,
                "repeat_spread": image_spread, "flag": "; ".join(flags),
                "warmup": protocol.warmup, "warmup_s": protocol.warmup_s,
                "min_window_s": protocol.min_window_s,
                **context,
            })
    return pd.DataFrame(rows)


def failed_rows(point: GridPoint, gpu_kind: str, spec: ModelSpec, status: str, error: str,
                context: dict[str, Any]) -> pd.DataFrame:
    """A point that could not be measured (status oom or error): one row saying why."""
    return pd.DataFrame([{
        **point_keys(point, gpu_kind, spec), "stage": "image", "repeat": 0,
        "status": status, "energy_status": f"absent: {status}", "error": error[:500], **context,
    }])


def library_versions() -> dict[str, str]:
    import diffusers
    import transformers

    try:
        import zeus

        zeus_version = zeus.__version__
    except ImportError:
        zeus_version = ""
    return {
        "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
        "transformers_version": transformers.__version__,
        "zeus_version": zeus_version,
        "cuda_version": torch.version.cuda or "",
    }


def measure_group(
    spec: ModelSpec,
    points: list[GridPoint],
    gpu_kind: str,
    meter: Meter,
    protocol: Protocol,
    device: str | torch.device,
    gpu_context: Callable[[], dict[str, Any]] | None = None,
    timings: JobTimings | None = None,
) -> Iterator[tuple[GridPoint, pd.DataFrame]]:
    """Measure every point of one (model, precision) group; yield each point's rows.

    ``gpu_context()`` returns the GPU's provenance now (name, driver, clocks,
    temperature, throttling); it is called before and after each point.
    """
    device = torch.device(device)
    timings = timings or JobTimings()
    precision = points[0].precision
    energy_status = "measured" if meter.measures_energy else f"absent: {meter.absent_reason}"
    base = {"weights_source": weights_source(spec), "hostname": socket.gethostname(),
            **library_versions()}
    snapshot = gpu_context or (lambda: {})

    t0 = time.perf_counter()
    try:
        workload = Workload(spec, precision, device)
    except Exception as exc:  # noqa: BLE001 - an OOM at build time is a result for every point
        if not is_oom(exc):
            raise
        log.warning("%s %s does not fit in memory: %s", spec.name, precision, exc)
        for p in points:
            yield p, failed_rows(p, gpu_kind, spec, "oom", str(exc), {**base, **snapshot()})
        return
    timings.build_s = time.perf_counter() - t0

    runner = Runner(meter, protocol, device)
    t0 = time.perf_counter()
    idle_w = runner.idle_power_w()
    timings.idle_s = time.perf_counter() - t0
    log.info("idle power %.1f W", idle_w)

    shared: dict[tuple, list[StageResult]] = {}
    # shape (resolution, cfg, batch) -> (steps, image repeats) of the last point measured at it
    warm: dict[tuple[int, bool, int], tuple[int, list[StageResult]]] = {}
    for point in points:
        before = snapshot()
        context = {**base, "gpu_name": before.get("gpu_name", ""), "gpu_uuid": before.get("gpu_uuid", ""),
                   "gpu_index": before.get("gpu_index", math.nan),
                   "driver_version": before.get("driver_version", ""),
                   "power_limit_w": before.get("power_limit_w", math.nan),
                   "temperature_before_c": before.get("temperature_c", math.nan)}
        try:
            with torch.inference_mode():
                t0 = time.perf_counter()
                text_key = ("text", point.cfg, point.batch)
                if text_key not in shared:
                    shared[text_key] = runner.stage("text", workload.text_fn(point.cfg, point.batch),
                                                    protocol.warmup)
                vae_key = ("vae", point.resolution, point.batch)
                if vae_key not in shared:
                    shared[vae_key] = runner.stage("vae", workload.vae_fn(point.resolution, point.batch),
                                                   protocol.warmup)
                timings.shared_stages_s += time.perf_counter() - t0
                single_s = None
                if point.shape in warm:
                    steps, previous = warm[point.shape]
                    single_s = paced_image_s(previous, steps, point.steps, shared[text_key], shared[vae_key])
                t0 = time.perf_counter()
                result = runner.image(workload, point, protocol.warmup, single_s)
                timings.warmup_s += result.warmup_s
                timings.repeats_s += time.perf_counter() - t0 - result.warmup_s
        except Exception as exc:  # noqa: BLE001 - OOM is a result; anything else is re-raised
            if not is_oom(exc):
                raise
            log.warning("%s: out of memory: %s", point.slug, exc)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            yield point, failed_rows(point, gpu_kind, spec, "oom", str(exc), context)
            continue
        after = snapshot()
        throttle = sorted(set(before.get("throttle", [])) | set(after.get("throttle", [])) - {"idle"})
        context.update({
            "sm_clock_mhz": after.get("sm_clock_mhz", math.nan),
            "temperature_after_c": after.get("temperature_c", math.nan),
            "throttle_reasons": ",".join(throttle),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "denoiser_calls": result.denoiser_calls,
            "warmup_images": result.warmup_calls,
        })
        warm[point.shape] = (point.steps, result.images)
        stages = {"text": shared[("text", point.cfg, point.batch)], "denoise": result.denoise,
                  "vae": shared[("vae", point.resolution, point.batch)], "image": result.images}
        rows = point_rows(point, gpu_kind, spec, stages, idle_w, protocol, context, energy_status)
        timings.points += 1
        med = statistics.median(r.energy_j for r in result.images)
        log.info("%s: %.1f J/image, %.3f s/image, spread %.1f%%, stage sum %+.1f%%", point.slug, med,
                 statistics.median(r.time_s for r in result.images), 100 * rows["repeat_spread"].iloc[0],
                 100 * rows["stage_sum_error"].median())
        yield point, rows
