# The fitted laws shipped with the package (workflow/diffusion_energy/data/), so that
# `diffusion-energy predict` answers after `pip install` without the workflow: copies of
# results/laws/*.json and of the counts they were fitted on, plus the architecture files'
# SHA-256 and the schedulers' answers (diffusion_energy/package_data.py). Not part of the
# default target: `snakemake --cores all package_data` after the data change (a test checks
# the shipped copies equal a fresh run's).


rule package_data:
    input:
        laws="results/laws/laws.json",
        video_laws="results/laws/modalities.json",
        parallel_laws="results/laws/parallel.json",
        flops="results/flops.parquet",
        ops="results/flops_ops.parquet",
        architectures=sorted(Path("config/models").glob("*.yaml")),
    output:
        laws="workflow/diffusion_energy/data/laws.json",
        video_laws="workflow/diffusion_energy/data/modalities.json",
        parallel_laws="workflow/diffusion_energy/data/parallel.json",
        flops="workflow/diffusion_energy/data/flops.parquet",
        ops="workflow/diffusion_energy/data/flops_ops.parquet",
        zoo="workflow/diffusion_energy/data/zoo.json",
    log:
        "logs/package_data.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli -v package-data --laws {input.laws} --video-laws {input.video_laws}"
        " --parallel-laws {input.parallel_laws}"
        " --flops {input.flops} --ops {input.ops} --out-dir workflow/diffusion_energy/data 2> {log}"
