"""Where a measurement job runs: a real GPU (its counter read through Zeus, CUDA) or the simulated GPU.

Both give the same things to ``measure.measure_group``: a meter whose windows are aligned to the
energy counter and corrected for its physics (both probed at start: ``counter.probe`` and
``counter.step_response``), the host's noise (``hostnoise``), the clock, sleep and sync the
protocol runs on, how stage work is built, and the GPU's provenance.
``DIFFUSION_ENERGY_SIMULATED_GPU=<calibration>[,knob=value...]`` (e.g. ``h200``) selects the
simulated GPU: an environment variable reaches every job Snakemake starts without a rule or a
parameter changing (a changed parameter would rerun the jobs), and a real run cannot pass it by
accident through the config. Its rows say ``energy_status: simulated``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import hostnoise, simulated_gpu
from .counter import UNMEASURED, CounterMeter, probe, step_response
from .energy import ZeusEnergyCounter


@dataclass
class Bench:
    """A meter and the host functions a measurement job runs with."""

    meter: CounterMeter
    device: str
    context: Callable[[], dict[str, Any]]
    run_kwargs: dict[str, Any] = field(default_factory=dict)
    simulated: simulated_gpu.SimulatedGpu | None = None
    process_age: Callable[[], float] = lambda: math.nan
    #: the process's age when the bench was made: interpreter start and imports, before any probe
    started_s: float = math.nan

    def startup_s(self) -> float:
        """Interpreter start and imports (the simulated GPU's calibrated figure when simulated)."""
        return self.simulated.cal.startup_s if self.simulated else self.started_s

    def total_s(self) -> float:
        """The job's wall time so far (virtual when simulated)."""
        if self.simulated:
            return self.simulated.cal.startup_s + self.simulated.t
        return self.process_age()


def simulated_kind() -> str | None:
    """The value of ``DIFFUSION_ENERGY_SIMULATED_GPU`` (calibration and knobs), or None (a real GPU)."""
    return os.environ.get(simulated_gpu.ENV) or None


def simulated_bench(setting: str, protocol: Any, log_file: str | Path | None = None) -> Bench:
    """The simulated GPU ``setting`` names (``h200,knob=value,...``), its counter and host probed."""
    gpu = simulated_gpu.SimulatedGpu(setting)
    meter = simulated_gpu.simulated_meter(gpu, aligned=protocol.aligned, log_file=log_file,
                                          min_tail_s=protocol.min_tail_s, physics=protocol.step_probe)
    noise = hostnoise.measure(lambda: gpu.run(0.1, gpu.cal.idle_w + 40.0, 1.0), gpu.clock, gpu.sync)
    return Bench(meter, "cpu", gpu.snapshot,
                 {"workload_factory": lambda spec, precision, _device: simulated_gpu.SimulatedWorkload(
                     gpu, spec, precision), "clock": gpu.clock, "sleep": gpu.sleep, "sync_fn": gpu.sync,
                  "host_noise": noise},
                 simulated=gpu)


def gpu_bench(uuid: str, context: Callable[[], dict[str, Any]], protocol: Any, log_file: str | Path | None,
              process_age: Callable[[], float]) -> Bench:
    """CUDA device 0 (already claimed: ``cli.measurement.claim_gpu``), its counter probed now."""
    import torch

    started = process_age()
    counter = ZeusEnergyCounter(uuid)
    sync = lambda: torch.cuda.synchronize(0)  # noqa: E731
    info = probe(counter.read_mj, time.perf_counter, time.sleep)
    physics = (step_response(counter.read_mj, time.perf_counter, time.sleep, _cuda_load(), info)
               if protocol.step_probe and protocol.aligned else UNMEASURED)
    meter = CounterMeter(counter.read_mj, info, time.perf_counter, time.sleep, sync, protocol.aligned,
                         log_file, min_tail_s=protocol.min_tail_s, physics=physics)
    meter.provenance = counter.provenance
    noise = hostnoise.measure(_cuda_launch_block(sync), time.perf_counter, sync)
    return Bench(meter, "cuda", context, {"host_noise": noise}, process_age=process_age, started_s=started)


def _cuda_load(size: int = 8192) -> Callable[[float], Callable[[], bool]]:
    """The step probe's known load: back-to-back fp16 matmuls of ``size`` (about 2 ms each on an
    H100, so that a 0.6 s load is a few hundred launches, within CUDA's queue: the host stays free
    to poll the counter meanwhile). Returns ``load(seconds) -> done()``."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.float16)
    b = torch.randn(size, size, device="cuda", dtype=torch.float16)
    c = torch.empty_like(a)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.mm(a, b, out=c)
    begin.record()
    for _ in range(10):
        torch.mm(a, b, out=c)
    end.record()
    end.synchronize()
    one_s = begin.elapsed_time(end) / 1000 / 10

    def load(seconds: float) -> Callable[[], bool]:
        for _ in range(max(1, round(seconds / one_s))):
            torch.mm(a, b, out=c)
        done = torch.cuda.Event()
        done.record()
        return done.query

    return load


def _cuda_launch_block(sync: Callable[[], None], seconds: float = 0.1) -> Callable[[], None]:
    """Launch-bound work for the host-noise probe: tiny kernels back to back, about ``seconds``."""
    import torch

    x = torch.zeros(64, device="cuda")
    calls = 1000
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        x.add_(1.0)
    sync()
    calls = max(100, round(calls * seconds / (time.perf_counter() - start)))

    def block() -> None:
        for _ in range(calls):
            x.add_(1.0)

    return block
