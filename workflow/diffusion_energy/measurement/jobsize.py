"""What a measurement job asks a scheduler for: memory, run time, CPUs.

Why estimate: on SLURM a job that asks too little is killed, one that asks far
too much waits in the queue. Run time scales with denoiser size x steps x
pixels; the constant comes from a reference point (FLUX.1-dev, 12B, 1024 px,
28 steps: about 5 s per image on an H200 in bf16), with a safety factor.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..grid import GridPoint
from ..models.zoo import PRECISIONS, ModelSpec, build_component, count_parameters

#: Seconds per (step x billion denoiser parameters) for a 1024 px image (H200, 16-bit).
SECONDS_PER_STEP_BPARAM_1024 = 5.1 / (28 * 11.9)
SAFETY = 3.0


@dataclass(frozen=True)
class JobSize:
    mem_mb: int
    runtime_min: int
    cpus_per_gpu: int


def _params_b(spec: ModelSpec, stage: str) -> float:
    """Billions of parameters of a stage's components, from the architecture file."""
    # Built on the meta device: no memory, a fraction of a second.
    shapes_only = dataclasses.replace(spec, weights=None)  # count from the config, load nothing
    modules = [build_component(shapes_only, c, "meta") for c in spec.stage_components(stage)]
    return sum(count_parameters(m) for m in modules) / 1e9


def job_size(spec: ModelSpec, points: list[GridPoint], repeats: int, warmup: int) -> JobSize:
    """Resources of the job that measures ``points`` (one model, all its precisions)."""
    denoiser_b = _params_b(spec, "denoise")
    total_b = denoiser_b + _params_b(spec, "text") + _params_b(spec, "vae")
    bytes_per_param = max(PRECISIONS[p.precision].itemsize for p in points)
    seconds = 0.0
    warm: set[tuple[str, tuple[int, bool, int, int]]] = set()
    for p in points:
        cfg_factor = 2 if p.cfg else 1
        # Per denoiser evaluation (PNDM runs steps + 1); the FLUX reference's evaluations are its steps.
        image_s = (SECONDS_PER_STEP_BPARAM_1024 * spec.denoiser_evaluations(p.steps) * max(denoiser_b, 0.5)
                   * cfg_factor
                   * p.batch * (p.resolution / 1024) ** 2)
        # image and denoise windows of each repeat, each at least ~1 s, plus text/VAE windows; warm-up
        # only for a new shape of a precision; fp32 runs without tensor cores (about 4x slower)
        windows = 2 * repeats if (p.precision, p.shape) in warm else warmup + 2 * repeats
        warm.add((p.precision, p.shape))
        fp32_penalty = 4 if p.precision == "fp32" else 1
        seconds += fp32_penalty * (windows * max(image_s, 1.0) + 2 * repeats)
    runtime = 10 + math.ceil(SAFETY * seconds / 60)
    # Host memory: CUDA context and libraries; random weights are made on the GPU,
    # local weights pass through host memory while they load.
    weights_mb = 1.2 * total_b * 1e9 * bytes_per_param / 1e6 if spec.weights else 0.0
    mem_mb = int(16_000 + weights_mb)
    return JobSize(mem_mb=mem_mb, runtime_min=runtime, cpus_per_gpu=8)
