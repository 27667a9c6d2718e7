"""Energy windows aligned to the updates of a GPU's cumulative energy counter, corrected for the
counter's physics as measured at job start.

NVML's energy counter (mJ since the driver loaded) moves in steps, about every 100 ms on an
H100/H200. A window read at arbitrary times, as Zeus's monitor reads it, is off by up to one step
at each end: on the real H200, three 2 s windows of identical VAE decodes (times equal to 0.03%)
read energies 4.8% apart. Here a window opens at a counter update and closes at an update after
its work, so the counter difference is the energy between two updates; the idle time it holds
besides the work is subtracted at the idle power, itself measured between two updates.

Three things make an update differ from "the energy up to now", and ``step_response`` measures
each at job start by running a known load between idle stretches (``fit_physics``):

* **lag**: an update shows the energy up to some time before it. A window then closes at the
  first update whose content reaches past the work's end.
* **sampling**: a counter may integrate power only part of each period (reported for A100/H100:
  25 ms of every 100 ms) and scale it to the period. Where power changes inside a period (the
  work's start and end), its increment is off by up to the unsampled share of a period at the
  work's power; the window is then corrected with the fitted model of the counter: its start is
  placed on a period boundary, and the sampling error of the periods around the work's end
  (predicted from the window's own power and tail) is added back.
* **power tail**: the GPU's power decays to idle over some time after the work. That energy is
  the work's: a window stays open until a whole period after the work is seen, and the rest of
  the decay beyond its last update is extrapolated from that period (exponential with the fitted
  time constant). A tail left by work outside windows (warm-up) is measured before a window opens
  and taken out.

``probe`` measures the counter's update period and unit (by polling). The counter itself is
read by ``energy.ZeusEnergyCounter`` (or a simulated GPU's): anything with ``read_mj()``.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import numpy as np

from .energy import EnergyError, Window

#: Poll interval while waiting for a counter update (s): the window's edge is this precise.
POLL_S = 0.0005
#: A counter whose fitted sampled share of each period is below this samples (else it integrates).
SAMPLED_BELOW = 0.95
#: Largest lag the step probe can resolve with its default load (s).
MAX_LAG_S = 0.4
#: A counter sampling less of each period than this cannot be corrected enough: a power change
#: inside a window (text and VAE inside an image, a host stall) is missed or counted at random.
#: On the simulated H200 (benchmarks/counter_variants.py, SD 1.5's 12 points x 3 seeds, after the
#: one-job-per-model protocol) the worst point bias against the energy really spent was 4.1% sampling
#: 0.5 of each period, 3.0% at 0.6, 2.0% at 0.75 and 1.2% at 0.9 (0.01% integrating): the bias goal
#: (3%) holds from 0.75. Worst repeat spreads 5.6%, 5.5%, 5.4%, 5.3% (5.0% integrating: host stalls).
#: Longer windows did not help: they catch more host stalls (2.5 s windows at 0.5: 16.9% spread).
MIN_SAMPLED_FRACTION = 0.75


class ShortWindow(EnergyError):
    """A window spans too few counter updates: the protocol lengthens it and measures it again."""


@dataclass(frozen=True)
class CounterInfo:
    """The energy counter as measured at job start."""

    period_s: float  # median time between updates
    jitter_s: float  # largest deviation of one interval from the median
    resolution_j: float  # the counter's unit (greatest common divisor of its steps)
    updates: int  # updates seen while probing


@dataclass(frozen=True)
class CounterPhysics:
    """How the counter's updates relate to the GPU's power, from the step response at job start."""

    lag_s: float = 0.0  # an update shows the energy up to this long before it
    sampled_fraction: float = 1.0  # share of each period the counter integrates (1: all of it)
    tail_s: float = 0.0  # time constant of the power's decay to idle after work
    load_w: float = math.nan  # the probe load's power
    idle_w: float = math.nan  # idle power during the probe
    fit_error: float = math.nan  # rms misfit of the model, as a share of (load - idle) power
    measured: bool = False

    @property
    def samples(self) -> bool:
        return self.sampled_fraction < SAMPLED_BELOW

    def describe(self) -> str:
        if not self.measured:
            return "not measured (assumed: no lag, integrates continuously, no power tail)"
        how = (f"samples {self.sampled_fraction:.0%} of each period" if self.samples
               else "integrates continuously")
        return (f"lag {self.lag_s * 1e3:.0f} ms, {how}, power tail {self.tail_s * 1e3:.0f} ms "
                f"(step probe: load {self.load_w:.0f} W, idle {self.idle_w:.0f} W, "
                f"misfit {self.fit_error:.1%})")

    def problem(self) -> str:
        """Why windows cannot be corrected for this counter ("" when they can)."""
        if not self.measured:
            return ""
        if not math.isfinite(self.fit_error) or self.fit_error > 0.15:
            return (f"the energy counter's step response fits no model of lag, sampling and power tail "
                    f"(misfit {self.fit_error:.0%} of the load's power)")
        if self.sampled_fraction < MIN_SAMPLED_FRACTION:
            return (f"the energy counter integrates only {self.sampled_fraction:.0%} of each update period "
                    "(step probe): power changes inside a window (text and VAE inside an image, host stalls) "
                    f"are missed or counted at random, several % per window (corrected down to "
                    f"{MIN_SAMPLED_FRACTION:.0%} sampled)")
        if self.lag_s >= MAX_LAG_S - 0.01:
            return (f"the energy counter lags its work by {self.lag_s:.2f} s or more, beyond what the probe "
                    "resolves")
        if self.tail_s > 1.0:
            return (f"the GPU's power takes {self.tail_s:.1f} s (time constant) to fall back to idle after "
                    "work")
        return ""


#: Before the probe (or where it is not run): the counter is taken at its word.
UNMEASURED = CounterPhysics()


def probe(read_mj: Callable[[], int], clock: Callable[[], float], sleep: Callable[[float], None],
          duration_s: float = 1.0, poll_s: float = POLL_S) -> CounterInfo:
    """Poll the counter for ``duration_s`` and time its updates (about ten: the unit, the greatest
    common divisor of the steps, is then exact but for a chance of 1 in 500)."""
    times: list[float] = []
    steps: list[int] = []
    last = read_mj()
    start = clock()
    while clock() - start < duration_s or len(times) < 3:
        if clock() - start > max(10 * duration_s, 5.0):
            raise EnergyError(f"the GPU's energy counter moved {len(times)} time(s) in "
                              f"{clock() - start:.1f} s: it cannot time energy windows")
        sleep(poll_s)
        value = read_mj()
        if value != last:
            times.append(clock())
            steps.append(value - last)
            last = value
    intervals = [b - a for a, b in zip(times, times[1:], strict=False)]
    period = statistics.median(intervals)
    unit_mj = reduce(math.gcd, (abs(s) for s in steps))
    return CounterInfo(period, max(abs(i - period) for i in intervals), unit_mj / 1000, len(times))


# -- the model: power = idle + (load - idle) x (busy + tail); an update's increment is the mean
#    power over the last ``f`` of its content period [u - lag - period, u - lag], times the period

def _overlap(a: np.ndarray, b: np.ndarray, loads: list[tuple[float, float]]) -> np.ndarray:
    """Time the intervals [a, b] spend inside the loads."""
    total = np.zeros(np.broadcast(a, b).shape)
    for s, e in loads:
        total += np.clip(np.minimum(b, e) - np.maximum(a, s), 0.0, None)
    return total


def _tail(a: np.ndarray, b: np.ndarray, loads: list[tuple[float, float]], tau: float) -> np.ndarray:
    """Integral over [a, b] of the decays exp(-(t - end)/tau) after each load, until the next starts."""
    total = np.zeros(np.broadcast(a, b).shape)
    if tau <= 0:
        return total
    for k, (_, e) in enumerate(loads):
        cut = loads[k + 1][0] if k + 1 < len(loads) else math.inf
        lo = np.maximum(a, e)
        hi = np.minimum(b, cut)
        with np.errstate(over="ignore"):
            part = tau * (np.exp(-(lo - e) / tau) - np.exp(-(hi - e) / tau))
        total += np.where(hi > lo, part, 0.0)
    return total


def _fit(times: np.ndarray, widths: np.ndarray, power: np.ndarray, loads: list[tuple[float, float]],
         lags: np.ndarray, fractions: np.ndarray, taus: np.ndarray) -> tuple[float, float, float, float]:
    """Best (lag, fraction, tau) on a grid by the correlation of the model's shape with the power."""
    best = (-math.inf, 0.0, 1.0, 0.0)
    lag, frac = np.meshgrid(lags, fractions, indexing="ij")
    lag, frac = lag.reshape(-1, 1), frac.reshape(-1, 1)
    end = times[None, :] - lag
    begin = end - frac * widths[None, :]
    span = frac * widths[None, :]
    busy = _overlap(begin, end, loads) / span
    y = power - power.mean()
    for tau in taus:
        g = busy + _tail(begin, end, loads, float(tau)) / span
        g = g - g.mean(axis=1, keepdims=True)
        norm = np.sqrt((g * g).sum(axis=1)) + 1e-12
        score = (g @ y) / norm  # proportional to the correlation; the slope must be positive
        i = int(np.argmax(score))
        if score[i] > best[0]:
            best = (float(score[i]), float(lag[i, 0]), float(frac[i, 0]), float(tau))
    return best


