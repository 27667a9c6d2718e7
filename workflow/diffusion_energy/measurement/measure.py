"""One measurement job: the grid points of one model, in all its precisions, on one GPU.

The protocol (README "Measurement protocol"): measure the energy counter's update period and
unit (``counter.probe``), once per job; build the pipeline of a precision on the device; idle
baseline with the CUDA context alive, between two counter updates, once per job; per new shape
one cold whole image, then text encoding and VAE decoding in their own windows (once per
CFG/batch and per resolution: they do not depend on the steps), then warm whole images for
``warmup_s`` right before the image windows they size; then, per grid point,
``repeats`` interleaved windows of the whole image (text + denoising + VAE decode) and of the
denoising alone. Every window opens at a counter update and closes at
the first update after its work (``counter.CounterMeter``), and lasts at least
``min_window_s`` and ``min_window_updates`` counter periods (text and VAE: ``stage_window_s``
and half the updates): shorter work is repeated back to back inside it and divided.

Windows are sized from warm calls only: a stage's first call per shape is cold (the H200's
first text-encoder call took over 1 s, a warm one 7 ms), so warm-up runs the cold call, then
warm calls for at least ``warmup`` calls and ``warmup_s`` seconds (which also lets clocks and
power settle), and sizes from their median. A point whose shape (resolution, CFG, batch) an
earlier point of the job already ran follows a measured point directly and is not warmed up
again: its window is sized from that point's time per step.

A window that comes out under half its target is lengthened and measured again; a repeat
whose time per call is an outlier (the host stalled and the GPU idled) is measured again. What
counts as an outlier comes from the host's noise measured at job start (``hostnoise``):
``noise_factor`` times it, never under ``outlier_tolerance`` (on the real H200 every SD 1.5 point
had a repeat more than 3% off: a fixed 3% re-measured up to 12 windows per point). At most
``max_remeasure`` windows per point and ``max_remeasure_job`` per job are measured again, each
named in ``remeasured``. A point that still cannot be measured is recorded with status ``error``
and the reason, an out-of-memory point (also one inside a window) with status ``oom``; the job
goes on. Each point's rows are written atomically as soon as it is measured; ``stop(point)`` is
asked before each point (a time budget): True ends the job there.
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
from .counter import UNMEASURED, ShortWindow
from .energy import EnergyError, Meter, Window, calls_to_fill

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protocol:
    """Measurement settings (config ``protocol:``); times in seconds."""

    idle_s: float = 1.0
    warmup: int = 1
    warmup_s: float = 0.5
    repeats: int = 3
    min_window_s: float = 1.0
    min_window_updates: int = 10
    stage_window_s: float = 0.3
    stage_sum_tolerance: float = 0.03
    spread_flag: float = 0.05
    outlier_tolerance: float = 0.03
    noise_factor: float = 3.0
    max_remeasure: int = 6
    max_remeasure_job: int = 40
    aligned: bool = True
    min_tail_s: float = 0.05
    step_probe: bool = True

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
    true_energy_j: float = math.nan  # the energy really spent (simulated GPU only)


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
        """Of a job's ``total_s``, what is not a point's own image and denoise windows: start-up,
        build, counter probe, idle, the shared text/VAE windows and warm-up (what a job of one
        point pays on top of its repeats)."""
        return total_s - self.repeats_s


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

    def to_precision(self, precision: str) -> Workload:
        """The same modules cast in place to ``precision``, for a job's next precision: casting takes
        milliseconds on the GPU where building takes seconds, and energy depends on the shapes, not
        on the weights' values. Every stage's kernels are new: the points warm up again."""
        self.dtype = PRECISIONS[precision]
        upcast = self.spec.family == "sdxl" and self.spec.vae.config.get("force_upcast", True)
        self.vae_dtype = torch.float32 if upcast and self.dtype == torch.float16 else self.dtype
        for comp in self.spec.components:
            self.modules[comp.name].to(dtype=self.vae_dtype if comp.stage == "vae" else self.dtype)
        self.pipe = self._pipeline()
        self._embeds.clear()
        return self

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
            **families.size_kwargs(self.spec, point.resolution, point.frames),
            num_inference_steps=point.steps,
            output_type="latent",
        )

    def latents(self, resolution: int, batch: int, frames: int | None = None) -> torch.Tensor:
        return families.vae_latents(self.spec, resolution, batch, self.device, self.vae_dtype, frames)

    def decode(self, latents: torch.Tensor) -> Any:
        return families.vae_decode(self.spec, self.modules[self.spec.vae.name], latents)

    def text_fn(self, cfg: bool, batch: int) -> Callable[[], Any]:
        return lambda: self.encode(cfg, batch)

    def vae_fn(self, resolution: int, batch: int, frames: int | None = None) -> Callable[[], Any]:
        latents = self.latents(resolution, batch, frames)
        return lambda: self.decode(latents)

    def denoise_fn(self, point: GridPoint) -> Callable[[], Any]:
        call_kwargs = self.embeddings(point.cfg, point.batch)
        return lambda: self.denoise(point, call_kwargs)

    def image_fn(self, point: GridPoint, inner: Callable[[str], Any] | None = None) -> Callable[[], Any]:
        """The whole image; ``inner(name)`` brackets the denoising (a nested window)."""
        latents = self.latents(point.resolution, point.batch, point.frames)

        def run() -> Any:
            call_kwargs = self.encode(point.cfg, point.batch)
            if inner:
                inner("begin")
            self.denoise(point, call_kwargs)
            if inner:
                inner("end")
            return self.decode(latents)

        return run


#: Warm calls that size a stage's windows once its kernels ran inside a whole image's warm-up, s:
#: enough calls of a 7 ms text encoder to take their median.
WARM_SIZING_S = 0.05


class WindowError(UsageError):
    """A window could not be measured however it was lengthened: its point is recorded as an error."""


class Runner:
    """Runs stage callables in windows of the meter, per the protocol.

    Windows are sized from warm calls only (the median of the warm-up's calls after the cold
    first one). A window that comes out short of its target (calls got faster) is lengthened
    and measured again; a repeat whose time per call is an outlier (the host stalled and the
    GPU waited) is measured again. Both are named in ``notes`` (the rows' ``remeasured``) and
    every window, kept or not, is in the meter's log.
    """

    def __init__(
        self,
        meter: Meter,
        protocol: Protocol,
        device: torch.device,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        sync_fn: Callable[[], None] | None = None,
        host_noise: float = math.nan,
    ) -> None:
        self.meter = meter
        self.protocol = protocol
        self.device = device
        self.clock = clock  # injectable: a simulated GPU's virtual clock
        self.sleep = sleep
        self._sync = sync_fn or (lambda: sync(device))
        self.notes: list[str] = []
        self._remeasured = 0
        self.job_remeasured = 0
        #: a repeat further off its stage's median time per call is measured again
        self.tolerance = max(protocol.outlier_tolerance,
                             protocol.noise_factor * host_noise if math.isfinite(host_noise) else 0.0)

    def may_remeasure(self, outlier: bool = True) -> bool:
        """Within the job's re-measurement budget, and for an outlier, the point's (a window too short
        to measure must be lengthened: it counts against the job's budget only)."""
        return ((self._remeasured < self.protocol.max_remeasure or not outlier)
                and self.job_remeasured < self.protocol.max_remeasure_job)

    def target_s(self, stage: str) -> float:
        """Shortest window: ``min_window_s`` and ``min_window_updates`` of the energy counter's
        measured update period (text/VAE: ``stage_window_s`` and three updates)."""
        info = getattr(self.meter, "info", None)
        period = info.period_s if info is not None else 0.0
        seconds = self.protocol.stage_window_s if stage in ("text", "vae") else self.protocol.min_window_s
        # text and VAE windows only feed the stage sums (a few J of an image's tens to thousands):
        # three counter updates suffice for them
        updates = self.protocol.min_window_updates if stage not in ("text", "vae") else 3
        return max(seconds, updates * period)

    def timed(self, fn: Callable[[], Any]) -> float:
        """Synchronised wall time of one call (used for warm-up and window sizing)."""
        self._sync()
        start = self.clock()
        fn()
        self._sync()
        took = self.clock() - start
        note = getattr(self.meter, "note_work", None)
        if note is not None:
            note()  # a lagging counter shows this work after it ended: the next window waits for that
        return took

    def warm_up(self, fn: Callable[[], Any], min_calls: int, cold: bool = True,
                least_s: float | None = None) -> tuple[float, int, float]:
        """Run the first (cold) call, then warm calls: at least ``min_calls`` (>= 1) and ``warmup_s``.

        Returns the median of the later half of the warm calls (it sizes the windows; a cold call
        never does: the H200's first text-encoder call took over 1 s, a warm one 7 ms), the calls
        run and their total time. ``cold=False``: ``fn``'s kernels already ran (a stage inside a
        whole image's cold call), so no cold call runs, and warm calls last ``least_s`` (default
        ``WARM_SIZING_S``: enough to size a window).
        """
        total = self.timed(fn) if cold else 0.0
        if least_s is None:
            least_s = self.protocol.warmup_s if cold else min(WARM_SIZING_S, self.protocol.warmup_s)
        warm: list[float] = []
        while len(warm) < max(1, min_calls) or sum(warm) < least_s:
            warm.append(self.timed(fn))
        total += sum(warm)
        return statistics.median(warm[len(warm) // 2:]), int(cold) + len(warm), total

    def window(self, name: str, fn: Callable[[], Any], calls: int) -> Window:
        """``calls`` calls in one window; a failure inside it (out of memory) closes it unmeasured."""
        self.meter.begin(name)
        try:
            for _ in range(calls):
                fn()
        except BaseException:
            abort = getattr(self.meter, "abort", None)
            if abort is not None:
                abort(name)
            raise
        return self.meter.end(name)

    def sized_window(self, name: str, stage: str, fn: Callable[[], Any], calls: int) -> tuple[Window, int]:
        """A window of ``calls`` back-to-back calls, lengthened and measured again while it comes out
        shorter than half its target (never fatal unless ``max_remeasure`` lengthenings do not help)."""
        target = self.target_s(stage)
        while True:
            start = self.clock()
            try:
                w = self.window(name, fn, calls)
                lasted = w.time_s
            except ShortWindow:
                w, lasted = None, self.clock() - start
            if w is not None and (lasted >= 0.5 * target or not self.meter.measures_energy):
                return w, calls
            if not self.may_remeasure(outlier=False):
                raise WindowError(f"window {name!r} of {calls} call(s) lasted {lasted * 1e3:.0f} ms, "
                                  f"under half its {target:.2f} s target after {self._remeasured} "
                                  f"re-measurement(s) ({self.job_remeasured} in the job)")
            longer = max(calls + 1, calls_to_fill(lasted / calls, target))
            self._note(f"{name}: {calls} call(s) lasted {lasted * 1e3:.0f} ms < {0.5 * target:.2f} s, "
                       f"measured again with {longer}", outlier=False)
            calls = longer

    def _note(self, text: str, outlier: bool = True) -> None:
        log.info("re-measuring %s", text)
        self.notes.append(text)
        self._remeasured += outlier
        self.job_remeasured += 1

    def start_point(self) -> None:
        """A new point: its re-measurement budget and notes start empty."""
        self.notes = []
        self._remeasured = 0

    def idle_power_w(self) -> float:
        """Mean power of the idle GPU with the CUDA context alive (the meter subtracts it
        from the idle tail after each window's work)."""
        if self.protocol.idle_s <= 0:
            return math.nan
        self._sync()
        self.meter.begin("idle")
        self.sleep(self.protocol.idle_s)
        window = self.meter.end("idle")
        set_idle = getattr(self.meter, "set_idle_power", None)
        if set_idle is not None and math.isfinite(window.power_w):
            set_idle(window.power_w)
        return window.power_w

    def repeats(self, stages: list[tuple[str, Callable[[], Any]]], calls: int,
                check: bool = True) -> dict[str, list[StageResult]]:
        """``repeats`` windows of each stage, interleaved (a-0, b-0, a-1, b-1, ...).

        Identical work whose time per call is off the median of its stage's windows waited on
        the host (a stall, a slower or faster CPU; the GPU idles meanwhile): with ``check``, the
        repeat furthest off is measured again while it is off by more than ``tolerance`` (from the
        host's noise) and the point's and job's budgets allow; every window measured (kept or not) makes the
        median. (Text and VAE windows are not checked: they hold a few percent of an image's
        energy, and the budget is the point's.)
        """
        results: dict[str, list[StageResult]] = {name: [] for name, _ in stages}
        sizes = {name: calls for name, _ in stages}
        for r in range(self.protocol.repeats):
            for stage, fn in stages:
                res = self.repeat(stage, fn, r, sizes[stage])
                sizes[stage] = res.window_calls
                results[stage].append(res)
        if not self.meter.measures_energy or not check:
            return results
        fns = dict(stages)
        seen = {stage: [r.time_s for r in found] for stage, found in results.items()}
        while self.may_remeasure():
            worst = max(((abs(r.time_s / statistics.median(seen[stage]) - 1), stage, r)
                         for stage, found in results.items() if len(found) > 1 for r in found),
                        key=lambda c: c[0], default=None)
            if worst is None or worst[0] <= self.tolerance:
                break
            _, stage, odd = worst
            typical = statistics.median(seen[stage])
            self._note(f"{stage}-{odd.repeat}: {odd.time_s * 1e3:.1f} ms per call, "
                       f"{odd.time_s / typical - 1:+.0%} off the median of its stage's windows")
            found = results[stage]
            found[found.index(odd)] = new = self.repeat(stage, fns[stage], odd.repeat, odd.window_calls)
            seen[stage].append(new.time_s)
        return results

    def repeat(self, stage: str, fn: Callable[[], Any], r: int, calls: int) -> StageResult:
        """Repeat ``r`` of a stage: one window (lengthened if it comes out short), per call."""
        w, calls = self.sized_window(f"{stage}-{r}", stage, fn, calls)
        return StageResult(stage, r, w.energy_j / calls, w.time_s / calls, w.time_s, calls,
                           w.true_energy_j / calls)

    def match_times(self, images: list[StageResult], denoise: list[StageResult], rest_s: float,
                    image_fn: Callable[[], Any], denoise_fn: Callable[[], Any]) -> None:
        """Measure again, in place, the image or denoise repeat whose time disagrees with its partner's.

        Times are exact where energies are not: when a repeat's denoising takes longer or shorter
        than its image less text and VAE (``rest_s``), the host slowed one of the two windows (the
        GPU waited) and their energies cannot add up; the worst pair is measured again while the
        difference is over ``tolerance``.
        """
        tolerance = self.tolerance
        while self.may_remeasure():
            offs = [(denoise[r].time_s / (images[r].time_s - rest_s) - 1, r) for r in range(len(images))
                    if images[r].time_s > rest_s]
            off, r = max(offs, key=lambda o: abs(o[0]), default=(0.0, 0))
            if abs(off) <= tolerance:
                break
            found, stage, fn = ((denoise, "denoise", denoise_fn) if off > 0
                                else (images, "image", image_fn))
            self._note(f"{stage}-{r}: denoising {denoise[r].time_s * 1e3:.1f} ms, its image less text and "
                       f"VAE {(images[r].time_s - rest_s) * 1e3:.1f} ms ({off:+.1%})")
            found[r] = self.repeat(stage, fn, r, found[r].window_calls)

    def stage(self, stage: str, fn: Callable[[], Any], warmup: int = 1,
              cold: bool = True) -> list[StageResult]:
        """Warm up (``cold``: see ``warm_up``), size the window from the warm calls, then measure the
        repeats."""
        single, _, _ = self.warm_up(fn, warmup, cold)
        calls = calls_to_fill(single, self.target_s(stage))
        return self.repeats([(stage, fn)], calls, check=False)[stage]

    def image(self, workload: Workload, point: GridPoint, warmup: int,
              single_s: float | None = None, rest_s: float | None = None) -> ImageResult:
        """Whole-image and denoise repeats of one point, in interleaved windows of their own.

        Warms up first, unless ``single_s`` (the expected time of one image, from a point of the
        same shape measured just before) is given: then it sizes the windows and no warm-up runs.
        ``rest_s``, the time of text encoding and VAE decoding per image, lets each repeat's
        denoising be checked against its image (``match_times``).
        """
        plain = workload.image_fn(point)
        warm_calls, warm_s = 0, 0.0
        if single_s is None:
            single_s, warm_calls, warm_s = self.warm_up(plain, warmup)
        calls = calls_to_fill(single_s, self.target_s("image"))
        per_image: list[int] = []  # denoiser forwards of each measured image (the hook counts them)

        def image() -> None:
            before = workload.denoiser_calls
            plain()
            per_image.append(workload.denoiser_calls - before)

        denoise_fn = workload.denoise_fn(point)
        found = self.repeats([("image", image), ("denoise", denoise_fn)], calls)
        if rest_s is not None and self.meter.measures_energy:
            self.match_times(found["image"], found["denoise"], rest_s, image, denoise_fn)
        calls_per_image = statistics.median(per_image) if per_image else math.nan
        return ImageResult(found["image"], found["denoise"], float(calls_per_image), warm_calls, warm_s)


def paced_image_s(previous: list[StageResult], previous_evaluations: int, evaluations: int,
                  text: list[StageResult], vae: list[StageResult]) -> float:
    """Expected time of one image of ``evaluations`` denoiser evaluations, from a point of the same
    shape with ``previous_evaluations`` (``ModelSpec.denoiser_evaluations`` of their steps).

    Text encoding and VAE decoding do not depend on the steps; the rest of the
    image (the denoising) scales with the evaluations.
    """
    image_s = statistics.median(r.time_s for r in previous)
    fixed_s = statistics.median(r.time_s for r in text) + statistics.median(r.time_s for r in vae)
    return fixed_s + max(image_s - fixed_s, 0.0) * evaluations / previous_evaluations


#: Windows measured again per window, as planned for (the simulated H200 re-measures 38% of its
#: SD 1.5 windows: benchmarks/grid_time.py).
PLANNED_REMEASURE = 0.4
#: A new shape's cold calls and warm-up, and its text/VAE windows, s (the simulated H200's 1.5 s cold
#: denoising call and about 2 s of stage windows; the real run's warm-ups took 1.8-11 s per job).
PLANNED_NEW_SHAPE_S = 5.0


def point_estimate_s(spec: ModelSpec, point: GridPoint, previous: GridPoint, previous_image_s: float,
                     protocol: Protocol, period_s: float) -> float:
    """About how long ``point`` takes, from the time per image of ``previous`` (the job's last
    point): the image time scales with denoiser evaluations, pixels and batch (compute-bound; a
    launch-bound point takes less), fp32 runs at a quarter of the 16-bit speed; each repeat has an
    image and a denoise window of at least the shortest window, re-measures as planned for, and a
    new shape adds its warm-up. A job stops before a point that would end past its budget."""
    def work(p: GridPoint) -> float:
        return (spec.denoiser_evaluations(p.steps) * p.resolution ** 2 * p.batch * p.frames
                * (4.0 if p.precision == "fp32" else 1.0))

    image_s = previous_image_s * work(point) / work(previous)
    window_s = max(protocol.min_window_s, protocol.min_window_updates * period_s, image_s) + 2 * period_s
    new_shape = point.shape != previous.shape or point.precision != previous.precision
    return (2 * protocol.repeats * window_s * (1 + PLANNED_REMEASURE)
            + (PLANNED_NEW_SHAPE_S + image_s if new_shape else 0.0))


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
            "num_gpus": 1, "ulysses_degree": 1, "ring_degree": 1, "energy_scope": ENERGY_SCOPE,
            **families.output_keys(spec, point.resolution, point.frames)}


def point_rows(
    point: GridPoint,
    gpu_kind: str,
    spec: ModelSpec,
    stages: dict[str, list[StageResult]],
    idle_power_w: float,
    protocol: Protocol,
    context: dict[str, Any],
    energy_status: str,
    flags: tuple[str, ...] = (),
) -> pd.DataFrame:
    """The rows of one measured point, with the stage-sum check and the flags (``flags``: the job's own,
    e.g. a counter whose physics cannot be corrected)."""
    by_repeat = {s: {r.repeat: r for r in results} for s, results in stages.items()}
    stage_sum = {}
    for r, img in by_repeat["image"].items():
        parts = [by_repeat[s][r].energy_j for s in ("text", "denoise", "vae")]
        stage_sum[r] = sum(parts) / img.energy_j - 1 if img.energy_j > 0 else math.nan
    image_spread = spread([r.energy_j for r in stages["image"]])
    errors = [abs(v) for v in stage_sum.values() if math.isfinite(v)]
    flags = list(flags)
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
                **({"simulated_true_energy_j": res.true_energy_j}
                   if math.isfinite(res.true_energy_j) else {}),
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


def _context(base: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The columns every row of a point carries: the job's and the GPU's state before the point."""
    return {**base, "gpu_name": before.get("gpu_name", ""), "gpu_uuid": before.get("gpu_uuid", ""),
            "gpu_index": before.get("gpu_index", math.nan),
            "driver_version": before.get("driver_version", ""),
            "power_limit_w": before.get("power_limit_w", math.nan),
            "temperature_before_c": before.get("temperature_c", math.nan)}


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
    workload_factory: Callable[[ModelSpec, str, torch.device], Any] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    sync_fn: Callable[[], None] | None = None,
    host_noise: float = math.nan,
    stop: Callable[[GridPoint], bool] | None = None,
) -> Iterator[tuple[GridPoint, pd.DataFrame]]:
    """Measure every point of one model, in all its precisions (one job); yield each point's rows.

    Points run in the given order, one precision at a time: the pipeline is built for the first
    and cast to each next one (``Workload.to_precision``). The energy counter's probe (by the
    caller) and the idle baseline are the job's, once; per precision the text/VAE windows and
    each shape's warm-up are shared by its points. ``gpu_context()`` returns the GPU's provenance
    now (name, driver, clocks, temperature, throttling); it is called before and after each point.
    ``workload_factory``, ``clock``, ``sleep`` and ``sync_fn`` default to the real pipeline and
    time; a simulated GPU (``measurement.simulated_gpu``) replaces them. A pipeline that does
    not fit in memory is ``oom`` for each of its precision's points, a point that runs out of
    memory is ``oom``, one whose windows cannot be measured (``WindowError``, ``EnergyError``)
    ``error`` with the reason; the job goes on. ``host_noise`` (``hostnoise.measure``) sets the
    re-measure tolerance. ``stop(point)`` is asked before each point: True ends the job there
    (its time budget cannot take the point), every point it measured kept.
    """
    device = torch.device(device)
    timings = timings or JobTimings()
    energy_status = getattr(meter, "energy_status", None) or (
        "measured" if meter.measures_energy else f"absent: {meter.absent_reason}")
    info = getattr(meter, "info", None)
    physics = getattr(meter, "physics", UNMEASURED)
    runner = Runner(meter, protocol, device, clock=clock, sleep=sleep, sync_fn=sync_fn, host_noise=host_noise)
    base = {"weights_source": weights_source(spec), "hostname": socket.gethostname(), **library_versions(),
            "energy_counter": getattr(meter, "provenance", "") or (
                "none: energy not measured" if not meter.measures_energy else ""),
            "counter_period_s": info.period_s if info else math.nan,
            "counter_resolution_j": info.resolution_j if info else math.nan,
            **({"counter_lag_s": physics.lag_s, "counter_sampled_fraction": physics.sampled_fraction,
                "power_tail_s": physics.tail_s} if physics.measured else {}),
            "host_noise": host_noise, "remeasure_tolerance": runner.tolerance}
    job_flags = (f"counter: {physics.problem()}",) if physics.problem() else ()
    snapshot = gpu_context or (lambda: {})
    idle: list[float] = []  # the job's idle power, measured once the first pipeline is on the GPU

    stop = stop or (lambda _point: False)
    workload = None
    for precision, group in _by_precision(points):
        if stop(group[0]):
            return
        t0 = clock()
        try:
            # the job's next precision: the pipeline on the GPU is cast, not built again
            workload = (workload.to_precision(precision) if hasattr(workload, "to_precision")
                        else (workload_factory or Workload)(spec, precision, device))
        except Exception as exc:  # noqa: BLE001 - an OOM at build time is a result for every point
            if not is_oom(exc):
                raise
            log.warning("%s %s does not fit in memory: %s", spec.name, precision, exc)
            workload = None
            _free(device)
            for p in group:
                yield p, failed_rows(p, gpu_kind, spec, "oom", str(exc), _context(base, snapshot()))
            continue
        timings.build_s += clock() - t0
        if not idle:
            t0 = clock()
            idle.append(runner.idle_power_w())
            timings.idle_s = clock() - t0
            log.info("idle power %.1f W", idle[0])
        yield from _measure_precision(spec, group, gpu_kind, workload, runner, protocol, idle[0], base,
                                      snapshot, timings, energy_status, clock, stop, job_flags)
        _free(device)


def _by_precision(points: list[GridPoint]) -> Iterator[tuple[str, list[GridPoint]]]:
    """The points in their order, one run of consecutive points per precision (a precision named
    again later gets its pipeline built again)."""
    group: list[GridPoint] = []
    for p in points:
        if group and p.precision != group[0].precision:
            yield group[0].precision, group
            group = []
        group.append(p)
    if group:
        yield group[0].precision, group


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _measure_precision(
    spec: ModelSpec, points: list[GridPoint], gpu_kind: str, workload: Any, runner: Runner,
    protocol: Protocol, idle_w: float, base: dict[str, Any], snapshot: Callable[[], dict[str, Any]],
    timings: JobTimings, energy_status: str, clock: Callable[[], float],
    stop: Callable[[GridPoint], bool], job_flags: tuple[str, ...] = (),
) -> Iterator[tuple[GridPoint, pd.DataFrame]]:
    """The points of one precision on its pipeline.

    A new shape (resolution, CFG, batch, frames) starts with one cold whole image: it runs the text
    encoder and the VAE decoder at that shape cold too, so their windows that follow need no cold
    call of their own, only a few warm calls to size them (``Runner.warm_up``, ``cold=False``);
    then warm whole images for ``warmup_s`` settle the clocks and size the image windows right
    before them. A point of a shape already measured is not warmed up: its windows are sized from
    that point's time per step (``paced_image_s``).
    """
    shared: dict[tuple, list[StageResult]] = {}
    # shape (resolution, cfg, batch, frames) -> (steps, image repeats) of the last point measured at it
    warm: dict[tuple[int, bool, int, int], tuple[int, list[StageResult]]] = {}
    for n, point in enumerate(points):
        if stop(point):
            log.warning("stopped before %s %s: %d of %d point(s) of this precision not started",
                        point.precision, point.slug, len(points) - n, len(points))
            return
        before = snapshot()
        context = _context(base, before)
        runner.start_point()
        text_key = ("text", point.cfg, point.batch)
        vae_key = ("vae", point.resolution, point.batch, point.frames)
        try:
            with torch.inference_mode():
                single_s, warm_calls, warm_s = None, 0, 0.0
                new_shape = point.shape not in warm
                if new_shape:
                    # one cold whole image: its text encoder and VAE decoder run cold in it too
                    warm_s = runner.timed(workload.image_fn(point))
                    timings.warmup_s += warm_s
                t0 = clock()
                if text_key not in shared:
                    shared[text_key] = runner.stage("text", workload.text_fn(point.cfg, point.batch),
                                                    protocol.warmup, cold=False)
                if vae_key not in shared:
                    shared[vae_key] = runner.stage(
                        "vae", workload.vae_fn(point.resolution, point.batch, point.frames), protocol.warmup,
                        cold=False)
                timings.shared_stages_s += clock() - t0
                if new_shape:
                    # the warm whole images size the windows, right before them (clocks settled)
                    single_s, calls, took = runner.warm_up(workload.image_fn(point), protocol.warmup,
                                                           cold=False, least_s=protocol.warmup_s)
                    warm_calls, warm_s = 1 + calls, warm_s + took
                    timings.warmup_s += took
                if single_s is None:
                    steps, previous = warm[point.shape]
                    # Denoising scales with the denoiser's evaluations (steps + 1 for PNDM), not the steps.
                    single_s = paced_image_s(previous, spec.denoiser_evaluations(steps),
                                             spec.denoiser_evaluations(point.steps), shared[text_key],
                                             shared[vae_key])
                t0 = clock()
                rest_s = (statistics.median(r.time_s for r in shared[text_key])
                          + statistics.median(r.time_s for r in shared[vae_key]))
                result = runner.image(workload, point, protocol.warmup, single_s, rest_s)
                timings.repeats_s += clock() - t0
        except (WindowError, EnergyError) as exc:
            log.warning("%s %s: not measured: %s", point.precision, point.slug, exc)
            yield point, failed_rows(point, gpu_kind, spec, "error", str(exc), context)
            continue
        except Exception as exc:  # noqa: BLE001 - OOM is a result; anything else is re-raised
            if not is_oom(exc):
                raise
            log.warning("%s %s: out of memory: %s", point.precision, point.slug, exc)
            _free(runner.device)
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
            "warmup_images": warm_calls,
            "remeasured": "; ".join(runner.notes),
        })
        warm[point.shape] = (point.steps, result.images)
        stages = {"text": shared[text_key], "denoise": result.denoise, "vae": shared[vae_key],
                  "image": result.images}
        rows = point_rows(point, gpu_kind, spec, stages, idle_w, protocol, context, energy_status, job_flags)
        timings.points += 1
        med = statistics.median(r.energy_j for r in result.images)
        log.info("%s %s: %.1f J/image, %.3f s/image, spread %.1f%%, stage sum %+.1f%%", point.precision,
                 point.slug, med, statistics.median(r.time_s for r in result.images),
                 100 * rows["repeat_spread"].iloc[0], 100 * rows["stage_sum_error"].median())
        yield point, rows
