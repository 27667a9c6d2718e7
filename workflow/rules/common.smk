# Shared helpers: config validation, the grid, and the GPU kinds to measure.
import json
import re
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
# Only what identifies a GPU (its NVML name pattern, its SLURM model): the jobs that
# measure or import get these, so adding a datasheet figure does not rerun them.
GPU_KINDS_JSON = json.dumps(
    {k: {f: v[f] for f in ("name_pattern", "slurm_gpu_model") if f in v} for k, v in GPU_KINDS.items()},
    sort_keys=True,
)
PUBLIC_SOURCES = config.get("public_sources", {})


wildcard_constraints:
    gpu="|".join(sorted(GPU_KINDS)) or "none",
    model="[A-Za-z0-9.-]+",
    source="|".join(sorted(map(re.escape, PUBLIC_SOURCES))) or "none",


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


def published_files():
    """The imported published sources: one parquet per source."""
    return [f"results/public/{name}.parquet" for name in sorted(PUBLIC_SOURCES)]


def source_files(name):
    """Every file a published source is imported from (a change re-imports it)."""
    from diffusion_energy.sources.provenance import source_inputs

    return source_inputs(PUBLIC_SOURCES[name])
