# diffusion-energy: measure, count and predict the GPU energy of diffusion
# image generation. Rules are thin calls of the `diffusion-energy` CLI; the
# logic lives in workflow/diffusion_energy/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/sources.smk"
include: "workflow/rules/flops.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        "results/flops.parquet",
        "results/energy.parquet",
        ANALYSIS_TARGETS,


rule measurements:
    """Only the GPU measurements of the grid (on the GPU kinds in measure_gpus)."""
    input:
        measured_files(),
