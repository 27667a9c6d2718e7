"""The meter: named, synchronised energy windows on one GPU, through Zeus.

Only this module talks to Zeus. It refuses to report a GPU measurement that did
not measure a GPU: Zeus quietly monitors nothing when NVML cannot start and
then returns 0 J, and a window shorter than the NVML energy counter's update
period (about 100 ms on H100/H200) can read 0 J too. 0 J is never a result
here. On a machine without a GPU the ``TimeOnlyMeter`` times the same windows
and records energy as absent, with the reason.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import UserError

log = logging.getLogger(__name__)


class EnergyError(UserError, RuntimeError):
    """A window's energy reading cannot be trusted (0 J, no GPU measured)."""


@dataclass(frozen=True)
class Window:
    """One measured window: wall time and GPU energy (NaN when not measured)."""

    name: str
    time_s: float
    energy_j: float

    @property
    def power_w(self) -> float:
        return self.energy_j / self.time_s if self.time_s > 0 else math.nan


class Meter(Protocol):
    """What the measurement protocol needs from a meter."""

    #: True when windows hold real GPU energy.
    measures_energy: bool
    #: Why energy is absent ("" when it is measured).
    absent_reason: str

    def begin(self, name: str) -> None: ...

    def end(self, name: str) -> Window: ...


class TimeOnlyMeter:
    """Times windows without energy: the CPU path (tests, machines without a GPU)."""

    measures_energy = False

    def __init__(self, reason: str = "no NVIDIA GPU: energy not measured on the CPU") -> None:
        self.absent_reason = reason
        self._started: dict[str, float] = {}

    def begin(self, name: str) -> None:
        if name in self._started:
            raise RuntimeError(f"window {name!r} is already open")
        self._started[name] = time.perf_counter()

    def end(self, name: str) -> Window:
        try:
            start = self._started.pop(name)
        except KeyError:
            raise RuntimeError(f"window {name!r} was never opened") from None
        return Window(name, time.perf_counter() - start, math.nan)


class ZeusMeter:
    """Energy windows on one GPU through ``zeus.monitor.ZeusMonitor``.

    ``monitor`` may be injected (``zeus.utils.testing.ReplayZeusMonitor`` replays
    recorded windows in tests); otherwise a ZeusMonitor is made for
    ``gpu_index`` alone, with CPU (RAPL) monitoring off, logging every window
    to ``log_file``.
    """

    measures_energy = True
    absent_reason = ""

    def __init__(
        self,
        gpu_index: int = 0,
        log_file: str | Path | None = None,
        monitor: Any | None = None,
        update_period_s: float = 0.1,
    ) -> None:
        self.gpu_index = gpu_index
        self.update_period_s = update_period_s
        if monitor is None:
            from zeus.monitor import ZeusMonitor

            try:
                monitor = ZeusMonitor(gpu_indices=[gpu_index], cpu_indices=[], log_file=log_file)
            except ValueError as exc:  # "No GPUs available."
                raise EnergyError(f"Zeus cannot monitor GPU {gpu_index}: {exc}") from exc
        if gpu_index not in list(getattr(monitor, "gpu_indices", [])):
            raise EnergyError(
                f"Zeus monitors GPUs {getattr(monitor, 'gpu_indices', [])}, not GPU {gpu_index}: "
                "NVML could not start, so no energy would be measured"
            )
        self.monitor = monitor

    def begin(self, name: str) -> None:
        self.monitor.begin_window(name, sync_execution=True)

    def end(self, name: str) -> Window:
        measurement = self.monitor.end_window(name, sync_execution=True)
        energy = float(measurement.gpu_energy.get(self.gpu_index, math.nan))
        window = Window(name, float(measurement.time), energy)
        check_window(window, self.update_period_s)
        return window


def check_window(window: Window, update_period_s: float) -> None:
    """Refuse a reading that cannot be a GPU's energy.

    A busy or idle GPU draws tens of watts at least, so a window spanning
    several counter updates must show energy; 0 J (or NaN) means nothing was
    measured. Windows shorter than two counter updates are refused outright:
    the protocol lengthens short work until it fills a window.
    """
    if window.time_s < 2 * update_period_s:
        raise EnergyError(
            f"window {window.name!r} lasted {window.time_s * 1e3:.0f} ms, shorter than two updates "
            f"of the NVML energy counter ({update_period_s * 1e3:.0f} ms each); lengthen it"
        )
    if not window.energy_j > 0:
        raise EnergyError(
            f"window {window.name!r} read {window.energy_j} J over {window.time_s:.2f} s: "
            "the GPU was not measured (0 J is never a result)"
        )


def calls_to_fill(single_call_s: float, min_window_s: float, max_calls: int = 10_000) -> int:
    """Back-to-back calls needed so that one window lasts at least ``min_window_s``."""
    if single_call_s <= 0:
        return max_calls
    return int(min(max_calls, max(1, math.ceil(min_window_s / single_call_s))))
