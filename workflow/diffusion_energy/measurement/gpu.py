"""GPU identity through NVML: which GPU kinds this machine has.

NVML is optional: on a machine without an NVIDIA GPU (a laptop, CI) every
function here answers "no GPU" instead of raising, so the rest of the
workflow runs on the shipped reference data.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from ..errors import UserError

log = logging.getLogger(__name__)


def device_names() -> list[str]:
    """NVML names of the local GPUs, [] when NVML cannot start."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.debug("NVML unavailable: %s", exc)
        return []
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = []
        for i in range(count):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else name)
        return names
    finally:
        pynvml.nvmlShutdown()


class AmbiguousGpuKind(UserError, ValueError):
    """A GPU name matches the name patterns of several kinds, none more specific than the others."""


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether ``name`` holds ``pattern`` as whole words (case-insensitive): "L4" is in "NVIDIA L4"
    but not in "NVIDIA L40S", "H20" not in "NVIDIA H200", "H200" not in "NVIDIA GH200 480GB"."""
    words = re.escape(pattern.strip().lower())
    return bool(words) and re.search(rf"(?<![a-z0-9]){words}(?![a-z0-9])", name.lower()) is not None


def kind_of(name: str, gpu_kinds: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The configured GPU kind of a device name: the one whose name pattern it holds as whole words
    (``pattern_matches``); where several do, the most specific (the pattern that holds every other
    matching one: "H100 PCIe" over "H100"). A tie raises ``AmbiguousGpuKind`` naming the kinds."""
    matches = {kind: str(spec["name_pattern"]) for kind, spec in gpu_kinds.items()
               if pattern_matches(str(spec["name_pattern"]), name)}
    if len(matches) <= 1:
        return next(iter(matches), None)
    specific = [kind for kind, pattern in matches.items()
                if all(other == kind or pattern_matches(other_pattern, pattern)
                       and other_pattern.strip().lower() != pattern.strip().lower()
                       for other, other_pattern in matches.items())]
    if len(specific) == 1:
        return specific[0]
    listed = ", ".join(f"{k} ({p!r})" for k, p in sorted(matches.items()))
    raise AmbiguousGpuKind(f"GPU {name!r} matches the name_pattern of several gpu_kinds, none more specific "
                           f"than the others: {listed}; make the patterns tell them apart")


def pattern_clashes(gpu_kinds: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Kinds whose name patterns are the same (case and spaces aside): no name could tell them apart."""
    seen: dict[str, str] = {}
    clashes = []
    for kind, spec in gpu_kinds.items():
        key = " ".join(str(spec.get("name_pattern", "")).lower().split())
        if key in seen:
            clashes.append(f"{seen[key]} and {kind} have the same name_pattern {spec['name_pattern']!r}")
        seen.setdefault(key, kind)
    return clashes


def local_kinds(gpu_kinds: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Configured kinds present on this machine (sorted, without duplicates)."""
    names = device_names()
    kinds = {kind_of(n, gpu_kinds) for n in names}
    unknown = [n for n in names if kind_of(n, gpu_kinds) is None]
    if unknown:
        log.warning("GPU(s) %s match no configured gpu_kinds; add a name_pattern to measure them",
                    unknown)
    return sorted(k for k in kinds if k)


def measure_plan(setting: Any, gpu_kinds: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], str]:
    """The GPU kinds to measure on this machine (config ``measure_gpus``), and why, in words.

    The reason reaches the end-of-run summary, so that a run that measured nothing
    says so: no NVIDIA GPU, a GPU of no configured kind, or an empty list.
    """
    if setting != "auto":
        kinds = list(setting)
        if not kinds:
            return [], "measure_gpus is [] in the config: nothing is measured"
        return kinds, f"measure_gpus names {', '.join(kinds)} in the config"
    names = device_names()
    kinds = local_kinds(gpu_kinds)
    if not names:
        return [], ("measure_gpus is auto and this machine has no NVIDIA GPU (NVML finds none): "
                    "nothing is measured here")
    if not kinds:
        return [], (f"measure_gpus is auto and this machine's GPU(s) {names} match no name_pattern "
                    f"of gpu_kinds ({', '.join(sorted(gpu_kinds))}): nothing is measured here")
    return kinds, f"measure_gpus is auto: this machine has {', '.join(names)} (kind {', '.join(kinds)})"


class GpuError(UserError, RuntimeError):
    """The job cannot measure on this GPU (absent, wrong kind, busy, locked)."""


def _nvml() -> Any:
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def handle_by_uuid(nvml: Any, uuid: str) -> Any:
    """The NVML handle of the GPU with this UUID ("GPU-..." as NVML prints it)."""
    for i in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        if _text(nvml.nvmlDeviceGetUUID(handle)) == uuid:
            return handle
    raise GpuError(f"NVML knows no GPU with UUID {uuid}")


