"""benchmarks/grid_time.py: its inputs are the H200 run's own files, and its window accounting
reproduces the measured SD 1.5 job (the time model's fit is printed by the script, not tested here:
it needs the FLOPs of six architectures)."""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import REPO_ROOT

from diffusion_energy import grid

_SPEC = importlib.util.spec_from_file_location("grid_time", REPO_ROOT / "benchmarks" / "grid_time.py")
grid_time = importlib.util.module_from_spec(_SPEC)
sys.modules["grid_time"] = grid_time  # dataclasses look their module up while the script is loaded
_SPEC.loader.exec_module(grid_time)


def test_the_timings_are_read_from_the_shipped_h200_rows() -> None:
    timings = grid_time.ShippedTimings.read()
    assert len(timings.image_s) == 11 and (1024, 50) not in timings.image_s
    assert {res: round(timings.image_s[(res, 10)], 3) for res in (256, 512, 768, 1024)} == {
        256: 0.265, 512: 0.309, 768: 0.378, 1024: 0.541}
    assert timings.text_s == pytest.approx(0.0066, abs=2e-4)
    assert sorted(timings.vae_s) == [256, 512, 768, 1024]
    assert timings.vae_s[1024] == pytest.approx(0.0854, abs=1e-3)


def test_window_accounting_reproduces_the_measured_sd15_job() -> None:
    """From its idle window to its last complete point the job took 206 s over 11 points; counting its
    windows and warm-ups from its measured call times gives the same within 3%."""
    span, points = grid_time.observed_sd15_job()
    assert points == 11 and span == pytest.approx(206, abs=1)
    timings = grid_time.ShippedTimings.read()
    measured = sorted(grid.GridPoint("sd15", "fp16", r, s, True, 1) for r, s in timings.image_s)
    counted = grid_time.in_windows_s(measured, grid_time.measured_times(timings, measured))
    assert counted == pytest.approx(span, rel=0.03)


def test_windows_follow_the_protocol_old_and_new() -> None:
    old = SimpleNamespace(idle_s=3.0, warmup=1, warmup_s=1.0, repeats=3, min_window_s=2.0)
    assert grid_time.Windows.of(old).stage_window_s == 2.0 == grid_time.Windows.of(old).image_window_s
    new = SimpleNamespace(idle_s=1.0, warmup=1, warmup_s=0.5, repeats=3, min_window_s=0.5,
                          min_window_updates=10, stage_window_s=0.3)
    windows = grid_time.Windows.of(new)
    assert windows.image_window_s == pytest.approx(1.0) and windows.stage_window_s == pytest.approx(0.3)


def test_a_job_warms_each_shape_once_and_nests_long_images() -> None:
    windows = grid_time.Windows(idle_s=1.0, warmup=1, warmup_s=0.5, repeats=3, image_window_s=1.0,
                                stage_window_s=0.5)
    points = [grid.GridPoint("sd15", "fp16", 512, s, True, 1) for s in (10, 50)]
    times = pd.DataFrame([{"model": "sd15", "precision": "fp16", "resolution": 512, "steps": s, "cfg": True,
                           "batch": 1, "text": 0.01, "vae": 0.02, "denoise": d, "image": d + 0.03}
                          for s, d in ((10, 0.27), (50, 1.47))])
    once = grid_time.job_seconds(points, times, windows)
    every = grid_time.job_seconds(points, times, windows, reuse_warm_shapes=False)
    assert every["warmup_s"] - once["warmup_s"] == pytest.approx(grid_time.warm_up_s(1.5, windows))
    # 0.3 s images: 4 per window, plus a denoise window of as many calls; a 1.5 s image fills a window
    # alone, its denoise window nested inside it.
    assert once["windows_s"] == pytest.approx(3 * (4 * 0.3 + 4 * 0.27) + 3 * 1.5)
    fixed = once["startup_build_s"] + windows.idle_s + once["text_vae_s"] + once["warmup_s"]
    assert once["fixed_s"] == pytest.approx(fixed)


def _times(points: list) -> pd.DataFrame:
    return pd.DataFrame([{"model": p.model, "precision": p.precision, "resolution": p.resolution,
                          "steps": p.steps, "cfg": p.cfg, "batch": 1, "text": 0.01, "vae": 0.02,
                          "denoise": 0.01 * p.steps, "image": 0.01 * p.steps + 0.03} for p in points])


def test_every_repeat_has_its_own_denoise_window_and_remeasures_are_counted() -> None:
    """Issue 24: the protocol interleaves an image and a denoise window in every repeat, each waiting
    for counter updates at its edges; re-measured windows add at the simulated rate."""
    new = SimpleNamespace(idle_s=1.0, warmup=1, warmup_s=0.5, repeats=3, min_window_s=1.0,
                          min_window_updates=10, stage_window_s=0.3, aligned=True, min_tail_s=0.05)
    windows = grid_time.Windows.of(new)
    assert windows.own_denoise and windows.shared_warmup and windows.edges_s() == pytest.approx(0.15)
    point = grid.GridPoint("sd15", "fp16", 512, 150, True, 1)  # a 1.53 s image fills a window alone
    once = grid_time.job_seconds([point], _times([point]), windows)
    assert once["windows_s"] == pytest.approx(3 * (1.53 + 1.50 + 2 * 0.15))
    again = grid_time.job_seconds([point], _times([point]), grid_time.Windows.of(new, remeasured=0.5))
    assert again["windows_s"] == pytest.approx(1.5 * once["windows_s"])
    assert again["fixed_s"] == pytest.approx(once["fixed_s"])


def test_one_job_per_model_builds_each_precision_and_the_campaign_needs_runs() -> None:
    windows = grid_time.Windows(idle_s=1.0, warmup=1, warmup_s=0.5, repeats=3, image_window_s=1.0,
                                stage_window_s=0.3, aligned=True, own_denoise=True, shared_warmup=True,
                                min_tail_s=0.05)
    sd15 = [grid.GridPoint("sd15", p, 512, s, True, 1) for p in ("fp16", "fp32") for s in (10, 25, 50)]
    sdxl = [grid.GridPoint("sdxl", "fp16", 1024, s, True, 1) for s in (10, 25, 50)]
    times = _times(sd15 + sdxl)
    job = grid_time.job_seconds(sd15, times, windows)
    assert job["startup_build_s"] == pytest.approx(grid_time.STARTUP_S + grid_time.PROBE_S
                                                   + grid_time.BUILD_S + grid_time.CAST_S)
    total = job["total_s"] + grid_time.job_seconds(sdxl, times, windows)["total_s"]
    runs = grid_time.campaign_runs([sd15, sdxl], times, windows, budget_s=0.6 * total)
    assert len(runs) == 2
    assert sorted(p for r in runs for p in r.points) == sorted(sd15 + sdxl)  # each point once
    assert all(r.seconds <= 0.6 * total for r in runs)
    # a job cut by the budget pays its fixed cost again in the next run
    assert sum(r.seconds for r in runs) > total
