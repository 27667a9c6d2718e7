# Shared helpers: config validation, the grid, and the GPU kinds to measure.
import sys
from pathlib import Path

PACKAGE_DIR = Path(workflow.basedir) / "workflow"
sys.path.insert(0, str(PACKAGE_DIR))
# Every rule runs the package from this checkout (`python -m diffusion_energy.cli`),
# so a conda env, a SLURM node or a lent GPU machine needs only its dependencies.
# (shell.prefix formats its argument: braces for bash are doubled twice.)
shell.prefix(f'set -euo pipefail; export PYTHONPATH="{PACKAGE_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')

from diffusion_energy import grid  # noqa: E402
from diffusion_energy.measurement import gpu  # noqa: E402

grid.validate_config(config)
POINTS = grid.grid_points(config)
GROUPS = grid.measurement_groups(POINTS)
MEASURE_PRIORITY = grid.measure_priorities(config, GROUPS)
FLOPS_REQUESTS = grid.flops_requests(POINTS)
GPU_KINDS = config.get("gpu_kinds", {})
MEASURE_GPUS = (
    gpu.local_kinds(GPU_KINDS)
    if config.get("measure_gpus", "auto") == "auto"
    else list(config["measure_gpus"])
)
for _kind in MEASURE_GPUS:
    if _kind not in GPU_KINDS:
        raise grid.ConfigError(
            f"measure_gpus: unknown GPU kind {_kind!r}; allowed values: {sorted(GPU_KINDS)}"
        )
REFERENCE_DIR = config.get("reference_dir", "resources/measurements")


wildcard_constraints:
    gpu="|".join(sorted(GPU_KINDS)) or "none",
    model="[A-Za-z0-9.-]+",


def measured_files():
    """Every grid point's measurement file on every GPU kind to be measured."""
    return [
        str(grid.measurement_path("results/measurements", kind, p))
        for kind in MEASURE_GPUS
        for p in POINTS
    ]


def reference_files():
    """The shipped reference dataset: one parquet per GPU kind."""
    return sorted(str(p) for p in Path(REFERENCE_DIR).glob("*.parquet"))
