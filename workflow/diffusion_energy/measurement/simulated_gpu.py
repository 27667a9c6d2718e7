"""A simulated GPU: a virtual clock, an energy counter that updates in steps, and stages that cost
time and energy, calibrated from the workflow's first real run (an H200, 2026-12-04).

Why: GPUs are lent rarely and briefly, so the measurement protocol must be right before one
arrives. This GPU has what broke or blurred the real run: a first call per stage and shape that
is slow (cold), a 7 ms text encoder, a counter that moves only every ~100 ms in 1 mJ units, a
host whose speed drifts and sometimes stalls (launch-bound work then waits at idle power), and
clocks that ramp up after the GPU idled. It plugs into the measure job's seams: ``clock``/
``sleep`` (the Runner's), ``counter`` (what ``measurement.counter.CounterMeter`` reads), and
``SimulatedWorkload`` (stage callables that advance the clock). ``diffusion-energy measure`` and
``gpu-check`` run on it when ``DIFFUSION_ENERGY_SIMULATED_GPU`` names a calibration; its rows say
``energy_status: simulated ...``, so they never pass as measurements, and carry the energy it
really spent (``simulated_true_energy_j``), so that a test can measure the protocol's bias.

The variable also takes knobs after the calibration, for counters and GPUs unlike the H200's
(``calibration``): ``DIFFUSION_ENERGY_SIMULATED_GPU="h200,counter_lag_s=0.1,sampled_fraction=0.25,
power_tail_s=0.1,uuid=GPU-2"``. A knob is any number or text field of ``Calibration``, e.g.
``counter_lag_s`` (an update shows the energy up to this long before it), ``sampled_fraction`` (the
counter integrates the last part of each period only and scales it to the period; reported for
A100/H100: 25 ms of every 100 ms), ``power_tail_s`` (after work the power decays to idle with this
time constant), ``host_sd`` and ``stall_rate_hz`` (host noise), ``oom_above_px`` (a denoising call
above this resolution runs out of memory inside its window), ``uuid`` (the GPU's UUID) and ``seed``.
Simulated rows carry their own GPU kind (``simulated_kind``: ``h200-simulated``).

Every number of ``H200`` names where it comes from: the files of ``resources/gpu-runs/h200-2026-12-04/``
(their README quotes the run's job.json files) and the run's 11 SD 1.5 points, shipped as
``resources/measurements/h200.parquet`` (``h200_sd15.parquet`` in that README). Other
architectures than SD 1.5 are scaled from SD 1.5 by denoiser parameters (not calibrated).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .counter import CounterMeter, CounterPhysics, probe, step_response

#: Environment variable that selects a simulated GPU: a calibration name, then optional knobs that
#: change its fields, e.g. ``h200`` or ``h200,counter_lag_s=0.1,uuid=GPU-2``.
ENV = "DIFFUSION_ENERGY_SIMULATED_GPU"
#: What a simulated GPU's kind name ends with (``h200-simulated``): its rows, result paths and jobs
#: are never those of a real kind, so they can never stand in for real measurements.
KIND_SUFFIX = "-simulated"


@dataclass(frozen=True)
class Calibration:
    """The simulated GPU's parameters; (seconds, watts) per stage call of SD 1.5, CFG, batch 1."""

    name: str
    gpu_name: str
    #: run2_measure_sd15_fp16.log "idle power 121.6 W" (CUDA context alive; 120-130 W over the run,
    #: run1_gpu_check.log "idle power: 130.0 W")
    idle_w: float = 121.6
    #: shared facts of the project: "updates about every 100 ms"; run1_zeus_windows_sd15_fp16.csv:
    #: a 17 ms window read 0 J
    counter_period_s: float = 0.100
    #: not observable in the traces (assumed): +-2 ms per update
    counter_jitter_s: float = 0.002
    #: run2_zeus_windows_sd15_fp16.csv: every energy is a whole number of mJ
    counter_resolution_j: float = 0.001
    #: how old the energy an update shows is (not observable in the traces: 0 assumed; knob
    #: ``counter_lag_s``)
    counter_lag_s: float = 0.0
    #: share of each period the counter integrates (not observable in the traces: 1 assumed; knob
    #: ``sampled_fraction``)
    sampled_fraction: float = 1.0
    #: time constant of the power's decay to idle after work (not observable in the traces: 0
    #: assumed; knob ``power_tail_s``)
    power_tail_s: float = 0.0
    #: h200.parquet text rows: 6.46-7.02 ms per encode; 0.92-1.01 J (about 143 W; README 145 W)
    text: tuple[float, float] = (0.0067, 143.0)
    #: resources/gpu-runs README run 1: the first (cold) text-encoder call took over 1 s
    text_cold_s: float = 1.1
    #: h200.parquet vae rows: time_s and energy_j / time_s per resolution
    vae: dict[int, tuple[float, float]] = field(default_factory=lambda: {
        256: (0.00521, 415.0), 512: (0.0206, 426.0), 768: (0.0483, 428.0), 1024: (0.0854, 452.0)})
    #: assumed: a new VAE shape's first decode (cuDNN algorithm search)
    vae_cold_s: float = 0.3
    #: h200.parquet denoise rows: fastest time per step and median power per resolution
    denoise_step: dict[int, tuple[float, float]] = field(default_factory=lambda: {
        256: (0.0244, 202.0), 512: (0.0270, 283.0), 768: (0.0275, 485.0), 1024: (0.0452, 640.0)})
    #: share of a call's time that waits on the host (launch-bound): what the host's drift slows.
    #: From the same rows: VAE windows' times agree to 0.03% (none), text and small denoise
    #: windows vary by 5-8% (all), 1024 px denoise by 3% (little)
    denoise_launch_share: dict[int, float] = field(default_factory=lambda: {
        256: 0.9, 512: 0.8, 768: 0.4, 1024: 0.1})
    #: resources/gpu-runs README run 2 (job logs): warm-up 1.8-11 s per job (a new shape's first
    #: denoising call)
    denoise_cold_s: float = 1.5
    #: README: big MMDiT denoisers 670-690 W at the 700 W limit
    max_w: float = 690.0
    #: h200.parquet: SD 1.5 denoiser, 0.860 B parameters (zoo)
    reference_params: float = 0.860e9
    #: sd of the host's speed drift (relative, launch-bound share) and its correlation time:
    #: h200.parquet text windows 6.46-7.02 ms per call over three 2 s windows
    host_sd: float = 0.03
    host_tau_s: float = 1.0
    #: host stalls (the GPU idles): 13 of 66 denoise/image windows of h200.parquet (160 s of
    #: windows) were 10-41% slower than their point's fastest repeat, i.e. 0.2-0.9 s longer
    stall_rate_hz: float = 0.087
    stall_s: tuple[float, float] = (0.2, 0.9)
    #: shared facts of the project: "the first repeat after warm-up was often the highest": clocks
    #: ramp up after an idle second (assumed +8% time, decaying over 0.3 s of busy time)
    ramp: float = 0.08
    ramp_tau_s: float = 0.3
    #: assumed: call-to-call power noise (relative sd; one denoising step is one call)
    power_sd: float = 0.01
    #: resources/gpu-runs README run 2 (job.json): start-up and imports 3.6-4.7 s, build 2.3-2.7 s
    startup_s: float = 4.0
    build_s: float = 2.5
    #: run1_gpu_check.log "power limit 700 W", "driver 580.159.04"
    power_limit_w: float = 700.0
    driver_version: str = "580.159.04"
    #: the step probe's known load (a large fp16 matmul; assumed near the 1024 px denoiser's 640 W)
    probe_load_w: float = 600.0
    #: a denoising call above this resolution runs out of memory inside its window (0: none)
    oom_above_px: int = 0
    #: the UUID the GPU reports (knob ``uuid=GPU-2``: two simulated cards of one kind); empty:
    #: ``GPU-simulated-<name>``
    uuid: str = ""
    #: the simulated GPU's random stream (another seed: another run of the same GPU)
    seed: int = 0


