# Per-stage FLOPs, kernel launches and bytes, counted on the meta device: one job for
# every model of the grid and of the shipped and imported points (imports paid once,
# models counted in parallel by forked workers; see counting/runner.py).


rule flops:
    input:
        points=reference_files() + published_files(),
    output:
        flops="results/flops.parquet",
        ops="results/flops_ops.parquet",
    log:
        "logs/flops/count.log",
    benchmark:
        "results/benchmarks/flops/count.tsv"
    params:
        requests=json.dumps(FLOPS_REQUESTS, sort_keys=True),
    threads: 8
    resources:
        mem_mb=6000,
        runtime=30,
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli -v count-flops --requests {params.requests:q}"
        " --points {input.points:q} --jobs {threads}"
        " --out {output.flops} --ops-out {output.ops} 2> {log}"
