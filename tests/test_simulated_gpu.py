"""The measurement protocol on the simulated H200 (measurement.simulated_gpu): cold first calls, a
counter that moves every ~100 ms, host drift and stalls, calibrated from the real run of 2026-12-04;
and its variants (knobs of DIFFUSION_ENERGY_SIMULATED_GPU): a lagging counter, one that samples part
of each period, a power tail after work, an out-of-memory error inside a window.

The first tests fail on 21c0713 (its windows were sized from the cold first call: a 7-17 ms text
window); the variant, fault and message tests fail on e26a971 (no knobs, no step probe, no true
energy: lag and tail biased windows by 5-12%, and an OOM inside a window ended the job).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import watched

from diffusion_energy import grid
from diffusion_energy.errors import UsageError
from diffusion_energy.measurement import bench, measure
from diffusion_energy.measurement import simulated_gpu as sg
from diffusion_energy.models import zoo

SD15 = zoo.load_spec("sd15")
GRID = [grid.GridPoint("sd15", "fp16", r, s, True, 1) for r in (256, 512, 768, 1024) for s in (10, 25, 50)]
ROOT = Path(__file__).resolve().parents[1]


def test_a_cold_first_text_call_does_not_size_the_window() -> None:
    """21c0713: warm-up stopped after the 1.1 s cold call, so a window held one 7 ms call."""
    gpu = sg.SimulatedGpu("h200", seed=0)
    meter = sg.simulated_meter(gpu)
    runner = measure.Runner(meter, measure.Protocol(), torch.device("cpu"), clock=gpu.clock, sleep=gpu.sleep)
    assert runner.idle_power_w() == pytest.approx(121.6, rel=0.01)
    work = sg.SimulatedWorkload(gpu, SD15, "fp16")
    results = runner.stage("text", work.text_fn(True, 1), 1)
    assert all(r.window_s >= 2 * meter.info.period_s for r in results)
    assert min(r.window_calls for r in results) >= 40
    assert statistics.median(r.energy_j for r in results) == pytest.approx(0.0067 * 143, rel=0.1)


def _measure(seed: int, protocol: measure.Protocol, aligned: bool = True, points: list | None = None,
             variant: str = "h200"):
    """One measure job on the simulated GPU as the CLI makes it (probes included); its spreads, stage
    sums, fixed share and rows."""
    where = bench.simulated_bench(f"{variant},seed={seed}", dataclasses.replace(protocol, aligned=aligned))
    timings = measure.JobTimings()
    out = list(measure.measure_group(SD15, points or GRID, sg.simulated_kind(variant), where.meter, protocol,
                                     where.device, where.context, timings, **where.run_kwargs))
    spreads, sums = [], []
    for _, rows in out:
        assert rows["status"].iloc[0] == "ok", rows["error"].iloc[0]
        image = rows[rows["stage"] == "image"]
        spreads.append(float(image["repeat_spread"].iloc[0]))
        sums.append(float(image["stage_sum_error"].abs().median()))
    total = where.total_s()
    return spreads, sums, timings.fixed_s(total) / total, out


def test_the_protocol_meets_its_precision_targets_on_the_simulated_h200() -> None:
    """Median spread <= 2%, worst <= 5%, stage sums within 3% on every point of SD 1.5's grid."""
    spreads, sums, fixed = [], [], []
    for seed in (0, 1):
        s, e, f, out = _measure(seed, measure.Protocol())
        spreads += s
        sums += e
        fixed.append(f)
    rows = out[0][1]
    assert rows["energy_status"].iloc[0].startswith("simulated")
    assert rows["counter_period_s"].iloc[0] == pytest.approx(0.1, abs=0.003)
    assert rows["counter_resolution_j"].iloc[0] == pytest.approx(0.001)
    print(f"\nfixed protocol, {len(spreads)} SD 1.5 points: "
          f"spread median {statistics.median(spreads):.2%}, worst {max(spreads):.2%}; "
          f"stage sum worst {max(sums):.2%}; fixed cost {statistics.mean(fixed):.0%}")
    assert statistics.median(spreads) <= 0.02
    assert max(spreads) <= 0.05
    assert max(sums) <= 0.03


