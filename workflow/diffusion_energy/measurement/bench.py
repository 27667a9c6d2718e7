"""Where a measurement job runs: a real GPU (NVML counter, CUDA) or the simulated GPU.

Both give the same things to ``measure.measure_group``: a meter whose windows are aligned to the
energy counter (probed at start), the clock, sleep and sync the protocol runs on, how stage
work is built, and the GPU's provenance. ``DIFFUSION_ENERGY_SIMULATED_GPU=<calibration>`` (e.g.
``h200``) selects the simulated GPU: an environment variable reaches every job Snakemake starts
without a rule or a parameter changing (a changed parameter would rerun the jobs), and a real
run cannot pass it by accident through the config. Its rows say ``energy_status: simulated``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import simulated_gpu
from .counter import CounterMeter, probe
from .energy import NvmlEnergyCounter


@dataclass
class Bench:
    """A meter and the host functions a measurement job runs with."""

    meter: CounterMeter
    device: str
    context: Callable[[], dict[str, Any]]
    run_kwargs: dict[str, Any] = field(default_factory=dict)
    simulated: simulated_gpu.SimulatedGpu | None = None
    process_age: Callable[[], float] = lambda: math.nan

    def startup_s(self) -> float:
        """Interpreter start and imports (the simulated GPU's calibrated figure when simulated)."""
        return self.simulated.cal.startup_s if self.simulated else self.process_age()

    def total_s(self) -> float:
        """The job's wall time so far (virtual when simulated)."""
        if self.simulated:
            return self.simulated.cal.startup_s + self.simulated.t
        return self.process_age()


def simulated_kind() -> str | None:
    """The calibration named by ``DIFFUSION_ENERGY_SIMULATED_GPU``, or None (a real GPU)."""
    return os.environ.get(simulated_gpu.ENV) or None


def simulated_bench(name: str, aligned: bool, log_file: str | Path | None = None, seed: int = 0,
                    min_tail_s: float = 0.0) -> Bench:
    gpu = simulated_gpu.SimulatedGpu(name, seed=seed)
    meter = simulated_gpu.simulated_meter(gpu, aligned=aligned, log_file=log_file, min_tail_s=min_tail_s)
    return Bench(meter, "cpu", gpu.snapshot,
                 {"workload_factory": lambda spec, precision, _device: simulated_gpu.SimulatedWorkload(
                     gpu, spec, precision), "clock": gpu.clock, "sleep": gpu.sleep, "sync_fn": gpu.sync},
                 simulated=gpu)


def gpu_bench(uuid: str, context: Callable[[], dict[str, Any]], aligned: bool, log_file: str | Path | None,
              process_age: Callable[[], float], min_tail_s: float = 0.0) -> Bench:
    """CUDA device 0 (already claimed: ``cli.measurement.claim_gpu``), its counter probed now."""
    import torch

    counter = NvmlEnergyCounter(uuid)
    info = probe(counter.read_mj, time.perf_counter, time.sleep)
    meter = CounterMeter(counter.read_mj, info, time.perf_counter, time.sleep,
                         lambda: torch.cuda.synchronize(0), aligned, log_file, min_tail_s=min_tail_s)
    return Bench(meter, "cuda", context, process_age=process_age)