CALIBRATIONS = {"h200": Calibration("h200", "NVIDIA H200")}

#: Knobs with a range (others: any value of their field's type); NaN is refused everywhere.
KNOB_RANGES: dict[str, tuple[float, float]] = {
    "counter_lag_s": (0.0, 1.0), "sampled_fraction": (0.05, 1.0), "power_tail_s": (0.0, 2.0),
    "host_sd": (0.0, 0.5), "stall_rate_hz": (0.0, 10.0), "oom_above_px": (0, 100_000), "seed": (0, 2**31),
    "counter_period_s": (0.001, 10.0), "counter_jitter_s": (0.0, 1.0), "counter_resolution_j": (1e-6, 1.0),
}


def knobs() -> list[str]:
    """The fields a knob may set: every number or text field but the calibration's names."""
    return [f.name for f in dataclasses.fields(Calibration)
            if f.name not in ("name", "gpu_name") and f.type in ("float", "int", "str")]


def calibration(value: str) -> Calibration:
    """The calibration a value of ``ENV`` names (``h200``), with its knobs (``,field=value``) applied;
    a bad knob is one line naming it and the allowed ones."""
    from ..errors import UsageError

    name, *settings = [part.strip() for part in value.split(",")]
    try:
        cal = CALIBRATIONS[name.lower()]
    except KeyError:
        raise UsageError(f"{ENV}={value!r}: no such simulated GPU; known: {sorted(CALIBRATIONS)}") from None
    allowed = knobs()
    changes: dict[str, Any] = {}
    for knob in settings:
        key, sep, text = (part.strip() for part in knob.partition("="))
        if not sep or key not in allowed:
            raise UsageError(f"{ENV}={value!r}: {key or knob!r} is not a knob; give name=value after the "
                             f"calibration, name one of: {', '.join(allowed)}")
        kind = type(getattr(cal, key))
        if kind is str:
            if not text:
                raise UsageError(f"{ENV}={value!r}: knob {key} needs a value")
            changes[key] = text
            continue
        try:
            number = float(text)
        except ValueError:
            raise UsageError(f"{ENV}={value!r}: knob {key} must be a number, not {text!r}") from None
        low, high = KNOB_RANGES.get(key, (-math.inf, math.inf))
        if not (low <= number <= high) or (kind is int and not number.is_integer()):  # also refuses NaN
            raise UsageError(f"{ENV}={value!r}: knob {key}={text} is out of range [{low:g}, {high:g}]"
                             + (" (a whole number)" if kind is int else ""))
        changes[key] = kind(number)
    return dataclasses.replace(cal, **changes)


