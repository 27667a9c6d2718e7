# diffusion-energy: measure, count and predict the GPU energy of diffusion
# image generation. Rules are thin calls of the `diffusion-energy` CLI; the
# logic lives in workflow/diffusion_energy/.
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# Each config file is parsed by the package first: a YAML mistake is then named with its file,
# line and column (Snakemake's own message names none of them).
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from diffusion_energy.errors import check_config_file, load_yaml  # noqa: E402

for _path in workflow.overwrite_configfiles or ["config/config.yaml"]:
    # A missing file is named as missing, with the folder it was looked for in.
    check_config_file(_path, workflow.basedir, given=bool(workflow.overwrite_configfiles))
    load_yaml(_path, what="config file")

# A config file given on the command line (--configfile) replaces config/config.yaml
# rather than merging into it, so that every SLURM job, which is started with that
# file but never with --replace-workflow-config, plans the same run as the main
# process. --config key=value still sets single keys over config/config.yaml.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/sources.smk"
include: "workflow/rules/flops.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/modalities.smk"
include: "workflow/rules/parallel.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/package.smk"


# The end of every run says what happened (diffusion_energy/run_summary.py): what was
# measured here or reused from the journal, which shipped and published data the results
# rest on (per source and GPU kind), what was left out and why, the run's warnings, and where
# the figures and tables are. The two target rules print it: they have no output, so they
# run every time they are asked for, also when nothing else is to be done; a failed run
# prints it from onerror.


rule all:
    default_target: True
    input:
        "results/flops.parquet",
        "results/energy.parquet",
        ANALYSIS_TARGETS,
        MODALITY_TARGETS,
        PARALLEL_TARGETS,
    params:
        **summary_params("all"),
    log:
        "logs/summary.log",
    localrule: True
    conda:
        "envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli -v run-summary --part {params.part} --since {params.since}"
        " --measure-gpus {params.measure_gpus:q} --reason {params.reason:q}"
        " --reference-dir {params.reference_dir:q} 2> {log}"


rule measurements:
    """Only the GPU measurements of the grid (on the GPU kinds in measure_gpus); says what was
    measured, or that there is nothing to measure on this machine, and why."""
    input:
        measured_files(),
    params:
        **summary_params("measurements"),
    log:
        "logs/summary_measurements.log",
    localrule: True
    conda:
        "envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli -v run-summary --part {params.part} --since {params.since}"
        " --measure-gpus {params.measure_gpus:q} --reason {params.reason:q}"
        " --reference-dir {params.reference_dir:q} 2> {log}"


# A real run (hooks run in the main process only, never in a dry run) records itself, so that a
# failed run can name another run that worked in this folder at the same time (--nolock):
# diffusion_energy/concurrent_runs.py.
onstart:
    from diffusion_energy import concurrent_runs

    concurrent_runs.register(".")


onsuccess:
    from diffusion_energy import concurrent_runs

    concurrent_runs.finish()


onerror:
    from diffusion_energy import concurrent_runs, run_summary

    try:
        for _line in concurrent_runs.report():
            print(_line, file=sys.stderr)
        concurrent_runs.finish()
    except Exception as exc:  # noqa: BLE001 - the run's own error comes first
        print(f"(could not check for other runs in this folder: {exc})", file=sys.stderr)
    try:
        print(
            run_summary.summarize(
                ".",
                measure_kinds=MEASURE_GPUS,
                measure_reason=MEASURE_REASON,
                reference_dir=REFERENCE_DIR,
                since=RUN_STARTED,
                failed=True,
            ),
            file=sys.stderr,
        )
    except Exception as exc:  # a summary never hides the run's own error
        print(f"(no run summary: {exc})", file=sys.stderr)
