# Laws across modalities (image and video): video leave-one-model-out, the image laws predicting
# video, one model fitted on both held out by architecture; the joint model predict answers video
# models with. A thin call of `diffusion-energy modalities` (laws/modalities.py).

MODALITY_TABLES = {
    name: f"results/tables/{name}.csv" for name in ("modality_predictions", "modality_metrics")
}
MODALITY_LAWS = "results/laws/modalities.json"
MODALITY_TARGETS = [*MODALITY_TABLES.values(), MODALITY_LAWS]


rule modalities:
    input:
        energy="results/energy.parquet",
        flops="results/flops.parquet",
        ops="results/flops_ops.parquet",
    output:
        predictions=MODALITY_TABLES["modality_predictions"],
        metrics=report(
            MODALITY_TABLES["modality_metrics"],
            caption="../report/modality_metrics.rst",
            category="Tables",
        ),
        laws=MODALITY_LAWS,
    log:
        "logs/analysis/modalities.log",
    benchmark:
        "results/benchmarks/analysis/modalities.tsv"
    params:
        min_points=ANALYSIS.get("min_points", 3),
        level=ANALYSIS.get("prediction_level", 0.90),
        datasheets=GPU_DATASHEETS_JSON,
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    threads: 2
    shell:
        "python3 -m diffusion_energy.cli modalities --energy {input.energy}"
        " --flops {input.flops} --ops {input.ops} --datasheets {params.datasheets:q}"
        " --min-points {params.min_points} --level {params.level} --workers {threads}"
        " --predictions-out {output.predictions} --metrics-out {output.metrics}"
        " --laws-out {output.laws} 2> {log}"
