# One rule per figure: results/figures/{name}.pdf and .png, each its own target, so
# `snakemake results/figures/stage_shares.pdf` builds only what that figure needs. Each rule
# passes the CLI only the inputs its figure draws (diffusion_energy.figures.FIGURES).
from diffusion_energy.figures import FIGURES

# The file behind each kind of figure input.
FIGURE_INPUT_FILES = {
    "energy": "results/energy.parquet",
    "laws": LAWS_JSON,
    "predictions": CROSSVAL_TABLES["lomo_predictions"],
    "metrics": CROSSVAL_TABLES["lomo_metrics"],
    "anchor_energy": ANCHOR_TABLES["anchors_energy"],
    "anchor_laws": ANCHOR_TABLES["anchors_laws"],
    "modality_predictions": MODALITY_TABLES["modality_predictions"],
    "multi_gpu_predictions": PARALLEL_TABLES["multi_gpu_predictions"],
}

for _name in FIGURE_NAMES:
    _needs = FIGURES[_name][1]

    rule:
        name:
            f"figure_{_name}"
        input:
            **{need: FIGURE_INPUT_FILES[need] for need in _needs},
        output:
            pdf=f"results/figures/{_name}.pdf",
            png=report(
                f"results/figures/{_name}.png",
                caption=f"../report/{_name}.rst",
                category="Figures",
            ),
        log:
            f"logs/figures/{_name}.log",
        benchmark:
            f"results/benchmarks/figures/{_name}.tsv"
        params:
            name=_name,
            inputs=" ".join(
                f"--{need.replace('_', '-')} {FIGURE_INPUT_FILES[need]}" for need in _needs
            ),
        conda:
            "../../envs/analysis.yaml"
        shell:
            "python3 -m diffusion_energy.cli -v figure {params.name} {params.inputs}"
            " --out {output.pdf} {output.png} 2> {log}"


rule readme_figures:
    """The README's figure, a copy of what the workflow draws (a test checks they match):
    `snakemake --cores all readme_figures` after the data change."""
    input:
        "results/figures/energy_vs_flops.png",
    output:
        "docs/figures/energy_vs_flops.png",
    log:
        "logs/figures/readme_figures.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "cp {input} {output} 2> {log}"
