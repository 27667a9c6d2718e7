# Published measurements: each source's upstream files -> results/public/{source}.parquet,
# rows of the measurement table with their provenance (sources/importing.py).


rule import_public:
    input:
        lambda wc: source_files(wc.source),
    output:
        "results/public/{source}.parquet",
    log:
        "logs/sources/{source}.log",
    benchmark:
        "results/benchmarks/sources/{source}.tsv"
    params:
        path=lambda wc: PUBLIC_SOURCES[wc.source],
        upstream_models=json.dumps(config.get("upstream_models", {}), sort_keys=True),
        gpu_kinds=GPU_KINDS_WITH_DATASHEETS_JSON,
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli -v import-public --source {wildcards.source} --path {params.path:q}"
        " --upstream-models {params.upstream_models:q} --gpu-kinds {params.gpu_kinds:q}"
        " --out {output} 2> {log}"
