"""The measurement protocol: windows, repetition, idle, stage sums, OOM, CPU path."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from tiny_support import FAST, assert_runs_on_cpu, tiny_models

from diffusion_energy import grid
from diffusion_energy.measurement import measure
from diffusion_energy.measurement.energy import Window
from diffusion_energy.models import zoo
from diffusion_energy.sources import dataset


class FakeGpu:
    """A clock and an energy counter that the fake stages advance deterministically."""

    def __init__(self, idle_w: float = 100.0) -> None:
        self.t = 0.0
        self.e = 0.0
        self.idle_w = idle_w

    def run(self, seconds: float, watts: float) -> None:
        self.t += seconds
        self.e += seconds * watts

    def sleep(self, seconds: float) -> None:
        self.run(seconds, self.idle_w)


class FakeMeter:
    measures_energy = True
    absent_reason = ""

    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu
        self.open: dict[str, tuple[float, float]] = {}
        self.closed: list[Window] = []

    def begin(self, name: str) -> None:
        assert name not in self.open
        self.open[name] = (self.gpu.t, self.gpu.e)

    def end(self, name: str) -> Window:
        t0, e0 = self.open.pop(name)
        w = Window(name, self.gpu.t - t0, self.gpu.e - e0)
        self.closed.append(w)
        return w


class FakeWorkload:
    """Stages with fixed durations and powers; the image is text + denoise + vae."""

    def __init__(self, gpu: FakeGpu, text=(0.02, 200.0), denoise=(1.5, 600.0), vae=(0.1, 400.0)):
        self.gpu, self.text, self.den, self.vae = gpu, text, denoise, vae
        self.denoiser_calls = 0

    def image_fn(self, point: Any, inner=None):
        def run() -> None:
            self.gpu.run(*self.text)
            if inner:
                inner("begin")
            self.gpu.run(*self.den)
            self.denoiser_calls += point.steps
            if inner:
                inner("end")
            self.gpu.run(*self.vae)

        return run

    def denoise_fn(self, point: Any):
        def run() -> None:
            self.gpu.run(*self.den)
            self.denoiser_calls += point.steps

        return run


POINT = grid.GridPoint("tiny-sd", "fp32", 32, 4, True, 1)
SPEC = zoo.load_spec("tiny-sd")


def runner(gpu: FakeGpu, **protocol: Any) -> measure.Runner:
    proto = measure.Protocol(**{"idle_s": 2.0, "min_window_s": 1.0, "repeats": 3, **protocol})
    return measure.Runner(FakeMeter(gpu), proto, torch.device("cpu"), clock=lambda: gpu.t, sleep=gpu.sleep)


def test_idle_power_is_energy_over_time_of_the_idle_window() -> None:
    gpu = FakeGpu(idle_w=123.0)
    assert runner(gpu).idle_power_w() == pytest.approx(123.0)


def test_short_stage_is_repeated_to_fill_the_window_and_divided() -> None:
    gpu = FakeGpu()
    call_s = 1 / 32  # exact in binary, so the fake clock's differences are too
    results = runner(gpu, stage_window_s=1.0).stage("text", lambda: gpu.run(call_s, 200.0))
    assert [r.window_calls for r in results] == [32, 32, 32]
    assert all(r.window_s >= 1.0 for r in results)
    assert all(r.energy_j == pytest.approx(call_s * 200.0) for r in results)
    assert all(r.time_s == pytest.approx(call_s) for r in results)


def test_windows_are_sized_from_warm_calls_never_the_cold_first_one() -> None:
    """The H200's first text-encoder call took over 1 s, a warm one 7 ms (the landed 17 ms window)."""
    gpu = FakeGpu()
    calls: list[int] = []

    def encode() -> None:
        gpu.run(1.1 if not calls else 0.0078125, 145.0)  # 1/128 s, exact in binary
        calls.append(1)

    results = runner(gpu, stage_window_s=0.5).stage("text", encode)
    assert [r.window_calls for r in results] == [64, 64, 64]  # 0.5 s of warm calls
    assert all(r.time_s == pytest.approx(0.0078125) for r in results)