def simulated_kind(value: str | None = None) -> str | None:
    """The GPU kind simulated rows carry, ``h200-simulated`` for ``ENV=h200[,knobs]`` (``value``, or
    the environment's); None when no simulated GPU is selected."""
    value = os.environ.get(ENV, "") if value is None else value
    return calibration(value).name + KIND_SUFFIX if value else None


def is_simulated_kind(kind: str) -> bool:
    """Whether a GPU kind name is a simulated GPU's (never a real measurement)."""
    return str(kind).endswith(KIND_SUFFIX)


def _interpolate(table: dict[int, tuple[float, ...]], resolution: int) -> tuple[float, ...]:
    """A calibrated stage's values at any resolution: linear in pixels, clamped to the table."""
    keys = sorted(table)
    pixels = resolution * resolution
    if resolution <= keys[0]:
        return table[keys[0]]
    if resolution >= keys[-1]:
        low, high = keys[-2], keys[-1]
    else:
        i = bisect.bisect_left(keys, resolution)
        low, high = keys[i - 1], keys[i]
    f = (pixels - low * low) / (high * high - low * low)
    # beyond the table's largest resolution: extrapolated linearly in pixels
    return tuple(a + f * (b - a) for a, b in zip(table[low], table[high], strict=True))


class SimulatedCounter:
    """The GPU's cumulative energy counter as NVML shows it: whole mJ, updated every period +- jitter.

    An update adds the period times the mean power over its content: the period ending
    ``counter_lag_s`` before it, or only the last ``counter_sampled_fraction`` of that period (a
    counter that samples power part of the time).
    """

    def __init__(self, gpu: SimulatedGpu) -> None:
        self.gpu = gpu
        cal = gpu.cal
        self.unit_j = cal.counter_resolution_j
        self._last = gpu.rng.uniform(0, cal.counter_period_s) - cal.counter_period_s
        self._next = self._last + cal.counter_period_s
        self._energy = 0.0
        self._value = 0
        self.reads = 0

    def read_mj(self) -> int:
        gpu, cal = self.gpu, self.gpu.cal
        self.reads += 1
        while self._next <= gpu.t:
            width = self._next - self._last
            end = max(self._next - cal.counter_lag_s, 0.0)
            begin = max(end - cal.sampled_fraction * width, 0.0)
            sampled = gpu.energy_between(begin, end)
            self._energy += sampled * width / (end - begin) if end > begin else 0.0
            self._value = int(math.floor(self._energy / self.unit_j)) * round(self.unit_j * 1000)
            self._last = self._next
            self._next += cal.counter_period_s + gpu.rng.uniform(-cal.counter_jitter_s, cal.counter_jitter_s)
        return self._value


