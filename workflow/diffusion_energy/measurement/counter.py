"""Energy windows aligned to the updates of a GPU's cumulative energy counter.

NVML's energy counter (mJ since the driver loaded) moves in steps, about every 100 ms on an
H100/H200. A window read at arbitrary times, as Zeus reads it, is off by up to one step at each
end: on the real H200, three 2 s windows of identical VAE decodes (times equal to 0.03%) read
energies 4.8% apart. Here a window opens at a counter update and closes at the first update
after its work: the counter difference is then exactly the energy between two updates, and the
GPU's idle tail (from the end of the work to that update, under one period) is subtracted at
the idle power, itself measured between two updates. What remains is the counter's 1 mJ unit
and the idle power's error over the tail (well under 1 J).

``probe`` measures the counter's real update period and unit at job start (by polling), so
windows are sized from it instead of an assumed 100 ms. The counter itself is read by
``energy.NvmlEnergyCounter`` (or a simulated GPU's): anything with ``read_mj()``.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

from .energy import EnergyError, Window

#: Poll interval while waiting for a counter update (s): the window's edge is this precise.
POLL_S = 0.0005


class ShortWindow(EnergyError):
    """A window spans too few counter updates: the protocol lengthens it and measures it again."""


@dataclass(frozen=True)
class CounterInfo:
    """The energy counter as measured at job start."""

    period_s: float  # median time between updates
    jitter_s: float  # largest deviation of one interval from the median
    resolution_j: float  # the counter's unit (greatest common divisor of its steps)
    updates: int  # updates seen while probing


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


class CounterMeter:
    """Windows on one GPU from its energy counter, aligned to the counter's updates.

    ``aligned=False`` reads the counter at the window's edges instead (Zeus's way), kept to
    compare the two on the simulated GPU. Every window is appended to ``log_file`` (CSV).
    """

    measures_energy = True
    absent_reason = ""
    #: what the rows' ``energy_status`` says (a simulated GPU's meter says so)
    energy_status = "measured"

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
    ) -> None:
        self.read_mj, self.info, self.clock, self.sleep, self.sync = read_mj, info, clock, sleep, sync
        self.aligned = aligned
        self.poll_s = poll_s
        #: a window closes at the first update at least this long after its work: if an update
        #: shows the energy up to a moment before it (a lag), the work's end is still counted
        self.min_tail_s = min_tail_s
        self.log_file = Path(log_file) if log_file else None
        #: idle power (W) for the tail after the work; unknown (NaN) until ``set_idle_power``
        self.idle_w = math.nan
        self._open: dict[str, tuple[float, int]] = {}

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

    def begin(self, name: str) -> None:
        if name in self._open or (self.aligned and self._open):
            raise RuntimeError(f"window {name!r}: another window is open ({sorted(self._open)}); "
                               "aligned windows do not nest")
        self.sync()
        self._open[name] = self._next_update() if self.aligned else (self.clock(), self.read_mj())

    def end(self, name: str) -> Window:
        try:
            start, first = self._open.pop(name)
        except KeyError:
            raise RuntimeError(f"window {name!r} was never opened") from None
        self.sync()
        done = self.clock()
        if self.aligned:
            stop, last = self._next_update()
            while stop - done < self.min_tail_s:
                stop, last = self._next_update()
        else:
            stop, last = done, self.read_mj()
        counted_j = (last - first) / 1000
        tail_s = stop - done
        if math.isfinite(self.idle_w):
            energy = counted_j - self.idle_w * tail_s
        else:  # the idle window itself: its tail is idle too, so its mean power is exact
            energy = counted_j * (done - start) / (stop - start) if stop > start else math.nan
        window = Window(name, done - start, energy)
        self._log(window, start, counted_j, tail_s)
        self.check(window)
        return window

    def check(self, window: Window) -> None:
        """Refuse a window that spans under two counter updates, or that read no energy."""
        if window.time_s < 2 * self.info.period_s:
            raise ShortWindow(
                f"window {window.name!r} lasted {window.time_s * 1e3:.0f} ms, shorter than two updates of "
                f"the energy counter ({self.info.period_s * 1e3:.0f} ms each); lengthen it")
        if not window.energy_j > 0:
            raise EnergyError(f"window {window.name!r} read {window.energy_j} J over {window.time_s:.2f} s: "
                              "the GPU was not measured (0 J is never a result)")

    def _log(self, window: Window, start: float, counted_j: float, tail_s: float) -> None:
        if self.log_file is None:
            return
        new = not self.log_file.exists()
        with self.log_file.open("a", newline="") as f:
            out = csv.writer(f)
            if new:
                out.writerow(["start_s", "window_name", "elapsed_time", "gpu0_energy", "counter_j", "tail_s",
                              "idle_w", "aligned"])
            out.writerow([f"{start:.6f}", window.name, f"{window.time_s:.6f}", f"{window.energy_j:.4f}",
                          f"{counted_j:.3f}", f"{tail_s:.6f}", f"{self.idle_w:.2f}", int(self.aligned)])
