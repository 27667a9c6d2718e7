# Per-stage FLOPs, kernel launches and bytes, counted on the meta device.


rule flops_model:
    output:
        flops="results/flops/{model}.parquet",
        ops="results/flops_ops/{model}.parquet",
    log:
        "logs/flops/{model}.log",
    benchmark:
        "results/benchmarks/flops/{model}.tsv"
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
        "python3 -m diffusion_energy.cli flops --model {wildcards.model} --resolutions {params.resolutions}"
        " --cfgs {params.cfgs} --batches {params.batches} --out {output.flops}"
        " --ops-out {output.ops} 2> {log}"


rule flops:
    input:
        flops=expand("results/flops/{model}.parquet", model=sorted(FLOPS_REQUESTS)),
        ops=expand("results/flops_ops/{model}.parquet", model=sorted(FLOPS_REQUESTS)),
    output:
        flops="results/flops.parquet",
        ops="results/flops_ops.parquet",
    log:
        "logs/flops/merge.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli merge-flops {input.flops} --out {output.flops}"
        " --ops {input.ops} --ops-out {output.ops} 2> {log}"
