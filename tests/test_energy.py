"""The meter: the energy counter probed, windows aligned to its updates, and the 0 J refusals."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from diffusion_energy.measurement import counter, energy
from diffusion_energy.measurement import simulated_gpu as sg

QUIET = dataclasses.replace(sg.CALIBRATIONS["h200"], host_sd=0.0, stall_rate_hz=0.0, ramp=0.0, power_sd=0.0)


def quiet_meter(aligned: bool = True, seed: int = 0, log_file: Path | None = None
                ) -> tuple[sg.SimulatedGpu, counter.CounterMeter]:
    gpu = sg.SimulatedGpu(QUIET, seed=seed)
    return gpu, sg.simulated_meter(gpu, aligned=aligned, log_file=log_file)


def test_probe_measures_the_counters_update_period_and_unit() -> None:
    gpu = sg.SimulatedGpu("h200", seed=3)
    info = counter.probe(gpu.counter.read_mj, gpu.clock, gpu.sleep)
    assert info.period_s == pytest.approx(0.100, abs=0.003)
    assert info.jitter_s <= 0.0025 and info.resolution_j == pytest.approx(0.001)
    assert info.updates >= 5


def test_idle_window_gives_idle_power_and_aligned_windows_subtract_the_idle_tail(tmp_path: Path) -> None:
    gpu, meter = quiet_meter(log_file=tmp_path / "w.csv")
    meter.begin("idle")
    gpu.sleep(1.0)
    idle = meter.end("idle")
    assert idle.power_w == pytest.approx(QUIET.idle_w, rel=5e-4)  # edges timed to the 0.5 ms poll
    meter.set_idle_power(idle.power_w)
    meter.begin("work")
    gpu.run(0.53, 300.0, 0.0)
    work = meter.end("work")
    assert work.time_s == pytest.approx(0.53, abs=0.001)
    assert work.energy_j == pytest.approx(0.53 * 300.0, rel=2e-3)
    assert (tmp_path / "w.csv").read_text().splitlines()[0].startswith("start_s,window_name")


def test_aligned_windows_beat_reading_the_counter_at_the_edges() -> None:
    """Identical 0.53 s windows at 300 W: aligned ones agree to 0.2%, edge reads are off by up to a step."""
    errors = {}
    for aligned in (True, False):
        gpu, meter = quiet_meter(aligned, seed=1)
        meter.set_idle_power(QUIET.idle_w)
        worst = 0.0
        for i in range(20):
            meter.begin(f"w-{i}")
            gpu.run(0.53, 300.0, 0.0)
            worst = max(worst, abs(meter.end(f"w-{i}").energy_j / (0.53 * 300.0) - 1))
            gpu.sleep(0.037 * (i % 3))
        errors[aligned] = worst
    print(f"worst window error: aligned {errors[True]:.2%}, edges read {errors[False]:.2%}")
    assert errors[True] < 0.002 < 0.05 < errors[False]


def test_a_minimum_tail_counts_the_works_end_when_the_counter_lags() -> None:
    """If an update showed the energy up to 30 ms before it, a window closed at the first update
    after its work could miss the work's last 30 ms; closing 50 ms after it (min_tail_s) does not."""
    lagging = dataclasses.replace(QUIET, counter_lag_s=0.03)
    errors = {}
    for tail in (0.0, 0.05):
        gpu = sg.SimulatedGpu(lagging, seed=2)
        meter = sg.simulated_meter(gpu, min_tail_s=tail)
        meter.set_idle_power(QUIET.idle_w)
        worst = 0.0
        for i in range(20):
            seconds = 0.5 + 0.0137 * i  # the work ends at every phase of the counter's period
            meter.begin(f"w-{i}")
            gpu.run(seconds, 300.0, 0.0)
            worst = max(worst, abs(meter.end(f"w-{i}").energy_j / (seconds * 300.0) - 1))
        errors[tail] = worst
    assert errors[0.05] < 0.002 < 0.01 < errors[0.0]


def test_a_window_shorter_than_two_counter_updates_is_refused() -> None:
    gpu, meter = quiet_meter()
    meter.set_idle_power(QUIET.idle_w)
    meter.begin("text-0")
    gpu.run(0.017, 145.0, 0.0)
    with pytest.raises(counter.ShortWindow, match="lasted 17 ms, shorter than two updates"):
        meter.end("text-0")


def test_a_counter_that_stops_is_never_read_as_0_joules() -> None:
    gpu = sg.SimulatedGpu(QUIET)
    info = counter.probe(gpu.counter.read_mj, gpu.clock, gpu.sleep)
    meter = counter.CounterMeter(lambda: 1234, info, gpu.clock, gpu.sleep)
    with pytest.raises(energy.EnergyError, match="has not moved"):
        meter.begin("image-0")
    with pytest.raises(energy.EnergyError, match="moved 0 time"):
        counter.probe(lambda: 1234, gpu.clock, gpu.sleep)


def test_aligned_windows_do_not_nest() -> None:
    gpu, meter = quiet_meter()
    meter.begin("image-0")
    with pytest.raises(RuntimeError, match="do not nest"):
        meter.begin("denoise-0")


def test_nvml_counter_without_a_gpu_is_refused() -> None:
    from diffusion_energy.measurement import gpu

    if gpu.device_names():
        pytest.skip("this machine has an NVIDIA GPU")
    with pytest.raises(energy.EnergyError, match="energy"):
        energy.NvmlEnergyCounter()


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