def test_the_old_two_second_protocol_is_as_imprecise_on_the_simulated_h200_as_on_the_real_one() -> None:
    """The calibration check: windows read at their edges, 2 s long, nothing re-measured gave a
    median spread of 5.4% on the real H200; the simulated one must show the same problem."""
    old = measure.Protocol(idle_s=3.0, warmup_s=1.0, min_window_s=2.0, stage_window_s=2.0,
                           min_window_updates=2, outlier_tolerance=10.0, max_remeasure=0,
                           stage_sum_tolerance=0.05, spread_flag=0.1)
    spreads, sums, _, _ = _measure(0, old, aligned=False)
    print(f"\n2 s windows read at their edges: spread median {statistics.median(spreads):.2%}, "
          f"worst {max(spreads):.2%}; stage sum worst {max(sums):.2%}")
    assert statistics.median(spreads) > 0.03 and max(spreads) > 0.08


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, sg.ENV: "h200", **env}
    if not environment[sg.ENV]:
        del environment[sg.ENV]
    return watched.run([sys.executable, "-m", "diffusion_energy.cli", *args], env=environment, cwd=ROOT)


def test_measure_job_runs_on_the_simulated_gpu_and_journals_every_point(tmp_path: Path) -> None:
    points = "256px_10steps_cfg1_b1,256px_25steps_cfg1_b1"
    result = cli("measure", "--gpu", "h200-simulated", "--model", "sd15", "--precision", "fp16", "--points",
                 points, "--outdir", str(tmp_path / "m"), "--summary", str(tmp_path / "job.json"))
    assert result.returncode == 0, result.stderr
    for slug in points.split(","):
        journaled = tmp_path / "m" / ".journal" / "h200-simulated" / "sd15" / "fp16" / f"{slug}.parquet"
        rows = pd.read_parquet(journaled)
        assert len(rows) == 12 and (rows["status"] == "ok").all()
        assert rows["energy_status"].iloc[0].startswith("simulated")  # never a measurement
        assert rows["gpu_name"].iloc[0] == "NVIDIA H200 (simulated)"
    windows = pd.read_csv(tmp_path / "m" / "h200-simulated" / "sd15" / "_windows.csv")  # one per job
    assert windows["window_name"].iloc[0] == "idle" and (windows["elapsed_time"] > 0.2).all()
    summary = pd.read_json(tmp_path / "job.json", typ="series")
    assert summary["measured"] == 2 and 0 < summary["fixed_share"] < 1


def test_sigint_ends_the_job_with_one_line_and_keeps_every_measured_point(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from diffusion_energy import cli as cli_main

    real = measure.measure_group

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003
        for n, found in enumerate(real(*args, **kwargs)):
            if n == 1:
                raise KeyboardInterrupt  # SIGINT arrives while the second point is measured
            yield found

    monkeypatch.setenv(sg.ENV, "h200")
    monkeypatch.setattr(measure, "measure_group", interrupted)
    code = cli_main.main(["measure", "--gpu", "h200-simulated", "--model", "sd15", "--precision", "fp16",
                          "--points", "256px_10steps_cfg1_b1,512px_10steps_cfg1_b1,768px_10steps_cfg1_b1",
                          "--outdir", str(tmp_path / "m"), "--summary", str(tmp_path / "job.json")])
    err = capsys.readouterr().err
    assert code == 130
    assert "Traceback" not in err
    assert ("[h200-simulated] diffusion-energy measure: stopped after 1 of 3 point(s) to measure; "
            "they are in the journal") in err
    journal = tmp_path / "m" / ".journal" / "h200-simulated" / "sd15" / "fp16"
    assert [p.name for p in journal.glob("*.parquet")] == ["256px_10steps_cfg1_b1.parquet"]
    assert "stopped after 1" in (tmp_path / "job.json").read_text()


def test_an_interrupt_before_any_point_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    """The 2026-12-04 SIGINT reached a job inside diffusers (and one while importing): a traceback."""
    from diffusion_energy import cli as cli_main
    from diffusion_energy.cli import measurement as cli_measurement

    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_measurement, "cmd_measure", interrupted)
    code = cli_main.main(["measure", "--gpu", "h200", "--model", "sd15", "--precision", "fp16",
                          "--points", "256px_10steps_cfg1_b1"])
    assert code == 130 and capsys.readouterr().err == "diffusion-energy measure: stopped\n"