def fit_physics(updates: list[tuple[float, int]], loads: list[tuple[float, float]]) -> CounterPhysics:
    """The lag, sampled share and power tail that best explain the counter's increments around the
    known loads (grid search, coarse then fine; idle and load power by least squares)."""
    if len(updates) < 8 or not loads:
        raise EnergyError(f"the step probe saw {len(updates)} counter updates around {len(loads)} load(s): "
                          "too few to measure the counter")
    t = np.array([u for u, _ in updates], dtype=float)
    v = np.array([val for _, val in updates], dtype=float) / 1000.0
    times, widths = t[1:], np.diff(t)
    power = np.diff(v) / widths
    coarse_taus = np.array([0.0, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.0, 1.5])
    _, lag, frac, tau = _fit(times, widths, power, loads, np.arange(0.0, MAX_LAG_S, 0.01),
                             np.arange(0.1, 1.0001, 0.05), coarse_taus)
    fine_taus = np.unique(np.clip(np.concatenate([[0.0], tau * np.linspace(0.7, 1.3, 13)]), 0.0, None))
    _, lag, frac, tau = _fit(times, widths, power, loads,
                             np.clip(np.arange(lag - 0.015, lag + 0.0151, 0.0025), 0.0, MAX_LAG_S),
                             np.clip(np.arange(frac - 0.075, frac + 0.076, 0.0125), 0.05, 1.0), fine_taus)
    end = times - lag
    span = frac * widths
    g = (_overlap(end - span, end, loads) + _tail(end - span, end, loads, tau)) / span
    slope, idle = np.polyfit(g, power, 1)
    misfit = float(np.sqrt(np.mean((power - (idle + slope * g)) ** 2)) / slope) if slope > 0 else math.inf
    return CounterPhysics(round(lag, 4), round(min(frac, 1.0), 4), round(tau, 4), float(idle + slope),
                          float(idle), misfit, True)


