"""What every tiny (test-only) architecture must do on the CPU, whatever its family.

The same two checks serve every family: the measurement path runs end to end
(text stage, the diffusers pipeline, VAE decode) with CFG on and off, and the
FLOPs, kernels and bytes derived for batch 3 from batches 1 and 2 equal a
direct count at batch 3.
"""

from __future__ import annotations

import pandas as pd
import torch

from diffusion_energy import grid
from diffusion_energy.counting import flops
from diffusion_energy.measurement import measure
from diffusion_energy.measurement.energy import TimeOnlyMeter
from diffusion_energy.models import families, zoo

FAST = measure.Protocol(idle_s=0.0, min_window_s=0.0, repeats=2, warmup=1, warmup_s=0.0)


def tiny_models() -> list[str]:
    """Every test-only architecture of the zoo (one or more per family)."""
    return [m for m in zoo.available_models() if zoo.load_spec(m).test_only]


def tiny_resolution(spec: zoo.ModelSpec) -> int:
    """The smallest of 32, 64, 128 px the model's pipeline accepts."""
    for res in (32, 64, 128):
        try:
            families.calls(spec, res, spec.cfg, 1)
        except zoo.ZooError:
            continue
        return res
    raise AssertionError(f"{spec.name}: no small resolution is accepted")


def assert_runs_on_cpu(spec: zoo.ModelSpec, resolution: int | None = None) -> dict:
    """The whole measurement path on the CPU, CFG off and on: every stage, no energy, the denoiser
    called as often as counted."""
    res = resolution or tiny_resolution(spec)
    points = [grid.GridPoint(spec.name, "fp32", res, 2, cfg, 1, spec.default_frames) for cfg in (False, True)]
    out = dict(measure.measure_group(spec, points, "cpu", TimeOnlyMeter(), FAST, "cpu"))
    assert set(out) == set(points)
    for point, rows in out.items():
        assert set(rows["stage"]) == {"text", "denoise", "vae", "image"}
        assert (rows["status"] == "ok").all(), rows["error"].tolist()
        assert rows["energy_status"].str.startswith("absent: no NVIDIA GPU").all()
        assert rows["energy_j"].isna().all() and (rows["time_s"] > 0).all()
        assert rows["denoiser_calls"].iloc[0] == spec.denoiser_calls_per_step(point.cfg) * point.steps
    return out


def assert_batch_three_derived(spec: zoo.ModelSpec, resolution: int | None = None) -> pd.DataFrame:
    """Batch 3, derived from counts at batches 1 and 2, equals a direct (warm) count of every call."""
    res, dtype = resolution or tiny_resolution(spec), torch.float16
    frame, _ = flops.count_model_ops(spec, [res], [False, True], [1, 2, 3])
    for cfg in (False, True):
        for call in families.calls(spec, res, cfg, 3):
            module = zoo.build_component(spec, spec.component(call.component), "meta", dtype)
            run = call.prepare(module, call.call_batch, "meta", dtype)
            flops.trace_ops(run)  # warm, as the counting is (a first call may build state)
            direct, _ = flops.summarize_ops(flops.trace_ops(run))
            row = frame[(frame["component"] == call.component) & (frame["cfg"] == cfg) & (frame["batch"] == 3)
                        & (frame["call_batch"] == call.call_batch) & (frame["tokens"] == call.tokens)].iloc[0]
            assert row["calls"] == call.calls and row["per"] == call.per, (call.component, cfg)
            assert (row["flops"], row["kernels"], row["bytes"]) == (direct.flops, direct.kernels,
                                                                    direct.bytes), (call.component, cfg)
    return frame
