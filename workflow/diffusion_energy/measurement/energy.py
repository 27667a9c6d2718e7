"""The meter's parts: named energy windows, and the GPU's energy counter read through Zeus.

Only this module reads the energy counter (``ZeusEnergyCounter``: Zeus's device layer, NVML on
NVIDIA GPUs and AMD SMI on AMD ones); the windows over it are ``measurement.counter``'s. 0 J is
never a result: a counter that cannot be read is refused when the job starts, and a window that
reads no energy is refused when it ends. On a machine without a GPU the ``TimeOnlyMeter`` times
the same windows and records energy as absent, with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import UserError

log = logging.getLogger(__name__)


class EnergyError(UserError, RuntimeError):
    """A window's energy reading cannot be trusted (0 J, no GPU measured)."""


@dataclass(frozen=True)
class Window:
    """One measured window: wall time and GPU energy (NaN when not measured); on a simulated GPU
    also the energy it really spent (``true_energy_j``), so that tests can measure bias."""

    name: str
    time_s: float
    energy_j: float
    true_energy_j: float = math.nan

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

    def abort(self, name: str) -> None: ...


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

    def abort(self, name: str) -> None:
        self._started.pop(name, None)


def zeus_visible_devices(visible: str | None, nvml_uuids: list[str]) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` as Zeus 0.16 reads it: NVML indices only (it calls ``int()`` on each
    entry), in CUDA's order. UUIDs (``GPU-8f3c...``, or a unique prefix, as CUDA allows) become the
    index of the GPU whose NVML UUID starts with them; None stays None (every GPU)."""
    if visible is None:
        return None
    indices = []
    for entry in (e.strip() for e in visible.split(",")):
        if not entry:
            continue
        if entry.isdigit():
            indices.append(entry)
            continue
        if entry.startswith("MIG-"):
            raise EnergyError(f"CUDA_VISIBLE_DEVICES={visible!r} names a MIG slice ({entry}): its energy "
                              "cannot be read (NVML measures whole GPUs); name the whole GPU")
        found = [i for i, uuid in enumerate(nvml_uuids) if uuid.startswith(entry)]
        if len(found) != 1:
            raise EnergyError(f"CUDA_VISIBLE_DEVICES={visible!r}: entry {entry!r} matches "
                              f"{len(found)} of this machine's GPUs ({', '.join(nvml_uuids) or 'none'})")
        indices.append(str(found[0]))
    return ",".join(indices)


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    before = os.environ.get(name)
    try:
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _nvml_uuids() -> list[str]:
    """UUIDs of this machine's NVIDIA GPUs by NVML index ([] without NVML)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML: not an NVIDIA machine (Zeus then tries AMD SMI)
        return []
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
            out.append(uuid.decode() if isinstance(uuid, bytes) else str(uuid))
        return out
    finally:
        pynvml.nvmlShutdown()


class ZeusEnergyCounter:
    """The GPU's cumulative energy counter (mJ since the driver loaded) through Zeus's device layer.

    ``zeus.device.get_gpus()`` picks NVML on NVIDIA GPUs and AMD SMI on AMD ones, and its
    ``get_total_energy_consumption`` (``getTotalEnergyConsumption`` before 0.16) reads the same
    counter as ``nvmlDeviceGetTotalEnergyConsumption`` (they agreed to the mJ on an H100 and an
    H200). Reading the counter itself, rather than through a ZeusMonitor, lets windows align to its
    updates and saves the ~3 s a monitor takes to start. Zeus reads ``CUDA_VISIBLE_DEVICES`` as
    NVML indices, so UUIDs there are translated first (``zeus_visible_devices``). A GPU whose
    counter cannot be read is refused here; ``provenance`` says what was read, for the rows.
    """

    def __init__(self, gpu_uuid: str | None = None, cuda_index: int = 0,
                 get_gpus: Callable[[], Any] | None = None,
                 nvml_uuids: Callable[[], list[str]] = _nvml_uuids) -> None:
        try:
            import zeus
            from zeus.device import get_gpus as zeus_get_gpus
        except ImportError as exc:
            raise EnergyError(f"cannot read GPU energy: Zeus is not installed ({exc})") from exc
        uuids = nvml_uuids()
        visible = zeus_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids)
        try:
            with _environment("CUDA_VISIBLE_DEVICES", visible):
                gpus = (get_gpus or zeus_get_gpus)()
            if cuda_index >= len(gpus):
                raise EnergyError(f"Zeus sees {len(gpus)} GPU(s); CUDA device {cuda_index} is not among them")
            if not gpus.supports_get_total_energy_consumption(cuda_index):
                raise EnergyError(f"GPU {gpu_uuid or cuda_index} has no energy counter Zeus can read "
                                  "(NVIDIA: Volta or newer)")
            gpus.get_total_energy_consumption(cuda_index)
        except EnergyError:
            raise
        except Exception as exc:  # noqa: BLE001 - Zeus's errors (ZeusBaseGPUError, ...) vary by vendor
            raise EnergyError(f"Zeus cannot read the energy counter of GPU {gpu_uuid or cuda_index}: "
                              f"{type(exc).__name__}: {exc}") from exc
        gpu = gpus.gpus[cuda_index]
        handle_uuid = _handle_uuid(gpu)
        if gpu_uuid and handle_uuid and handle_uuid != gpu_uuid:
            raise EnergyError(f"Zeus's GPU {cuda_index} is {handle_uuid}, this job's is {gpu_uuid}: "
                              "set CUDA_DEVICE_ORDER=PCI_BUS_ID")
        self._gpus, self._index = gpus, cuda_index
        self.provenance = (f"zeus {zeus.__version__}: zeus.device.get_gpus() {type(gpus).__name__}"
                           f"[{cuda_index}].get_total_energy_consumption"
                           + (f" ({handle_uuid})" if handle_uuid else "")
                           + (f"; CUDA_VISIBLE_DEVICES {os.environ['CUDA_VISIBLE_DEVICES']!r} read as "
                              f"{visible!r}" if visible != os.environ.get("CUDA_VISIBLE_DEVICES") else ""))

    def read_mj(self) -> int:
        return int(self._gpus.get_total_energy_consumption(self._index))


def _handle_uuid(gpu: Any) -> str:
    """An NVIDIA GPU's UUID from its Zeus object's NVML handle ("" where there is none: AMD)."""
    handle = getattr(gpu, "handle", None)
    if handle is None or type(gpu).__module__.split(".")[-1] != "nvidia":
        return ""
    try:
        import pynvml

        uuid = pynvml.nvmlDeviceGetUUID(handle)
    except Exception:  # noqa: BLE001 - the check is a courtesy; the counter reads either way
        return ""
    return uuid.decode() if isinstance(uuid, bytes) else str(uuid)


def calls_to_fill(single_call_s: float, min_window_s: float, max_calls: int = 10_000) -> int:
    """Back-to-back calls needed so that one window lasts at least ``min_window_s``."""
    if single_call_s <= 0:
        return max_calls
    return int(min(max_calls, max(1, math.ceil(min_window_s / single_call_s))))