def test_a_window_that_comes_out_short_is_lengthened_and_measured_again() -> None:
    gpu = FakeGpu()
    speed = {"s": 0.25}

    def call() -> None:
        gpu.run(speed["s"], 300.0)

    run = runner(gpu)
    single, _, _ = run.warm_up(call, 1)
    speed["s"] = 0.0625  # the calls got 4x faster after warm-up: 4 calls last 0.25 s
    run.start_point()
    results = run.repeats([("denoise", call)], calls=4)["denoise"]
    assert single == 0.25 and [r.window_calls for r in results] == [16, 16, 16]
    assert [w.window_s if hasattr(w, "window_s") else w.time_s for w in run.meter.closed][0] == 0.25
    assert "denoise-0: 4 call(s) lasted 250 ms" in run.notes[0]


def test_a_slow_repeat_is_measured_again_and_named() -> None:
    """Identical work that took longer (the host stalled, the GPU idled) is measured again."""
    gpu = FakeGpu()
    count = {"n": 0}

    def call() -> None:
        count["n"] += 1
        gpu.run(0.5, 300.0)
        if count["n"] == 3:
            gpu.sleep(0.25)  # a stall inside repeat 1 (calls 3 and 4)

    run = runner(gpu)
    run.start_point()
    results = run.repeats([("image", call)], calls=2)["image"]
    assert [r.time_s for r in results] == [0.5, 0.5, 0.5]
    assert [w.name for w in run.meter.closed] == ["image-0", "image-1", "image-2", "image-1"]
    assert run.notes == ["image-1: 625.0 ms per call, +25% off the median of its stage's windows"]


def test_image_and_denoise_windows_interleave_and_stages_add_up() -> None:
    gpu = FakeGpu()
    work = FakeWorkload(gpu)
    run = runner(gpu)
    result = run.image(work, POINT, warmup=1)
    images, denoise = result.images, result.denoise
    assert result.denoiser_calls == POINT.steps and result.warmup_calls == 2  # cold + one warm image
    assert [r.window_calls for r in images] == [1, 1, 1]
    assert [r.window_calls for r in denoise] == [1, 1, 1]
    assert denoise[0].energy_j == pytest.approx(1.5 * 600.0)
    image_j = 0.02 * 200 + 1.5 * 600 + 0.1 * 400
    assert images[0].energy_j == pytest.approx(image_j)
    # aligned windows cannot nest: image and denoise windows take turns
    names = [w.name for w in run.meter.closed]
    assert names == ["image-0", "denoise-0", "image-1", "denoise-1", "image-2", "denoise-2"]


def test_short_image_is_repeated_in_its_windows() -> None:
    gpu = FakeGpu()
    work = FakeWorkload(gpu, denoise=(0.2, 500.0))
    result = runner(gpu).image(work, POINT, warmup=1)
    images, denoise = result.images, result.denoise
    image_s = 0.02 + 0.2 + 0.1
    assert result.denoiser_calls == POINT.steps
    assert images[0].window_calls == math.ceil(1.0 / image_s) == denoise[0].window_calls
    assert images[0].energy_j == pytest.approx(0.02 * 200 + 0.2 * 500 + 0.1 * 400)
    assert denoise[0].energy_j == pytest.approx(0.2 * 500)


def test_warm_up_lasts_its_minimum_time_however_short_the_call() -> None:
    gpu = FakeGpu()
    work = FakeWorkload(gpu, denoise=(0.2, 500.0))  # 0.32 s images
    result = runner(gpu, warmup=1, warmup_s=1.0).image(work, POINT, warmup=1)
    # the cold call, then warm ones until 1 s of them
    assert result.warmup_calls == 5 and result.warmup_s == pytest.approx(5 * 0.32)
    assert runner(FakeGpu(), warmup=2, warmup_s=0.0).warm_up(lambda: None, 2)[1] == 3


