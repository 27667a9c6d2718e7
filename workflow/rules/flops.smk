# Per-stage FLOPs, kernel launches and bytes, counted on the meta device.


rule flops_model:
    output:
        "results/flops/{model}.parquet",
    log:
        "logs/flops/{model}.log",
    benchmark:
        "benchmarks/flops/{model}.tsv"
    params:
        resolutions=lambda wc: ",".join(map(str, FLOPS_REQUESTS[wc.model]["resolutions"])),
        cfgs=lambda wc: ",".join(str(int(c)) for c in FLOPS_REQUESTS[wc.model]["cfgs"]),
        batches=lambda wc: ",".join(map(str, FLOPS_REQUESTS[wc.model]["batches"])),
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        "../../envs/analysis.yaml"
    shell:
        "diffusion-energy flops --model {wildcards.model} --resolutions {params.resolutions}"
        " --cfgs {params.cfgs} --batches {params.batches} --out {output} 2> {log}"


rule flops:
    input:
        expand("results/flops/{model}.parquet", model=sorted(FLOPS_REQUESTS)),
    output:
        "results/flops.parquet",
    log:
        "logs/flops/merge.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "diffusion-energy merge-flops {input} --out {output} 2> {log}"