def test_sigterm_stops_a_job_as_sigint_does() -> None:
    import signal

    from diffusion_energy.cli import measurement as cli_measurement

    before = signal.getsignal(signal.SIGTERM)
    try:
        cli_measurement._stop_on_sigterm()
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_gpu_check_on_the_simulated_gpu_ends_with_a_verdict(tmp_path: Path) -> None:
    result = cli("gpu-check", "--windows-log", str(tmp_path / "w.csv"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("[h200-simulated] GPU: NVIDIA H200 (simulated)")
    assert "energy counter: updates every" in result.stdout
    assert "lag 0 ms, integrates continuously, power tail 0 ms (step probe" in result.stdout
    assert "host noise: " in result.stdout and "read through: simulated" in result.stdout
    # the verdict says the GPU was simulated (issue 25: it read like a real GPU's)
    verdict = lines[-1].removeprefix("[h200-simulated] ")
    assert verdict.startswith(f"ready on the simulated NVIDIA H200 ({sg.ENV}=h200; not a real GPU): "
                              "spread median"), verdict
    # every line, printed or logged, says it is simulated (issue 25: none may pass as a real GPU's)
    assert all("[h200-simulated] " in line for line in lines + result.stderr.strip().splitlines())


def test_gpu_check_verdicts() -> None:
    from diffusion_energy.cli.measurement import verdict

    protocol = measure.Protocol()
    ok = pd.DataFrame({"repeat_spread": [0.01, 0.012, 0.02], "stage_sum_error": [0.01, 0.005, 0.02]})
    none = pd.DataFrame({"status": []})
    assert verdict(ok, none, 122.0, 700.0, protocol).startswith("ready: spread median 1.2%, worst 2.0%")
    busy = verdict(ok, none, 300.0, 700.0, protocol)
    assert busy.startswith("not ready: GPU busy: idle power 300 W")
    spread = verdict(ok.assign(repeat_spread=[0.01, 0.02, 0.09]), none, 122.0, 700.0, protocol)
    assert spread.startswith("not ready: spread median 2.0%, worst 9.0%")
    within_flag = ok.assign(repeat_spread=[0.03, 0.03, 0.03])  # ready: every spread under spread_flag
    assert verdict(within_flag, none, 122.0, 700.0, protocol).startswith("ready")
    sums = ok.assign(stage_sum_error=[0.01, 0.05, 0.0])
    assert verdict(sums, none, 122.0, 700.0, protocol).startswith("not ready: stage sums off by up to 5.0%")
    failed = pd.DataFrame({"status": ["error"], "error": ["window 'image-0' lasted 17 ms"]})
    assert "1 point(s) not measured (error: window 'image-0' lasted 17 ms)" in verdict(
        ok, failed, 122.0, math.nan, protocol)


def test_one_job_measures_a_model_in_all_its_precisions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24.7: one process per model. The counter probe and the idle baseline are the job's, once;
    each precision gets its own pipeline; a new shape is warmed up with whole images, whose cold
    call also warms the text encoder and the VAE, so their windows run no cold call of their own."""
    gpu = sg.SimulatedGpu("h200", seed=3)
    meter = sg.simulated_meter(gpu, min_tail_s=measure.Protocol().min_tail_s)
    built: list[str] = []
    warm_ups: list[tuple[bool, float | None]] = []
    real_warm_up = measure.Runner.warm_up

    def warm_up(self, fn, min_calls, cold=True, least_s=None):  # noqa: ANN001, ANN202
        warm_ups.append((cold, least_s))
        return real_warm_up(self, fn, min_calls, cold, least_s)

    def workload(spec, precision, _device):  # noqa: ANN001, ANN202
        built.append(precision)
        return sg.SimulatedWorkload(gpu, spec, precision)

    monkeypatch.setattr(measure.Runner, "warm_up", warm_up)
    points = [grid.GridPoint("sd15", "fp16", 256, s, True, 1) for s in (10, 25)]
    points.append(grid.GridPoint("sd15", "fp32", 512, 10, True, 1))
    timings = measure.JobTimings()
    found = list(measure.measure_group(SD15, points, "h200-simulated", meter, measure.Protocol(), "cpu",
                                       gpu.snapshot, timings, workload_factory=workload, clock=gpu.clock,
                                       sleep=gpu.sleep, sync_fn=gpu.sync))
    assert [p for p, _ in found] == points and all((rows["status"] == "ok").all() for _, rows in found)
    # fp32 is the fp16 pipeline cast, not built again
    assert built == ["fp16"] and timings.build_s == pytest.approx(gpu.cal.build_s + gpu.cal.cast_s)
    assert [rows["precision"].iloc[0] for _, rows in found] == ["fp16", "fp16", "fp32"]
    assert len({rows["idle_power_w"].iloc[0] for _, rows in found}) == 1  # one idle window per job
    assert [int(rows["warmup_images"].iloc[0]) for _, rows in found][1] == 0  # 25 steps: shape warm
    # per precision: one cold whole image (its text encoder and VAE run cold in it), the text and VAE
    # windows sized from warm calls alone, then warm whole images for warmup_s right before theirs
    warmup_s = measure.Protocol().warmup_s
    assert warm_ups == [(False, None), (False, None), (False, warmup_s)] * 2


def test_a_job_stops_before_a_point_once_its_budget_is_spent(tmp_path: Path) -> None:
    """A campaign run gives each job the time it has left (virtual on the simulated GPU)."""
    points = "fp16/256px_10steps_cfg1_b1,fp16/256px_25steps_cfg1_b1,fp16/512px_10steps_cfg1_b1"
    result = cli("measure", "--gpu", "h200-simulated", "--model", "sd15", "--points", points,
                 "--outdir", str(tmp_path / "m"), "--summary", str(tmp_path / "job.json"), "--budget-s", "20")
    assert result.returncode == 130, result.stderr
    summary = pd.read_json(tmp_path / "job.json", typ="series")
    assert 0 < summary["measured"] < 3 and summary["stopped"].startswith("stopped at its time budget")
    assert "[h200-simulated] diffusion-energy measure: stopped at its time budget" in result.stderr


# -- the simulated GPU's knobs, and the protocol under each variant (issue 24)

def test_knobs_of_the_simulated_gpu_and_its_kind() -> None:
    value = "h200,counter_lag_s=0.1,sampled_fraction=0.25,power_tail_s=0.1,uuid=GPU-2"
    cal = sg.calibration(value)
    assert (cal.counter_lag_s, cal.sampled_fraction, cal.power_tail_s) == (0.1, 0.25, 0.1)
    assert sg.SimulatedGpu(value).snapshot()["gpu_uuid"] == "GPU-2"
    assert sg.calibration("h200") == sg.CALIBRATIONS["h200"]  # no knob: the calibration as measured
    # simulated measurements live under their own kind, never a real one's
    assert sg.simulated_kind("h200") == "h200-simulated" == sg.simulated_kind(value)
    assert sg.simulated_kind("") is None and sg.is_simulated_kind("h200-simulated")


@pytest.mark.parametrize(("value", "message"), [
    ("h200,lag=0.1", "'lag' is not a knob; give name=value after the calibration, name one of: .*"
                     "counter_lag_s, sampled_fraction, power_tail_s"),
    ("h200,sampled_fraction=2", "knob sampled_fraction=2 is out of range \\[0.05, 1\\]"),
    ("h200,sampled_fraction=nan", "out of range"),
    ("h200,oom_above_px=512.5", "out of range .* \\(a whole number\\)"),
    ("h200,counter_lag_s=soon", "knob counter_lag_s must be a number, not 'soon'"),
    ("h200,uuid=", "knob uuid needs a value"),
    ("h300", "no such simulated GPU; known: \\['h200'\\]"),
])
def test_a_bad_knob_is_one_line_naming_it_and_the_allowed_ones(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        sg.calibration(value)


def test_a_bad_knob_reaches_the_user_as_one_line(tmp_path: Path) -> None:
    result = cli("measure", "--gpu", "h200-simulated", "--model", "sd15", "--precision", "fp16", "--points",
                 "256px_10steps_cfg1_b1", "--outdir", str(tmp_path / "m"), **{sg.ENV: "h200,lag_s=0.1"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "'lag_s' is not a knob; give name=value" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


#: Variants of the counter and GPU (issue 24: lag 0-250 ms, sampled fraction 0.25-1, tail 0-0.3 s).
VARIANTS = {
    "lag 100 ms": "h200,counter_lag_s=0.1",
    "lag 250 ms": "h200,counter_lag_s=0.25",
    "samples 50%": "h200,sampled_fraction=0.5",
    "samples 25%": "h200,sampled_fraction=0.25",
    "tail 100 ms": "h200,power_tail_s=0.1",
    "tail 300 ms": "h200,power_tail_s=0.3",
    "lag, samples 50%, tail": "h200,counter_lag_s=0.25,sampled_fraction=0.5,power_tail_s=0.3",
    "lag, samples 25%, tail": "h200,counter_lag_s=0.1,sampled_fraction=0.25,power_tail_s=0.1",
}
VARIANT_POINTS = [grid.GridPoint("sd15", "fp16", r, s, True, 1)
                  for r, s in ((256, 10), (512, 25), (1024, 10))]


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_under_each_variant_the_job_measures_within_its_targets_or_gpu_check_says_why(variant: str) -> None:
    """Median repeat spread <= 2%, worst <= 5%, and each point's energy within 3% of what the GPU
    really spent; or a counter the protocol cannot correct, named by gpu-check's verdict and in
    every row's flag."""
    from diffusion_energy.cli.measurement import verdict

    spreads, biases, problems = [], [], set()
    for seed in (0, 1):
        where = bench.simulated_bench(f"{variant},seed={seed}", measure.Protocol())
        problems.add(where.meter.physics.problem())
        for _, rows in measure.measure_group(SD15, VARIANT_POINTS, sg.simulated_kind(variant), where.meter,
                                             measure.Protocol(), where.device, where.context,
                                             **where.run_kwargs):
            assert (rows["status"] == "ok").all(), rows["error"].iloc[0]
            image = rows[rows["stage"] == "image"]
            spreads.append(float(image["repeat_spread"].iloc[0]))
            biases.append(image["energy_j"].median() / image["simulated_true_energy_j"].median() - 1)
            assert rows["counter_lag_s"].notna().all() and rows["power_tail_s"].notna().all()
    worst_bias = max(map(abs, biases))
    (problem,) = problems  # the probe judged the counter alike on both seeds
    print(f"\n{variant}: spread median {statistics.median(spreads):.2%}, worst {max(spreads):.2%}; "
          f"bias worst {worst_bias:.2%}; {problem or 'corrected'}")
    if problem:
        line = verdict(pd.DataFrame({"repeat_spread": spreads, "stage_sum_error": [0.0] * len(spreads)}),
                       pd.DataFrame({"status": []}), 122.0, 700.0, measure.Protocol(), problem)
        assert line.startswith("not ready: the energy counter integrates only"), line
        assert rows["flag"].str.contains("counter: the energy counter integrates only").all()
        return
    assert statistics.median(spreads) <= 0.02
    assert max(spreads) <= 0.05
    assert worst_bias <= 0.03


def test_gpu_check_on_a_sampling_counter_says_not_ready_and_why(tmp_path: Path) -> None:
    result = cli("gpu-check", "--windows-log", str(tmp_path / "w.csv"), "--points", "256px_10steps_cfg1_b1",
                 **{sg.ENV: "h200,sampled_fraction=0.25"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "samples 25% of each period" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    last = last.removeprefix("[h200-simulated] ")
    assert last.startswith(f"not ready on the simulated NVIDIA H200 ({sg.ENV}=h200,sampled_fraction=0.25; "
                           "not a real GPU): the energy counter integrates only 25% of each update "
                           "period"), last


def test_rows_carry_the_energy_really_spent_and_what_measured_it() -> None:
    _, _, _, out = _measure(0, measure.Protocol(), points=VARIANT_POINTS[:1], variant="h200,power_tail_s=0.1")
    rows = out[0][1]
    assert (rows["simulated_true_energy_j"] > 0).all()
    assert (abs(rows["energy_j"] / rows["simulated_true_energy_j"] - 1) < 0.03).all()
    assert rows["power_tail_s"].iloc[0] == pytest.approx(0.1, abs=0.01)
    assert rows["energy_counter"].iloc[0].startswith("simulated: the h200 calibration's counter")
    assert rows["gpu"].iloc[0] == "h200-simulated"


# -- host noise: the re-measure tolerance, and its caps

def test_the_remeasure_tolerance_comes_from_the_host_noise_measured_at_job_start() -> None:
    quiet = bench.simulated_bench("h200,host_sd=0,stall_rate_hz=0", measure.Protocol())
    noisy = bench.simulated_bench("h200,host_sd=0.06", measure.Protocol())
    assert quiet.run_kwargs["host_noise"] < 0.01 < 0.02 < noisy.run_kwargs["host_noise"]
    runner = measure.Runner(noisy.meter, measure.Protocol(), torch.device("cpu"),
                            host_noise=noisy.run_kwargs["host_noise"])
    assert runner.tolerance == pytest.approx(3 * noisy.run_kwargs["host_noise"])
    assert measure.Runner(quiet.meter, measure.Protocol(), torch.device("cpu"),
                          host_noise=quiet.run_kwargs["host_noise"]).tolerance == 0.03  # the floor


def _remeasured(out: list) -> list[int]:
    """Windows measured again, per point."""
    return [len([n for n in str(rows["remeasured"].iloc[0]).split("; ") if n]) for _, rows in out]


def test_a_tolerance_from_the_host_noise_ends_the_remeasure_storms() -> None:
    """The real H200's SD 1.5 points each had a repeat more than 3% off: a fixed 3% re-measured up to
    12 windows per point. On a host that noisy (5% here, above the calibration's 3%, at which the
    re-measures are mostly stalls either tolerance catches), the tolerance from the noise measured at
    job start re-measures far fewer windows, and the protocol still meets its precision targets. Two
    seeds: the job-start estimate of the noise varies (4.6-11% for this 5% host)."""
    points, noisy = GRID[::2], "h200,host_sd=0.05"
    fixed, from_noise, spreads = [], [], []
    for seed in (0, 1):
        fixed += _remeasured(_measure(seed, measure.Protocol(noise_factor=0.0, max_remeasure=12,
                                                             max_remeasure_job=1000),
                                      points=points, variant=noisy)[3])
        found, _, _, out = _measure(seed, measure.Protocol(), points=points, variant=noisy)
        spreads += found
        from_noise += _remeasured(out)
    print(f"\nwindows measured again per point: fixed 3% {fixed}, from the host noise {from_noise}")
    assert sum(from_noise) < 0.5 * sum(fixed) and max(from_noise) < max(fixed)
    assert statistics.median(spreads) <= 0.02 and max(spreads) <= 0.05


def _outliers(protocol: measure.Protocol) -> tuple[list[list[str]], list]:
    """Re-measure notes per point of four SD 1.5 points on a host that stalls three times a second."""
    where = bench.simulated_bench("h200,stall_rate_hz=3", protocol)
    out = list(measure.measure_group(SD15, GRID[:4], "h200-simulated", where.meter, protocol, where.device,
                                     where.context, **where.run_kwargs))
    notes = [[n for n in str(rows["remeasured"].iloc[0]).split("; ") if n] for _, rows in out
             if rows["status"].iloc[0] == "ok"]
    return notes, out


def test_remeasures_are_capped_per_point_and_per_job() -> None:
    notes, _ = _outliers(measure.Protocol(max_remeasure=1, max_remeasure_job=100))
    outliers = [len([n for n in point if "off the median" in n]) for point in notes]
    assert max(outliers) == 1 and sum(outliers) >= 2  # every point stopped at its one
    notes, out = _outliers(measure.Protocol(max_remeasure=6, max_remeasure_job=3))
    assert sum(map(len, notes)) <= 3
    failed = [rows for _, rows in out if rows["status"].iloc[0] != "ok"]
    assert failed and "(3 in the job)" in failed[0]["error"].iloc[0]  # a window too short to keep, no budget


# -- faults

def test_an_out_of_memory_error_inside_a_window_is_an_oom_row_and_the_job_goes_on() -> None:
    """e26a971: the window stayed open and the next point died with 'another window is open'."""
    points = [grid.GridPoint("sd15", "fp16", r, 10, True, 1) for r in (512, 768, 1024)]
    where = bench.simulated_bench("h200,oom_above_px=512", measure.Protocol())
    out = dict(measure.measure_group(SD15, points, "h200-simulated", where.meter, measure.Protocol(),
                                     where.device, where.context, **where.run_kwargs))
    assert (out[points[0]]["status"] == "ok").all()
    for p in points[1:]:
        rows = out[p]
        assert rows["status"].tolist() == ["oom"] and "out of memory" in rows["error"].iloc[0]
    assert not where.meter._open  # no window left open


def test_an_oom_point_through_the_cli_is_journaled_and_the_job_exits_0(tmp_path: Path) -> None:
    points = "512px_10steps_cfg1_b1,1024px_10steps_cfg1_b1,256px_10steps_cfg1_b1"
    result = cli("measure", "--gpu", "h200-simulated", "--model", "sd15", "--precision", "fp16", "--points",
                 points, "--outdir", str(tmp_path / "m"), **{sg.ENV: "h200,oom_above_px=768"})
    assert result.returncode == 0, result.stderr
    journal = tmp_path / "m" / ".journal" / "h200-simulated" / "sd15" / "fp16"
    status = {slug.split("_")[0]: pd.read_parquet(journal / f"{slug}.parquet")["status"].iloc[0]
              for slug in points.split(",")}
    assert status == {"512px": "ok", "1024px": "oom", "256px": "ok"}


def test_sigterm_at_the_budget_keeps_every_measured_point(tmp_path: Path) -> None:
    """The device run's budget ends a job with SIGTERM: the job ends with one line, exit 130, and every
    point it measured is journaled whole."""
    points = ",".join(f"{r}px_{s}steps_cfg1_b1" for r in (256, 512, 768) for s in (10, 25, 50))
    journal = tmp_path / "m" / ".journal" / "h200-simulated" / "sd15" / "fp16"
    job = subprocess.Popen([sys.executable, "-m", "diffusion_energy.cli", "measure", "--gpu",
                            "h200-simulated", "--model", "sd15", "--precision", "fp16", "--points", points,
                            "--outdir", str(tmp_path / "m"), "--summary", str(tmp_path / "job.json")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                           env={**os.environ, sg.ENV: "h200"})
    try:
        while job.poll() is None and len(list(journal.glob("*.protocol.json"))) < 2:
            time.sleep(0.05)  # waits on the job's progress (two points journaled), not on a clock
        assert job.poll() is None, "the job ended before it could be stopped"
        job.send_signal(signal.SIGTERM)
        _, err = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130 and "Traceback" not in err, err
    assert "diffusion-energy measure: stopped after" in err
    kept = sorted(journal.glob("*.parquet"))
    assert len(kept) >= 2
    for path in kept:
        rows = pd.read_parquet(path)
        assert len(rows) == 12 and (rows["status"] == "ok").all()
        assert (tmp_path / "m" / "h200-simulated" / "sd15" / "fp16" / path.name).is_file()  # and its output
    summary = pd.read_json(tmp_path / "job.json", typ="series")
    assert summary["measured"] == len(kept) and summary["stopped"].startswith("stopped after")


# -- messages and kinds (issues 25 and 26)

def test_a_simulated_gpu_cannot_pose_as_another_kind(tmp_path: Path) -> None:
    """e26a971 exited 0 with rows saying gpu h100 and gpu_name 'NVIDIA H200 (simulated)'."""
    result = cli("measure", "--gpu", "h100", "--model", "sd15", "--precision", "fp16", "--points",
                 "256px_10steps_cfg1_b1", "--outdir", str(tmp_path / "m"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "h100" in result.stderr and "--gpu h200-simulated" in result.stderr
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").rglob("*.parquet"))


def test_gpu_check_without_a_gpu_says_how_to_run_it_on_the_simulated_h200(tmp_path: Path) -> None:
    from diffusion_energy.measurement import gpu

    if gpu.device_names():
        pytest.skip("this machine has an NVIDIA GPU")
    result = cli("gpu-check", "--windows-log", str(tmp_path / "w.csv"), **{sg.ENV: ""})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "GPU not present" in result.stderr
    assert ("run it on the simulated H200 (calibrated on a real run): "
            f"{sg.ENV}=h200 diffusion-energy gpu-check") in result.stderr


def test_gpu_check_fits_its_time_cap(tmp_path: Path) -> None:
    result = cli("gpu-check", "--windows-log", str(tmp_path / "w.csv"), "--time-cap", "30")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line.removeprefix("[h200-simulated] ") for line in result.stdout.splitlines()]
    assert all(line.startswith("[h200-simulated] ") for line in result.stdout.splitlines())
    wall = next(line for line in lines if line.startswith("job wall time"))
    assert float(wall.split()[3]) <= 30 + 15  # the first point always runs; none is started past the cap
    assert "1 of 3 point(s) measured within the 30 s time cap" in result.stdout.strip().splitlines()[-1]