def test_a_paced_point_runs_no_warm_up_and_sizes_its_window_from_the_estimate() -> None:
    gpu = FakeGpu()
    work = FakeWorkload(gpu, denoise=(0.2, 500.0))
    run = runner(gpu, warmup_s=5.0)
    result = run.image(work, POINT, warmup=1, single_s=0.34)
    assert result.warmup_calls == 0 and result.warmup_s == 0.0
    assert [r.window_calls for r in result.images] == [3, 3, 3]  # ceil(1.0 s / 0.34 s)
    assert [w.name for w in run.meter.closed] == ["image-0", "denoise-0", "image-1", "denoise-1",
                                                 "image-2", "denoise-2"]
    assert gpu.t == pytest.approx(3 * 3 * (0.32 + 0.2))  # nothing ran outside the windows


def test_paced_image_time_scales_only_the_denoising_with_the_steps() -> None:
    def results(stage: str, seconds: float) -> list[measure.StageResult]:
        return [measure.StageResult(stage, r, 1.0, seconds, seconds, 1) for r in range(3)]

    text, vae, image_10 = results("text", 0.05), results("vae", 0.15), results("image", 1.2)
    assert measure.paced_image_s(image_10, 10, 50, text, vae) == pytest.approx(0.2 + 1.0 * 5)


def _stages(image_j: list[float], parts: tuple[float, float, float]) -> dict:
    def results(stage: str, values: list[float]) -> list[measure.StageResult]:
        return [measure.StageResult(stage, r, v, 1.0, 1.0, 1) for r, v in enumerate(values)]

    text, den, vae = parts
    return {"text": results("text", [text] * 3), "denoise": results("denoise", [den] * 3),
            "vae": results("vae", [vae] * 3), "image": results("image", image_j)}


def test_point_rows_record_stage_sum_spread_dynamic_energy_and_flags() -> None:
    protocol = measure.Protocol()
    stages = _stages([100.0, 104.0, 120.0], (10.0, 80.0, 10.0))
    rows = measure.point_rows(POINT, "h100", SPEC, stages, 50.0, protocol, {}, "measured")
    image = rows[rows["stage"] == "image"].sort_values("repeat")
    assert image["stage_sum_error"].tolist() == pytest.approx([0.0, 100 / 104 - 1, 100 / 120 - 1])
    assert rows["repeat_spread"].iloc[0] == pytest.approx(0.2)
    assert "repeat spread 20.0% > 5%" in rows["flag"].iloc[0]
    assert image["dynamic_energy_j"].tolist() == pytest.approx([50.0, 54.0, 70.0])
    frame = dataset.conform(rows)
    dataset.check_measurements(frame)
    assert list(frame.columns) == list(dataset.MEASUREMENT_COLUMNS)


def test_consistent_point_has_no_flag() -> None:
    stages = _stages([100.0, 101.0, 100.5], (10.0, 80.0, 10.0))
    rows = measure.point_rows(POINT, "h100", SPEC, stages, 50.0, measure.Protocol(), {}, "measured")
    assert (rows["flag"] == "").all()


def test_stage_sum_mismatch_is_flagged() -> None:
    stages = _stages([100.0, 100.0, 100.0], (10.0, 60.0, 10.0))
    rows = measure.point_rows(POINT, "h100", SPEC, stages, 50.0, measure.Protocol(), {}, "measured")
    assert "stage sum off by 20.0%" in rows["flag"].iloc[0]


def _cpu_points(*slugs: str) -> list[grid.GridPoint]:
    return [grid.GridPoint.from_slug("tiny-sd", "fp32", s) for s in slugs]


