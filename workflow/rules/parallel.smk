# The multi-GPU law (xDiT sequence parallelism): the energy of N GPUs from the energy of one,
# with replicated work, bytes exchanged over NVLink and a latency per collective as its costs;
# held out by architecture on the ratio alone and end to end (the one-GPU energy from the nested
# held-out predictions). A thin call of `diffusion-energy parallel` (laws/parallelism.py).

PARALLEL_TABLES = {
    name: f"results/tables/{name}.csv" for name in ("multi_gpu_predictions", "multi_gpu_metrics")
}
PARALLEL_LAWS = "results/laws/parallel.json"
PARALLEL_TARGETS = [*PARALLEL_TABLES.values(), PARALLEL_LAWS]


rule parallel:
    input:
        energy="results/energy.parquet",
        flops="results/flops.parquet",
        ops="results/flops_ops.parquet",
        nested=CROSSVAL_TABLES["nested_lomo_predictions"],
        modalities=MODALITY_TABLES["modality_predictions"],
    output:
        predictions=PARALLEL_TABLES["multi_gpu_predictions"],
        metrics=report(
            PARALLEL_TABLES["multi_gpu_metrics"],
            caption="../report/multi_gpu_metrics.rst",
            category="Tables",
        ),
        laws=PARALLEL_LAWS,
    log:
        "logs/analysis/parallel.log",
    benchmark:
        "results/benchmarks/analysis/parallel.tsv"
    params:
        level=ANALYSIS.get("prediction_level", 0.90),
        datasheets=GPU_DATASHEETS_JSON,
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli -v parallel --energy {input.energy}"
        " --flops {input.flops} --ops {input.ops} --datasheets {params.datasheets:q}"
        " --nested-predictions {input.nested} --modality-predictions {input.modalities}"
        " --level {params.level} --predictions-out {output.predictions}"
        " --metrics-out {output.metrics} --laws-out {output.laws} 2> {log}"
