"""The meter: Zeus windows replayed from recorded logs, and the 0 J refusals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from zeus.utils.testing import ReplayZeusMonitor

from diffusion_energy.measurement import energy


def zeus_log(path: Path, windows: list[tuple[str, float, float]]) -> Path:
    """A CSV in ZeusMonitor's log format: one row per ended window."""
    lines = ["start_time,window_name,elapsed_time,gpu0_energy"]
    lines += [f"0.0,{name},{seconds},{joules}" for name, seconds, joules in windows]
    path.write_text("\n".join(lines) + "\n")
    return path


def replay_meter(path: Path) -> energy.ZeusMeter:
    monitor = ReplayZeusMonitor(log_file=path, ignore_sync_execution=True)
    return energy.ZeusMeter(0, monitor=monitor)


def test_replayed_windows_give_energy_time_and_power(tmp_path: Path) -> None:
    meter = replay_meter(zeus_log(tmp_path / "w.csv", [("idle", 3.0, 360.0), ("image-0", 1.5, 600.0)]))
    meter.begin("idle")
    idle = meter.end("idle")
    meter.begin("image-0")
    image = meter.end("image-0")
    assert idle.power_w == pytest.approx(120.0)
    assert (image.time_s, image.energy_j) == (1.5, 600.0)


def test_zero_joules_is_never_a_result(tmp_path: Path) -> None:
    meter = replay_meter(zeus_log(tmp_path / "w.csv", [("image-0", 2.0, 0.0)]))
    meter.begin("image-0")
    with pytest.raises(energy.EnergyError, match="0 J is never a result"):
        meter.end("image-0")


def test_window_shorter_than_two_counter_updates_is_refused(tmp_path: Path) -> None:
    meter = replay_meter(zeus_log(tmp_path / "w.csv", [("text-0", 0.05, 12.0)]))
    meter.begin("text-0")
    with pytest.raises(energy.EnergyError, match="shorter than two updates"):
        meter.end("text-0")


def test_monitor_without_the_gpu_is_refused(tmp_path: Path) -> None:
    """Zeus without NVML monitors an empty GPU set: that must not pass as a measurement."""
    monitor = ReplayZeusMonitor(log_file=zeus_log(tmp_path / "w.csv", []), gpu_indices=[],
                                ignore_sync_execution=True)
    with pytest.raises(energy.EnergyError, match="NVML could not start"):
        energy.ZeusMeter(0, monitor=monitor)


def test_real_zeus_monitor_without_gpu_raises_clearly() -> None:
    """On a machine without an NVIDIA GPU (like CI) the real monitor cannot start."""
    from diffusion_energy.measurement import gpu

    if gpu.device_names():
        pytest.skip("this machine has an NVIDIA GPU")
    with pytest.raises(energy.EnergyError, match="cannot monitor|NVML could not start"):
        energy.ZeusMeter(0)


def test_time_only_meter_records_energy_as_absent() -> None:
    meter = energy.TimeOnlyMeter()
    assert not meter.measures_energy and "no NVIDIA GPU" in meter.absent_reason
    meter.begin("w")
    window = meter.end("w")
    assert window.time_s >= 0 and math.isnan(window.energy_j)
    with pytest.raises(RuntimeError, match="never opened"):
        meter.end("w")


@pytest.mark.parametrize(("single", "minimum", "calls"), [(0.4, 1.0, 3), (2.0, 1.0, 1), (0.01, 1.0, 100)])
def test_calls_to_fill(single: float, minimum: float, calls: int) -> None:
    assert energy.calls_to_fill(single, minimum) == calls