@pytest.mark.parametrize("model", tiny_models())
def test_full_path_runs_on_cpu_with_energy_absent(model: str) -> None:
    """Every family's tiny model, through the measurement path (tests/tiny_support.py)."""
    assert_runs_on_cpu(zoo.load_spec(model))


def test_only_the_first_point_of_a_shape_is_warmed_up() -> None:
    from diffusion_energy.measurement.energy import TimeOnlyMeter

    points = _cpu_points("32px_2steps_cfg1_b1", "32px_4steps_cfg1_b1", "64px_2steps_cfg1_b1",
                         "32px_3steps_cfg0_b1")
    timings = measure.JobTimings()
    warmed = {p.slug: rows["warmup_images"].iloc[0]
              for p, rows in measure.measure_group(SPEC, points, "cpu", TimeOnlyMeter(), FAST, "cpu",
                                                   timings=timings)}
    # a new shape: its cold call and one warm one (FAST: warmup 1, warmup_s 0)
    assert warmed == {"32px_2steps_cfg1_b1": 2, "32px_4steps_cfg1_b1": 0, "64px_2steps_cfg1_b1": 2,
                      "32px_3steps_cfg0_b1": 2}
    assert 0 < timings.warmup_s < timings.repeats_s


def test_oom_at_build_is_recorded_for_every_point(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(*_: Any, **__: Any) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(measure, "Workload", no_memory)
    from diffusion_energy.measurement.energy import TimeOnlyMeter

    points = _cpu_points("32px_2steps_cfg1_b1", "64px_2steps_cfg1_b1")
    out = list(measure.measure_group(SPEC, points, "cpu", TimeOnlyMeter(), FAST, "cpu"))
    assert [p for p, _ in out] == points
    for _, rows in out:
        assert rows["status"].tolist() == ["oom"] and "out of memory" in rows["error"].iloc[0]
        dataset.check_measurements(dataset.conform(rows))


def test_oom_of_one_point_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    real_image = measure.Runner.image

    def image(self, workload, point, *args):  # noqa: ANN001, ANN002
        if point.resolution == 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return real_image(self, workload, point, *args)

    monkeypatch.setattr(measure.Runner, "image", image)
    from diffusion_energy.measurement.energy import TimeOnlyMeter

    points = _cpu_points("32px_2steps_cfg1_b1", "64px_2steps_cfg1_b1", "32px_3steps_cfg1_b1")
    status = {p.slug: rows["status"].iloc[0] for p, rows in
              measure.measure_group(SPEC, points, "cpu", TimeOnlyMeter(), FAST, "cpu")}
    assert status == {"32px_2steps_cfg1_b1": "ok", "64px_2steps_cfg1_b1": "oom",
                      "32px_3steps_cfg1_b1": "ok"}


def test_a_point_that_cannot_be_measured_is_recorded_and_the_job_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_image = measure.Runner.image

    def image(self, workload, point, *args):  # noqa: ANN001, ANN002
        if point.resolution == 64:
            raise measure.WindowError("window 'image-0' of 1 call(s) lasted 17 ms, under half its target")
        return real_image(self, workload, point, *args)

    monkeypatch.setattr(measure.Runner, "image", image)
    from diffusion_energy.measurement.energy import TimeOnlyMeter

    points = _cpu_points("32px_2steps_cfg1_b1", "64px_2steps_cfg1_b1", "32px_3steps_cfg1_b1")
    found = measure.measure_group(SPEC, points, "cpu", TimeOnlyMeter(), FAST, "cpu")
    out = {p.slug: rows for p, rows in found}
    assert [rows["status"].iloc[0] for rows in out.values()] == ["ok", "error", "ok"]
    assert "lasted 17 ms" in out["64px_2steps_cfg1_b1"]["error"].iloc[0]
    dataset.check_measurements(dataset.conform(out["64px_2steps_cfg1_b1"]))


def test_other_errors_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(measure, "Workload", broken)
    from diffusion_energy.measurement.energy import TimeOnlyMeter

    with pytest.raises(RuntimeError, match="illegal memory access"):
        list(measure.measure_group(SPEC, _cpu_points("32px_2steps_cfg1_b1"), "cpu",
                                   TimeOnlyMeter(), FAST, "cpu"))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diffusion_energy.cli", *args],
                          capture_output=True, text=True, timeout=600)