def step_response(read_mj: Callable[[], int], clock: Callable[[], float], sleep: Callable[[float], None],
                  load: Callable[[float], Callable[[], bool]], info: CounterInfo, steps: int = 5,
                  load_s: float = 0.55, settle_s: float = 0.5, poll_s: float = POLL_S) -> CounterPhysics:
    """Idle, a known load, idle, ``steps`` times, every counter update recorded; the model fitted.

    ``load(seconds)`` starts about that much steady work on the GPU and returns whether it is done.
    The loads start and end at phases spread over the counter's period, so that a counter which
    samples part of each period shows it. After the last load the GPU is left to settle (five time
    constants of the fitted power tail) before anything else is measured.
    """
    period = info.period_s
    updates: list[tuple[float, int]] = []
    loads: list[tuple[float, float]] = []
    last = read_mj()
    updates.append((clock(), last))  # a reference read, dropped below (not an update time)

    def poll() -> None:
        nonlocal last
        sleep(poll_s)
        value = read_mj()
        if value != last:
            updates.append((clock(), value))
            last = value

    def idle_for(seconds: float) -> None:
        until = clock() + seconds
        while clock() < until:
            poll()

    def next_update() -> None:
        seen = len(updates)
        start = clock()
        while len(updates) == seen:
            poll()
            if clock() - start > 20 * period + 1.0:
                raise EnergyError(f"the GPU's energy counter has not moved for {clock() - start:.1f} s")

    next_update()
    for k in range(steps):
        next_update()
        idle_for(((k + 0.5) / steps) * period)  # the load starts at a spread phase of the period
        extra = ((k * 0.618) % 1.0) * period  # and ends at another
        start = clock()
        done = load(load_s + extra)
        while not done():
            poll()
        loads.append((start, clock()))
        idle_for(settle_s)
    physics = fit_physics(updates[1:], loads)
    idle_for(max(0.0, 5 * physics.tail_s - settle_s))
    return physics


