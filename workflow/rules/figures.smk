# One rule per figure: results/figures/{name}.pdf and .png, each its own target,
# so `snakemake results/figures/stage_shares.pdf` builds only what that figure
# needs. Each rule passes the CLI only the inputs its figure draws.
# The figure names are diffusion_energy.laws.analysis_io.FIGURE_NAMES (fit.smk).


rule figure_energy_vs_flops:
    input:
        energy="results/energy.parquet",
        laws=LAWS_JSON,
    output:
        pdf="results/figures/energy_vs_flops.pdf",
        png=report(
            "results/figures/energy_vs_flops.png",
            caption="../report/energy_vs_flops.rst",
            category="Figures",
        ),
    log:
        "logs/figures/energy_vs_flops.log",
    benchmark:
        "results/benchmarks/figures/energy_vs_flops.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli figure energy_vs_flops"
        " --energy {input.energy} --laws {input.laws}"
        " --out {output.pdf} {output.png} 2> {log}"


rule figure_stage_shares:
    input:
        energy="results/energy.parquet",
    output:
        pdf="results/figures/stage_shares.pdf",
        png=report(
            "results/figures/stage_shares.png",
            caption="../report/stage_shares.rst",
            category="Figures",
        ),
    log:
        "logs/figures/stage_shares.log",
    benchmark:
        "results/benchmarks/figures/stage_shares.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli figure stage_shares"
        " --energy {input.energy}"
        " --out {output.pdf} {output.png} 2> {log}"


rule figure_lomo_predicted_vs_measured:
    input:
        predictions=CROSSVAL_TABLES["lomo_predictions"],
        metrics=CROSSVAL_TABLES["lomo_metrics"],
    output:
        pdf="results/figures/lomo_predicted_vs_measured.pdf",
        png=report(
            "results/figures/lomo_predicted_vs_measured.png",
            caption="../report/lomo_predicted_vs_measured.rst",
            category="Figures",
        ),
    log:
        "logs/figures/lomo_predicted_vs_measured.log",
    benchmark:
        "results/benchmarks/figures/lomo_predicted_vs_measured.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli figure lomo_predicted_vs_measured"
        " --predictions {input.predictions} --metrics {input.metrics}"
        " --out {output.pdf} {output.png} 2> {log}"


rule figure_energy_vs_resolution:
    input:
        energy="results/energy.parquet",
    output:
        pdf="results/figures/energy_vs_resolution.pdf",
        png=report(
            "results/figures/energy_vs_resolution.png",
            caption="../report/energy_vs_resolution.rst",
            category="Figures",
        ),
    log:
        "logs/figures/energy_vs_resolution.log",
    benchmark:
        "results/benchmarks/figures/energy_vs_resolution.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli figure energy_vs_resolution"
        " --energy {input.energy}"
        " --out {output.pdf} {output.png} 2> {log}"


rule figure_energy_vs_steps:
    input:
        energy="results/energy.parquet",
    output:
        pdf="results/figures/energy_vs_steps.pdf",
        png=report(
            "results/figures/energy_vs_steps.png",
            caption="../report/energy_vs_steps.rst",
            category="Figures",
        ),
    log:
        "logs/figures/energy_vs_steps.log",
    benchmark:
        "results/benchmarks/figures/energy_vs_steps.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli figure energy_vs_steps"
        " --energy {input.energy}"
        " --out {output.pdf} {output.png} 2> {log}"


rule figure_gpu_comparison:
    input:
        energy="results/energy.parquet",
    output:
        pdf="results/figures/gpu_comparison.pdf",
        png=report(
            "results/figures/gpu_comparison.png",
            caption="../report/gpu_comparison.rst",
            category="Figures",
        ),
    log:
        "logs/figures/gpu_comparison.log",
    benchmark:
        "results/benchmarks/figures/gpu_comparison.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli figure gpu_comparison"
        " --energy {input.energy}"
        " --out {output.pdf} {output.png} 2> {log}"


rule figure_precision_ratio:
    input:
        energy="results/energy.parquet",
    output:
        pdf="results/figures/precision_ratio.pdf",
        png=report(
            "results/figures/precision_ratio.png",
            caption="../report/precision_ratio.rst",
            category="Figures",
        ),
    log:
        "logs/figures/precision_ratio.log",
    benchmark:
        "results/benchmarks/figures/precision_ratio.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli figure precision_ratio"
        " --energy {input.energy}"
        " --out {output.pdf} {output.png} 2> {log}"


rule figure_published_anchors:
    input:
        anchor_energy=ANCHOR_TABLES["anchors_energy"],
        anchor_laws=ANCHOR_TABLES["anchors_laws"],
    output:
        pdf="results/figures/published_anchors.pdf",
        png=report(
            "results/figures/published_anchors.png",
            caption="../report/published_anchors.rst",
            category="Figures",
        ),
    log:
        "logs/figures/published_anchors.log",
    benchmark:
        "results/benchmarks/figures/published_anchors.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli figure published_anchors"
        " --anchor-energy {input.anchor_energy} --anchor-laws {input.anchor_laws}"
        " --out {output.pdf} {output.png} 2> {log}"