def cuda_uuid(index: int = 0) -> str:
    """The NVML-style UUID of CUDA device ``index`` (respects CUDA_VISIBLE_DEVICES)."""
    import torch

    return f"GPU-{torch.cuda.get_device_properties(index).uuid}"


def check_kind(expected: str, gpu_kinds: Mapping[str, Mapping[str, Any]], index: int = 0) -> str:
    """Refuse to measure a GPU kind other than the one this job is for; return the name."""
    import torch

    if expected not in gpu_kinds:
        raise GpuError(f"unknown GPU kind {expected!r}; configured kinds: {sorted(gpu_kinds)}")
    if not torch.cuda.is_available():
        names = device_names()
        raise GpuError(
            f"GPU not present: this job measures a {expected} GPU but CUDA sees none"
            + (f" (NVML lists {names})" if names else " and NVML cannot start")
        )
    name = torch.cuda.get_device_name(index)
    kind = kind_of(name, gpu_kinds)
    if kind != expected:
        raise GpuError(
            f"wrong GPU for this job: it measures kind {expected!r} but CUDA device {index} is "
            f"{name!r} (kind {kind or 'unknown'}); run it where a {expected} GPU is, or ask for "
            f"gpu={kind} in the target path"
        )
    return name


def nvml_uuid_of_cuda_device(index: int = 0) -> str:
    """UUID of the GPU that CUDA will call device ``index``, read through NVML only.

    Read before this process touches CUDA, so that the busy check below cannot
    see this process's own context (in a container NVML may report host PIDs).
    Follows CUDA_VISIBLE_DEVICES (indices or UUIDs); ``cuda_uuid`` confirms the
    match once CUDA is up.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        nvml = _nvml()
    except Exception as exc:  # noqa: BLE001 - NVML's errors vary by version
        raise GpuError(f"GPU not present: NVML cannot start ({exc})") from exc
    try:
        entries = [e.strip() for e in visible.split(",") if e.strip()] if visible is not None else None
        if entries is not None and index >= len(entries):
            raise GpuError(f"GPU not present: CUDA_VISIBLE_DEVICES={visible!r} hides CUDA device {index}")
        entry = entries[index] if entries is not None else str(index)
        if entry.isdigit():
            if int(entry) >= nvml.nvmlDeviceGetCount():
                raise GpuError(f"GPU not present: NVML has no GPU {entry}")
            return _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(int(entry))))
        for i in range(nvml.nvmlDeviceGetCount()):
            uuid = _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))
            if uuid.startswith(entry):
                return uuid
        raise GpuError(f"GPU not present: no GPU matches CUDA_VISIBLE_DEVICES entry {entry!r}")
    finally:
        nvml.nvmlShutdown()


def other_processes(uuid: str) -> list[int] | None:
    """PIDs of compute processes on the GPU other than this one; None if NVML cannot tell."""
    nvml = _nvml()
    try:
        handle = handle_by_uuid(nvml, uuid)
        try:
            procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except nvml.NVMLError as exc:
            log.warning("NVML cannot list the processes on %s (%s): busy check skipped", uuid, exc)
            return None
        return sorted(p.pid for p in procs if p.pid != os.getpid())
    finally:
        nvml.nvmlShutdown()


_THROTTLE_NAMES = {
    "GpuIdle": "idle",
    "ApplicationsClocksSetting": "app_clocks",
    "SwPowerCap": "sw_power_cap",
    "HwSlowdown": "hw_slowdown",
    "SyncBoost": "sync_boost",
    "SwThermalSlowdown": "sw_thermal",
    "HwThermalSlowdown": "hw_thermal",
    "HwPowerBrakeSlowdown": "hw_power_brake",
    "DisplayClockSetting": "display_clocks",
}


def decode_throttle(mask: int, nvml: Any) -> list[str]:
    """NVML clock-event bitmask -> short names (empty when nothing limits clocks)."""
    names = []
    for suffix, short in _THROTTLE_NAMES.items():
        bit = getattr(nvml, f"nvmlClocksEventReason{suffix}", None)
        if bit is None:
            bit = getattr(nvml, f"nvmlClocksThrottleReason{suffix}", 0)
        if bit and mask & bit:
            names.append(short)
    return names


def snapshot(uuid: str) -> dict[str, Any]:
    """Provenance of the GPU now: name, driver, power limit, clocks, temperature, throttling."""
    nvml = _nvml()
    try:
        h = handle_by_uuid(nvml, uuid)
        try:
            mask = nvml.nvmlDeviceGetCurrentClocksEventReasons(h)
        except AttributeError:
            mask = nvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)
        return {
            "gpu_name": _text(nvml.nvmlDeviceGetName(h)),
            "gpu_uuid": uuid,
            "driver_version": _text(nvml.nvmlSystemGetDriverVersion()),
            "power_limit_w": nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
            "sm_clock_mhz": float(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)),
            "temperature_c": float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)),
            "throttle": decode_throttle(int(mask), nvml),
        }
    finally:
        nvml.nvmlShutdown()