@dataclass
class _Open:
    """A window begun: its opening update, the work's start, and a tail left by earlier work."""

    update_s: float
    value_mj: int
    start_s: float
    content_end_s: float  # the opening update's content ends here (update time - lag)
    foreign_w: float  # excess power over idle at content_end_s from earlier work (decaying)


class CounterMeter:
    """Windows on one GPU from its energy counter, aligned to the counter's updates and corrected
    for its ``physics`` (lag, sampling, power tail: see the module docstring).

    ``aligned=False`` reads the counter at the window's edges instead (Zeus's way), kept to
    compare the two on the simulated GPU. Every window is appended to ``log_file`` (CSV).
    """

    measures_energy = True
    absent_reason = ""
    #: what the rows' ``energy_status`` says (a simulated GPU's meter says so)
    energy_status = "measured"
    #: what reads the counter (the rows' ``energy_counter``)
    provenance = ""

    def __init__(
        self,
        read_mj: Callable[[], int],
        info: CounterInfo,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        sync: Callable[[], None] = lambda: None,
        aligned: bool = True,
        log_file: str | Path | None = None,
        poll_s: float = POLL_S,
        min_tail_s: float = 0.0,
        physics: CounterPhysics = UNMEASURED,
    ) -> None:
        self.read_mj, self.info, self.clock, self.sleep, self.sync = read_mj, info, clock, sleep, sync
        self.aligned = aligned
        self.poll_s = poll_s
        #: a window closes at an update at least this long after its work (a floor; the measured
        #: lag and power tail may keep it open longer)
        self.min_tail_s = min_tail_s
        self.physics = physics
        self.log_file = Path(log_file) if log_file else None
        #: idle power (W) for the idle time a window holds besides its work; NaN until ``set_idle_power``
        self.idle_w = math.nan
        self._open: dict[str, _Open] = {}
        #: when the GPU last worked, as far as this meter knows (a window's end, ``note_work``);
        #: None: unknown, so a window's content starts no earlier than the call that begins it
        self._work_end: float | None = None

    def note_work(self) -> None:
        """Work outside any window (warm-up) ended now: a lagging counter still shows it for a while."""
        self._work_end = self.clock()

    def set_idle_power(self, watts: float) -> None:
        self.idle_w = watts

    def _next_update(self) -> tuple[float, int]:
        """Wait for the counter's next update; its time and value."""
        last = self.read_mj()
        start = self.clock()
        while True:
            self.sleep(self.poll_s)
            value = self.read_mj()
            if value != last:
                return self.clock(), value
            if self.clock() - start > 20 * self.info.period_s + 1.0:
                raise EnergyError(f"the GPU's energy counter has not moved for {self.clock() - start:.1f} s")

    # -- hooks for a simulated GPU's meter (it records the energy really spent)
    def _started(self, name: str) -> None:
        """The window's work starts now."""

    def _done(self, name: str) -> float:
        """The window's work is done now; the energy it really spent, where known (NaN)."""
        return math.nan

    def begin(self, name: str) -> None:
        if name in self._open or (self.aligned and self._open):
            raise RuntimeError(f"window {name!r}: another window is open ({sorted(self._open)}); "
                               "aligned windows do not nest")
        self.sync()
        if not self.aligned:
            now, value = self.clock(), self.read_mj()
            self._open[name] = _Open(now, value, now, now, 0.0)
            self._started(name)
            return
        ph, period = self.physics, self.info.period_s
        work_end = self.clock() if self._work_end is None else self._work_end
        # the opening update's content must start after earlier work (a lagging counter shows it
        # late); with a power tail, so must the update's before it: the power over its period shows
        # the tail left by earlier work
        tailed = ph.tail_s > 0 and math.isfinite(self.idle_w)
        before = None
        while True:
            update, value = self._next_update()
            if update - ph.lag_s >= work_end and (
                    not tailed or (before is not None and before[0] - ph.lag_s >= work_end)):
                break
            before = (update, value)
        foreign = self._tail_excess(*before, update, value) if tailed and before else 0.0
        content_end = update - ph.lag_s
        if ph.samples:
            # start the work on a content period's boundary: no sampled period holds its start
            boundary = content_end + math.ceil((self.clock() - content_end) / period - 1e-9) * period
            self.sleep(max(0.0, boundary - self.clock()))
        self._open[name] = _Open(update, value, self.clock(), content_end, foreign)
        self._started(name)

    def _tail_excess(self, t0: float, v0: int, t1: float, v1: int) -> float:
        """Excess power over idle at the end of the content of update ``t1`` (decaying with the tail)."""
        ph = self.physics
        width = t1 - t0
        sampled = ph.sampled_fraction * width
        excess = (v1 - v0) / 1000 / width - self.idle_w
        shape = ph.tail_s / sampled * math.expm1(sampled / ph.tail_s)  # mean of exp(+s/tau) over the sample
        return max(excess / shape, 0.0)

    def abort(self, name: str) -> None:
        """Forget an open window whose work failed (an out-of-memory error inside it)."""
        self._open.pop(name, None)
        self._work_end = None

    def end(self, name: str) -> Window:
        try:
            op = self._open.pop(name)
        except KeyError:
            raise RuntimeError(f"window {name!r} was never opened") from None
        self.sync()
        done = self.clock()
        self._work_end = done
        true_j = self._done(name)
        if not self.aligned:
            stop, last = done, self.read_mj()
            energy = (last - op.value_mj) / 1000
            window = Window(name, done - op.start_s, energy, true_j)
            self._log(window, op.start_s, energy, 0.0, 0.0)
            self.check(window)
            return window
        seen = [self._next_update()]
        while not self._may_close(done, seen):
            seen.append(self._next_update())
        stop, last = seen[-1]
        counted_j = (last - op.value_mj) / 1000
        if not math.isfinite(self.idle_w):
            # the idle window itself: all it counted is idle, so its mean power is exact
            energy = (counted_j * (done - op.start_s) / (stop - op.update_s) if stop > op.update_s
                      else math.nan)
            correction = 0.0
        else:
            base = counted_j - self.idle_w * ((op.start_s - op.update_s) + (stop - done))
            correction = self._correction(op, done, seen, base)
            energy = base + correction
        window = Window(name, done - op.start_s, energy, true_j)
        self._log(window, op.start_s, counted_j, stop - done, correction)
        self.check(window)
        return window

    def _may_close(self, done: float, seen: list[tuple[float, int]]) -> bool:
        """Close at this update? Its content must reach past the work (lag), and with a power tail
        the last period must lie wholly after the work (it measures the tail's remainder)."""
        ph = self.physics
        stop = seen[-1][0]
        if stop - done < self.min_tail_s or stop - ph.lag_s < done:
            return False
        if ph.tail_s > 0:
            return (len(seen) >= 2 and seen[-2][0] - ph.lag_s >= done
                    and stop - ph.lag_s - done >= 0.7 * ph.tail_s)
        return True

    def _correction(self, op: _Open, done: float, seen: list[tuple[float, int]], base: float) -> float:
        """What the counter's physics hides from a window's count: a tail left by earlier work (out),
        the rest of this work's tail after the last update (in), and where the counter samples, the
        error of the sampled periods around the work's start and end (in).

        The sampling error depends on the work's power, which the count itself gives; the error is
        linear in it, so both are solved together (``work`` below is the excess over idle).
        """
        ph, idle, period = self.physics, self.idle_w, self.info.period_s
        tau, frac = ph.tail_s, ph.sampled_fraction
        start = op.start_s
        c_last = seen[-1][0] - ph.lag_s
        own = 0.0  # this work's tail: excess power over idle at ``done``
        fixed = 0.0  # the correction's part that does not depend on the work's power
        if tau > 0:
            fixed -= op.foreign_w * tau * -math.expm1(-(start - op.content_end_s) / tau)
            (t0, v0), (t1, v1) = seen[-2], seen[-1]
            width = t1 - t0
            sampled = frac * width
            excess = (v1 - v0) / 1000 / width - idle
            shape = tau / sampled * math.exp(-(c_last - done) / tau) * math.expm1(sampled / tau)
            own = max(excess / shape, 0.0) if shape > 0 else 0.0
            fixed += own * tau * math.exp(-(c_last - done) / tau)
        if not ph.samples:
            return fixed

        def tails(a: float, b: float) -> float:
            """Model power above idle over [a, b] but the work's: the earlier tail until the work, its own."""
            total = 0.0
            if op.foreign_w > 0 and tau > 0:
                lo, hi = max(a, op.content_end_s), min(b, start)
                if hi > lo:
                    total += op.foreign_w * tau * (math.exp(-(lo - op.content_end_s) / tau)
                                                   - math.exp(-(hi - op.content_end_s) / tau))
            if own > 0:
                lo = max(a, done)
                if b > lo:
                    total += own * tau * (math.exp(-(lo - done) / tau) - math.exp(-(b - done) / tau))
            return total

        def busy(a: float, b: float) -> float:
            return max(0.0, min(b, done) - max(a, start))

        # period boundaries around the start (from the opening update on) and the end (back from the
        # first update seen after the work); between them the power is steady and sampling is exact
        first = seen[0][0] - ph.lag_s
        ends = [first - k * period for k in range(int((first - done) / period) + 2, 0, -1)]
        ends += [u - ph.lag_s for u, _ in seen]
        starts = [op.content_end_s + k * period for k in range(int((start - op.content_end_s) / period) + 3)]
        starts = [b for b in starts if b < ends[0] - 0.5 * period]
        if starts and ends[0] - starts[-1] < 1.5 * period:  # a short window: one run of periods
            groups = [starts + ends]
        else:
            groups = [starts, ends]
        per_watt = 0.0  # sampling error per watt of the work's excess power
        for bounds in groups:
            for a, b in zip(bounds, bounds[1:], strict=False):
                s = b - frac * (b - a)
                fixed += tails(a, b) - tails(s, b) / frac
                per_watt += busy(a, b) - busy(s, b) / frac
        # base + correction = idle x T + work x T + own tail, with correction = fixed + per_watt x work
        seconds = done - start
        if seconds - per_watt <= 0:
            return fixed
        work = (base + fixed - idle * seconds - own * tau) / (seconds - per_watt)
        return fixed + per_watt * work

    def check(self, window: Window) -> None:
        """Refuse a window that spans under two counter updates, or that read no energy."""
        if window.time_s < 2 * self.info.period_s:
            raise ShortWindow(
                f"window {window.name!r} lasted {window.time_s * 1e3:.0f} ms, shorter than two updates of "
                f"the energy counter ({self.info.period_s * 1e3:.0f} ms each); lengthen it")
        if not window.energy_j > 0:
            raise EnergyError(f"window {window.name!r} read {window.energy_j} J over {window.time_s:.2f} s: "
                              "the GPU was not measured (0 J is never a result)")

    def _log(self, window: Window, start: float, counted_j: float, tail_s: float,
             correction_j: float) -> None:
        if self.log_file is None:
            return
        new = not self.log_file.exists()
        with self.log_file.open("a", newline="") as f:
            out = csv.writer(f)
            if new:
                out.writerow(["start_s", "window_name", "elapsed_time", "gpu0_energy", "counter_j", "tail_s",
                              "idle_w", "correction_j", "true_energy_j", "aligned"])
            out.writerow([f"{start:.6f}", window.name, f"{window.time_s:.6f}", f"{window.energy_j:.4f}",
                          f"{counted_j:.3f}", f"{tail_s:.6f}", f"{self.idle_w:.2f}", f"{correction_j:.4f}",
                          f"{window.true_energy_j:.4f}", int(self.aligned)])
