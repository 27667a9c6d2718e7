"""The meter's parts: named energy windows, and the GPU's energy counter read through NVML.

Only this module talks to NVML's energy counter (``NvmlEnergyCounter``); the windows over it
are ``measurement.counter``'s. 0 J is never a result: a counter NVML cannot read is refused
when the job starts, and a window that reads no energy is refused when it ends. On a machine
without a GPU the ``TimeOnlyMeter`` times the same windows and records energy as absent, with
the reason.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

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


class NvmlEnergyCounter:
    """The GPU's cumulative energy counter through NVML (mJ since the driver loaded).

    Zeus reads the same counter (they agreed to the mJ on an H100 and an H200); reading it
    directly lets windows align to its updates (``measurement.counter``) and saves the ~3 s a
    ZeusMonitor takes to start. A GPU whose counter NVML cannot read is refused here, so no
    window ever reports a GPU energy that was not measured.
    """

    def __init__(self, gpu_uuid: str | None = None, gpu_index: int = 0) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise EnergyError(f"cannot read GPU energy: {exc}") from exc
        try:
            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByUUID(gpu_uuid) if gpu_uuid else \
                pynvml.nvmlDeviceGetHandleByIndex(gpu_index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except pynvml.NVMLError as exc:
            raise EnergyError(f"NVML cannot read the energy counter of GPU {gpu_uuid or gpu_index}: {exc}") \
                from exc
        self._handle = handle
        self._read = pynvml.nvmlDeviceGetTotalEnergyConsumption

    def read_mj(self) -> int:
        return int(self._read(self._handle))


def calls_to_fill(single_call_s: float, min_window_s: float, max_calls: int = 10_000) -> int:
    """Back-to-back calls needed so that one window lasts at least ``min_window_s``."""
    if single_call_s <= 0:
        return max_calls
    return int(min(max_calls, max(1, math.ceil(min_window_s / single_call_s))))