PROTOCOL = '{"idle_s": 0, "min_window_s": 0, "repeats": 2, "warmup": 1, "warmup_s": 0}'


def test_cli_measures_on_cpu_writes_each_point_and_resumes_from_the_journal(tmp_path: Path) -> None:
    args = ["measure", "--gpu", "cpu", "--model", "tiny-sd", "--precision", "fp32",
            "--points", "32px_2steps_cfg1_b1,32px_3steps_cfg0_b1", "--outdir", str(tmp_path / "m"),
            "--device", "cpu", "--protocol", PROTOCOL, "--summary", str(tmp_path / "job.json")]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "m" / "cpu" / "tiny-sd" / "fp32" / "32px_2steps_cfg1_b1.parquet"
    rows = pd.read_parquet(path)
    assert len(rows) == 4 * 2 and rows["torch_version"].iloc[0] == torch.__version__
    assert rows["weights_source"].iloc[0] == "random-init"
    # Snakemake deletes a job's outputs before rerunning it; the journal keeps them.
    path.unlink()
    second = cli(*args)
    assert second.returncode == 0, second.stderr
    # A CPU run holds no energy: its journal entry is never reused as a measurement
    # (reuse of measured points: tests/test_journal.py).
    assert "measuring the journaled point again: journaled without measured energy" in second.stderr
    assert "reusing" not in second.stderr
    again = pd.read_parquet(path)
    assert len(again) == len(rows) and (again["energy_status"] == rows["energy_status"]).all()
    fresh = cli(*args, "--fresh")
    assert "reusing" not in fresh.stderr


def test_cli_refuses_to_measure_without_a_gpu(tmp_path: Path) -> None:
    from diffusion_energy.measurement import gpu

    if gpu.device_names():
        pytest.skip("this machine has an NVIDIA GPU")
    result = cli("measure", "--gpu", "h100", "--model", "tiny-sd", "--precision", "fp32",
                 "--points", "32px_2steps_cfg1_b1", "--outdir", str(tmp_path),
                 "--gpu-kinds", '{"h100": {"name_pattern": "H100"}}')
    assert result.returncode == 2
    assert "GPU not present" in result.stderr and "h100" in result.stderr
    assert not list(tmp_path.rglob("*.parquet"))


def test_cli_rejects_bad_points_and_unknown_models(tmp_path: Path) -> None:
    bad = cli("measure", "--gpu", "cpu", "--model", "tiny-sd", "--precision", "fp32",
              "--points", "33px_2steps_cfg1_b1", "--outdir", str(tmp_path), "--device", "cpu")
    assert bad.returncode == 2 and "not a positive multiple of 2" in bad.stderr
    unknown = cli("measure", "--gpu", "cpu", "--model", "sd5", "--precision", "fp16",
                  "--points", "512px_2steps_cfg1_b1", "--outdir", str(tmp_path), "--device", "cpu")
    assert unknown.returncode == 2 and "unknown model 'sd5'" in unknown.stderr


def test_startup_is_the_process_age_when_the_bench_is_made_not_the_jobs_total() -> None:
    """e26a971 reported the process's age at the job's end as its start-up (the whole job)."""
    from diffusion_energy.measurement import bench
    from diffusion_energy.measurement.energy import TimeOnlyMeter

    ages = iter([4.2, 95.0])
    made = bench.Bench(TimeOnlyMeter(), "cpu", dict, process_age=lambda: next(ages))  # type: ignore[arg-type]
    made.started_s = made.process_age()
    assert made.total_s() == 95.0 and made.startup_s() == 4.2
