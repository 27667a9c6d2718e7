"""Scheduler resources of measurement jobs grow with what the job measures."""

from __future__ import annotations

import dataclasses

from diffusion_energy import grid
from diffusion_energy.measurement import jobsize
from diffusion_energy.models import zoo


def size(model: str, precision: str, resolution: int = 1024, steps: int = 50):
    spec = zoo.load_spec(model)
    points = [grid.GridPoint(model, precision, resolution, steps, spec.cfg, 1)]
    return jobsize.job_size(spec, points, repeats=3, warmup=1)


def test_bigger_models_resolutions_and_fp32_need_more_time() -> None:
    assert size("qwen-image", "bf16").runtime_min > size("flux-dev", "bf16").runtime_min
    assert size("flux-dev", "bf16").runtime_min > size("sd15", "fp16").runtime_min
    assert size("sdxl", "fp16", 1024).runtime_min > size("sdxl", "fp16", 256).runtime_min
    assert size("sdxl", "fp32").runtime_min > size("sdxl", "fp16").runtime_min


def test_local_weights_need_host_memory() -> None:
    spec = zoo.load_spec("flux-dev")
    points = [grid.GridPoint("flux-dev", "bf16", 1024, 50, False, 1)]
    random_init = jobsize.job_size(spec, points, 3, 1)
    local = jobsize.job_size(dataclasses.replace(spec, weights="/data/flux"), points, 3, 1)
    assert random_init.mem_mb == 16_000
    assert local.mem_mb > random_init.mem_mb + 2 * 16_900  # 16.9B params in bf16, loaded on the host


def test_a_model_job_of_two_precisions_asks_for_both() -> None:
    """One job measures a model in all its precisions (its points in fp16 and fp32)."""
    spec = zoo.load_spec("sd15")
    fp16 = [grid.GridPoint("sd15", "fp16", 512, s, True, 1) for s in (10, 25)]
    fp32 = [grid.GridPoint("sd15", "fp32", 512, s, True, 1) for s in (10, 25)]
    def runtime(points: list) -> int:
        return jobsize.job_size(spec, points, 3, 1).runtime_min

    assert runtime(fp16 + fp32) > runtime(fp32) > runtime(fp16)