class SimulatedGpu:
    """A virtual clock and the energy the GPU draws along it (exact), read through ``counter``.

    After busy work the power decays to idle with time constant ``power_tail_s`` (until the next
    work); that energy is the work's: ``attributed_j`` counts it when the decay starts (less what
    the next work cuts short), so a window's real energy is ``attributed_j`` at its end, plus the
    tail still to come, less ``attributed_j`` at its start.
    """

    def __init__(self, cal: Calibration | str = "h200", seed: int | None = None) -> None:
        self.cal = calibration(cal) if isinstance(cal, str) else cal
        self.rng = random.Random(self.cal.seed if seed is None else seed)
        self.t = 0.0
        self.energy_j = 0.0
        self.attributed_j = 0.0
        # (start time, energy at start, watts) of every stretch of constant power not yet read
        self._segments: deque[tuple[float, float, float]] = deque([(0.0, 0.0, self.cal.idle_w)])
        self._idle_since: float | None = 0.0
        self._busy_run = 0.0
        self._ramp = 0.0
        self._host = 0.0
        self._host_t = 0.0
        self._to_stall = self._stall_gap()
        self.stalls: list[float] = []
        self._armed_w = math.nan  # power of the work just done: its tail starts at the next idle
        self._tail: tuple[float, float] | None = None  # (start, excess watts) of the decay under way
        self._load: tuple[float, float] | None = None  # (end, watts) of asynchronous work (the probe's)
        self.in_window = False  # a measured window is open (the oom_above_px knob fails inside one)
        self.counter = SimulatedCounter(self)

    # -- the seams the measure job takes
    def clock(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        """The host waits; the GPU finishes asynchronous work, then idles (its power decaying)."""
        while seconds > 1e-12:
            if self._load is not None:
                end, watts = self._load
                chunk = min(seconds, end - self.t)
                if chunk > 0:
                    self._draw(chunk, watts)
                    self.attributed_j += chunk * watts
                    seconds -= chunk
                if self.t >= end - 1e-12:
                    self._load = None
                    self._armed_w = watts
                continue
            seconds -= self._idle(seconds)

    def sync(self) -> None:
        """Nothing is queued: every simulated call returns when its work is done."""

    def load(self, seconds: float, watts: float | None = None) -> Callable[[], bool]:
        """Start ``seconds`` of steady work (the step probe's known load); whether it is done."""
        self._cut_tail()
        if self._idle_since is not None:
            self._idle_since = None
        self._load = (self.t + seconds, watts or self.cal.probe_load_w)
        end = self._load[0]
        return lambda: self.t >= end - 1e-12

    # -- the physics
    def energy_at(self, when: float) -> float:
        """Energy drawn since time 0 up to ``when`` (<= now); forgets what lies before ``when``."""
        while len(self._segments) > 1 and self._segments[1][0] <= when:
            self._segments.popleft()
        start, energy, watts = self._segments[0]
        return energy + (when - start) * watts

    def energy_between(self, begin: float, end: float) -> float:
        """Energy drawn over [begin, end] (begin no earlier than any earlier call's end)."""
        first = self.energy_at(begin)
        return self.energy_at(end) - first

    def _draw(self, seconds: float, watts: float) -> None:
        if self._segments[-1][2] != watts:
            self._segments.append((self.t, self.energy_j, watts))
        self.t += seconds
        self.energy_j += seconds * watts

    def _idle(self, seconds: float) -> float:
        """Idle for up to ``seconds`` (less while the power tail decays: it is drawn in steps); the
        seconds drawn."""
        cal = self.cal
        if self._idle_since is None:
            self._idle_since = self.t
        tau = cal.power_tail_s
        if math.isfinite(self._armed_w):
            excess = max(self._armed_w - cal.idle_w, 0.0)
            self._armed_w = math.nan
            if tau > 0 and excess > 0:
                self._tail = (self.t, excess)
                self.attributed_j += excess * tau
        if self._tail is None:
            self._draw(seconds, cal.idle_w)
            self.attributed_j += seconds * cal.idle_w
            return seconds
        t0, excess = self._tail
        age = self.t - t0
        if age > 12 * tau:
            self._tail = None
            return 0.0
        chunk = min(seconds, tau / 20)
        tail_j = excess * tau * (math.exp(-age / tau) - math.exp(-(age + chunk) / tau))
        self._draw(chunk, cal.idle_w + tail_j / chunk)
        self.attributed_j += chunk * cal.idle_w
        return chunk

    def _cut_tail(self) -> None:
        """Work starts: the decay under way stops (what it had left was never drawn)."""
        if self._tail is not None:
            t0, excess = self._tail
            tau = self.cal.power_tail_s
            self.attributed_j -= excess * tau * math.exp(-(self.t - t0) / tau)
            self._tail = None
        if self._load is not None:  # asynchronous work runs to its end first
            end, watts = self._load
            if end > self.t:
                self._draw(end - self.t, watts)
                self.attributed_j += (end - self.t) * watts
            self._load = None
        self._armed_w = math.nan

    def pending_tail_j(self) -> float:
        """The tail the work just done will leave (J over idle), not yet drawn or attributed."""
        if not math.isfinite(self._armed_w) or self.cal.power_tail_s <= 0:
            return 0.0
        return max(self._armed_w - self.cal.idle_w, 0.0) * self.cal.power_tail_s

    def _stall_gap(self) -> float:
        rate = self.cal.stall_rate_hz
        return self.rng.expovariate(rate) if rate > 0 else math.inf

    def _host_drift(self) -> float:
        """The host's relative slowdown now (Ornstein-Uhlenbeck in time)."""
        dt = self.t - self._host_t
        self._host_t = self.t
        decay = math.exp(-dt / self.cal.host_tau_s)
        noise = self.cal.host_sd * math.sqrt(1 - decay * decay) * self.rng.gauss(0, 1)
        self._host = self._host * decay + noise
        return self._host

    def run(self, seconds: float, watts: float, launch_share: float, calls: int = 1) -> None:
        """Busy work that takes ``seconds`` at ``watts`` on a fast, warm GPU and a quiet host.

        The host's drift stretches the launch-bound share (the GPU waits at idle power), clocks
        that ramp up after idling stretch the rest, and a stall adds idle time. ``calls``
        back-to-back calls (e.g. denoising steps) average their power noise.
        """
        cal = self.cal
        self._cut_tail()
        if self._idle_since is not None:
            self._ramp = cal.ramp * min(1.0, (self.t - self._idle_since) / 1.0)
            self._busy_run = 0.0
            self._idle_since = None
        ramp = self._ramp * math.exp(-self._busy_run / cal.ramp_tau_s)
        host = launch_share * self._host_drift()
        busy_s = seconds * (1 + ramp)
        wait_s = max(seconds * host, -0.5 * seconds)  # launch-bound: host time the GPU spends idle
        power = watts * (1 + cal.power_sd / math.sqrt(max(calls, 1)) * self.rng.gauss(0, 1))
        total = busy_s + wait_s
        energy = busy_s * power + wait_s * cal.idle_w
        self._draw(total, energy / total)
        self.attributed_j += energy
        self._armed_w = energy / total
        self._busy_run += total
        self._to_stall -= total
        while self._to_stall <= 0:
            stall = self.rng.uniform(*cal.stall_s)
            self.stalls.append(stall)
            drawn = 0.0
            while drawn < stall - 1e-12:
                drawn += self._idle(stall - drawn)
            self._idle_since = None  # a stall is too short for the clocks to ramp down
            self._to_stall += self._stall_gap()

    def snapshot(self) -> dict[str, Any]:
        """What ``gpu.snapshot`` gives for a real GPU (name, driver, limit, clocks, temperature)."""
        return {"gpu_name": f"{self.cal.gpu_name} (simulated)",
                "gpu_uuid": self.cal.uuid or f"GPU-simulated-{self.cal.name}",
                "gpu_index": 0, "driver_version": self.cal.driver_version,
                "power_limit_w": self.cal.power_limit_w, "sm_clock_mhz": 1980.0, "temperature_c": 40.0,
                "throttle": []}


@dataclass(frozen=True)
class StageCost:
    """One call of a stage on a warm GPU: seconds, watts, launch-bound share, cold extra seconds."""

    seconds: float
    watts: float
    launch_share: float
    cold_s: float


def stage_costs(cal: Calibration, denoiser_params: float, resolution: int, cfg: bool, batch: int,
                precision: str) -> dict[str, StageCost]:
    """Text (one prompt set), one denoising step and one VAE decode of a point.

    SD 1.5 with CFG at batch 1 is the calibration; other sizes scale the compute-bound share of
    the denoiser by parameters, CFG (2 vs 1) and batch, and fp32 doubles compute (no tensor cores).
    """
    text_s, text_w = cal.text
    vae_s, vae_w = _interpolate(cal.vae, resolution)
    step_s, step_w = _interpolate(cal.denoise_step, resolution)
    share = _interpolate({r: (v,) for r, v in cal.denoise_launch_share.items()}, resolution)[0]
    share = min(max(share, 0.0), 1.0)
    scale = denoiser_params / cal.reference_params * (1.0 if cfg else 0.5) * batch
    fp32 = 2.0 if precision == "fp32" else 1.0
    compute = (1 - share) * scale * fp32
    seconds = step_s * (share + compute)
    # the busy share of the step draws what it drew at the calibration, up to the busiest power
    busy, busy_then = compute / (share + compute), max(1 - share, 1e-3)
    watts = min(cal.max_w, cal.idle_w + (step_w - cal.idle_w) * busy / busy_then)
    return {
        "text": StageCost(text_s * (1 if cfg else 0.5) * max(1, batch), text_w, 1.0, cal.text_cold_s),
        "denoise_step": StageCost(seconds, watts, share, cal.denoise_cold_s),
        "vae": StageCost(vae_s * batch * fp32, vae_w, 0.0, cal.vae_cold_s),
    }


#: Denoiser parameters of the default grid's architectures (README "The zoo", tested against the
#: published counts in tests/test_zoo*.py); others run at SD 1.5's size. Building a denoiser on
#: the meta device to count them takes ~10 s on a CI core, longer than a simulated job.
DENOISER_PARAMETERS = {"sd15": 0.860e9, "sd21": 0.866e9, "sdxl": 2.567e9, "sd35-large": 8.057e9,
                       "flux-dev": 11.901e9, "qwen-image": 20.430e9}


def denoiser_parameters(spec: Any) -> float:
    return DENOISER_PARAMETERS.get(spec.name, 0.0)


class SimulatedWorkload:
    """The measure job's ``Workload`` on the simulated GPU: the same stage callables, in virtual time.

    Building it costs the calibrated build time; each stage's first call per shape is cold.
    """

    def __init__(self, gpu: SimulatedGpu, spec: Any, precision: str) -> None:
        self.gpu = gpu
        self.spec = spec
        self.precision = precision
        self.params = denoiser_parameters(spec) or gpu.cal.reference_params
        self.denoiser_calls = 0
        self._warm: set[tuple] = set()
        gpu.sleep(gpu.cal.build_s)

    def _costs(self, resolution: int, cfg: bool, batch: int) -> dict[str, StageCost]:
        return stage_costs(self.gpu.cal, self.params, resolution, cfg, batch, self.precision)

    def _call(self, key: tuple, cost: StageCost, repeat: int = 1) -> None:
        if key not in self._warm:
            self._warm.add(key)
            self.gpu.run(cost.cold_s, cost.watts, 0.0)
        self.gpu.run(cost.seconds * repeat, cost.watts, cost.launch_share, repeat)

    def text_fn(self, cfg: bool, batch: int) -> Callable[[], None]:
        cost = self._costs(512, cfg, batch)["text"]
        return lambda: self._call(("text", cfg, batch), cost)

    def vae_fn(self, resolution: int, batch: int, frames: int | None = None) -> Callable[[], None]:
        cost = self._costs(resolution, True, batch * (frames or 1))["vae"]  # a video decodes every frame
        return lambda: self._call(("vae", resolution, batch, frames), cost)

    def denoise_fn(self, point: Any) -> Callable[[], None]:
        cost = self._costs(point.resolution, point.cfg, point.batch)["denoise_step"]
        key = ("denoise", point.resolution, point.cfg, point.batch)
        limit = self.gpu.cal.oom_above_px

        def run() -> None:
            if limit and point.resolution > limit and self.gpu.in_window:
                # memory that grows with back-to-back calls: half the steps run, then the allocation fails
                self._call(key, cost, max(1, point.steps // 2))
                raise RuntimeError(f"CUDA out of memory. Tried to allocate 2.00 GiB (simulated: "
                                   f"{point.resolution} px is above oom_above_px={limit})")
            self._call(key, cost, point.steps)
            self.denoiser_calls += point.steps

        return run

    def image_fn(self, point: Any, inner: Callable[[str], Any] | None = None) -> Callable[[], None]:
        text, denoise = self.text_fn(point.cfg, point.batch), self.denoise_fn(point)
        vae = self.vae_fn(point.resolution, point.batch, getattr(point, "frames", None))

        def run() -> None:
            text()
            if inner:
                inner("begin")
            denoise()
            if inner:
                inner("end")
            vae()

        return run


class SimulatedMeter(CounterMeter):
    """The measure job's meter on the simulated GPU; its windows also carry the energy really spent."""

    def __init__(self, gpu: SimulatedGpu, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gpu = gpu
        self._attributed: dict[str, float] = {}

    def _started(self, name: str) -> None:
        self.gpu._cut_tail()  # the work starts now: a decay under way stops here, not inside the window
        self._attributed[name] = self.gpu.attributed_j
        self.gpu.in_window = True

    def _done(self, name: str) -> float:
        self.gpu.in_window = False
        return self.gpu.attributed_j + self.gpu.pending_tail_j() - self._attributed.pop(name)

    def abort(self, name: str) -> None:
        super().abort(name)
        self._attributed.pop(name, None)
        self.gpu.in_window = False


def simulated_meter(gpu: SimulatedGpu, aligned: bool = True, log_file: Any = None,
                    min_tail_s: float = 0.0, physics: bool = False) -> CounterMeter:
    """The measure job's meter on the simulated GPU: its counter probed, as on a real one, and with
    ``physics`` its step response too (``counter.step_response``)."""
    info = probe(gpu.counter.read_mj, gpu.clock, gpu.sleep)
    measured = (step_response(gpu.counter.read_mj, gpu.clock, gpu.sleep, gpu.load, info)
                if physics and aligned else CounterPhysics())
    meter = SimulatedMeter(gpu, gpu.counter.read_mj, info, gpu.clock, gpu.sleep, gpu.sync, aligned, log_file,
                           min_tail_s=min_tail_s, physics=measured)
    meter.energy_status = f"simulated: {gpu.cal.gpu_name} calibration, not a measurement"
    meter.provenance = (f"simulated: the {gpu.cal.name} calibration's counter "
                        f"(diffusion_energy.measurement.simulated_gpu), not a GPU")
    return meter
