# Shared helpers: config validation, the grid, and the GPU kinds to measure.
import json
import re
import sys
import time
from pathlib import Path

PACKAGE_DIR = Path(workflow.basedir) / "workflow"
sys.path.insert(0, str(PACKAGE_DIR))
# Every rule runs the package from this checkout (`python -m diffusion_energy.cli`),
# so a conda env, a SLURM node or a lent GPU machine needs only its dependencies.
# (shell.prefix formats its argument: braces for bash are doubled twice.)
shell.prefix(f'set -euo pipefail; export PYTHONPATH="{PACKAGE_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')

from diffusion_energy import grid  # noqa: E402
from diffusion_energy.measurement import gpu, simulated_gpu  # noqa: E402

RUN_STARTED = time.time()
# Every mistake in the config (and in the architecture files of its grid) stops here, before
# any job runs; folders it names must exist in the working directory.
grid.validate_config(config, workdir=Path.cwd())
POINTS = grid.grid_points(config)
# A protocol that makes the grid far slower than the default is named with the time it implies.
if workflow.is_main_process:
    for _warning in grid.protocol_warnings(config, POINTS):
        print(f"WARNING: {_warning}", file=sys.stderr)
JOBS = grid.measurement_jobs(POINTS)
MEASURE_PRIORITY = grid.measure_priorities(config, JOBS)
FLOPS_REQUESTS = grid.flops_requests(POINTS)
GPU_KINDS = config.get("gpu_kinds", {})
# The kinds measured on this machine, and why (the end-of-run summary says it).
MEASURE_GPUS, MEASURE_REASON = gpu.measure_plan(config.get("measure_gpus", "auto"), GPU_KINDS)
# A simulated GPU's kind (h200-simulated) is measured only when DIFFUSION_ENERGY_SIMULATED_GPU
# selects it; its files live under their own kind and never enter the merge (measured_files).
SIMULATED_KIND = simulated_gpu.simulated_kind()
for _kind in MEASURE_GPUS:
    if simulated_gpu.is_simulated_kind(_kind):
        if _kind != SIMULATED_KIND:
            raise grid.ConfigError(
                f"measure_gpus: {_kind!r} is a simulated GPU's kind: set "
                f"{simulated_gpu.ENV}={_kind.removesuffix(simulated_gpu.KIND_SUFFIX)} to measure it"
            )
    elif _kind not in GPU_KINDS:
        raise grid.ConfigError(
            f"measure_gpus: unknown GPU kind {_kind!r}; allowed values: {sorted(GPU_KINDS)}"
        )
REFERENCE_DIR = config.get("reference_dir", "resources/measurements")
# Only what identifies a GPU (its NVML name pattern, its SLURM model): the measuring jobs
# get these, so adding a datasheet figure does not rerun a measurement.
GPU_KINDS_JSON = json.dumps(
    {k: {f: v[f] for f in ("name_pattern", "slurm_gpu_model") if f in v} for k, v in GPU_KINDS.items()},
    sort_keys=True,
)
# The whole gpu_kinds block, datasheets too: an import refuses energies a GPU cannot have spent
# (sources/plausibility.py), as it does when run by hand; a changed datasheet re-imports.
GPU_KINDS_WITH_DATASHEETS_JSON = json.dumps(GPU_KINDS, sort_keys=True)
PUBLIC_SOURCES = config.get("public_sources", {})


wildcard_constraints:
    gpu="|".join(sorted(GPU_KINDS) + ([SIMULATED_KIND] if SIMULATED_KIND else [])) or "none",
    model="[A-Za-z0-9.-]+",
    source="|".join(sorted(map(re.escape, PUBLIC_SOURCES))) or "none",


def measured_files(real_only=False):
    """Every grid point's measurement file on every GPU kind to be measured (``real_only``: a
    simulated GPU's left out, as the merge needs: simulated rows never enter the results)."""
    return [
        str(grid.measurement_path("results/measurements", kind, p))
        for kind in MEASURE_GPUS
        if not (real_only and simulated_gpu.is_simulated_kind(kind))
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


def summary_params(part):
    """What the run-summary command needs (the rules that print it have no output: they run
    every time, so a changed value reruns nothing)."""
    return {
        "measure_gpus": json.dumps(MEASURE_GPUS),
        "reason": MEASURE_REASON,
        "reference_dir": REFERENCE_DIR,
        "since": f"{RUN_STARTED:.3f}",
        "part": part,
    }
