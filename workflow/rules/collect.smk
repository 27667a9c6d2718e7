# Merge the shipped reference measurements, the imported published ones and local ones (never a
# simulated GPU's); join with FLOPs.


rule merge_measurements:
    input:
        reference=reference_files(),
        local=measured_files(real_only=True),
        published=published_files(),
    output:
        "results/measurements.parquet",
    log:
        "logs/collect/merge_measurements.log",
    benchmark:
        "results/benchmarks/collect/merge_measurements.tsv"
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli -v merge-measurements --reference {input.reference:q}"
        " --local {input.local:q} --published {input.published:q} --out {output} 2> {log}"


rule collect:
    input:
        measurements="results/measurements.parquet",
        flops="results/flops.parquet",
    output:
        "results/energy.parquet",
    log:
        "logs/collect/collect.log",
    benchmark:
        "results/benchmarks/collect/collect.tsv"
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli -v collect --measurements {input.measurements}"
        " --flops {input.flops} --out {output} 2> {log}"
