# GPU energy of each grid point. One job per model measures all of that model's points in all
# its precisions, its usual precision first (see README, "Job granularity"): start-up, the
# energy counter's probe and the idle baseline are paid once per model, and per precision the
# pipeline, the text/VAE windows and each shape's warm-up are shared by its points, so the
# fixed cost per job stays a small share of GPU time. Every point is still its own output
# file, addressable as a target.
import functools

from diffusion_energy.measurement import jobsize
from diffusion_energy.models import zoo

PROTOCOL_JSON = json.dumps(config.get("protocol", {}), sort_keys=True)


@functools.cache
def job_size(model):
    """Scheduler resources of a measurement job, computed only when one is scheduled
    (building the components on the meta device imports diffusers: seconds)."""
    return jobsize.job_size(
        zoo.load_spec(model),
        JOBS[model],
        config["protocol"].get("repeats", 3),
        config["protocol"].get("warmup", 1),
    )


for _model, _points in JOBS.items():

    rule:
        name:
            grid.rule_name(_model)
        output:
            [
                f"results/measurements/{{gpu}}/{_model}/{p.precision}/{p.slug}.parquet"
                for p in _points
            ],
        log:
            f"logs/measure/{{gpu}}/{_model}.log",
        benchmark:
            f"results/benchmarks/measure/{{gpu}}/{_model}.tsv"
        priority:
            MEASURE_PRIORITY[_model]
        params:
            model=_model,
            points=grid.job_point_names(_points),
            summary=f"logs/measure/{{gpu}}/{_model}.job.json",
            protocol=PROTOCOL_JSON,
            gpu_kinds=GPU_KINDS_JSON,
        resources:
            gpu=1,
            gpu_model=lambda wc: GPU_KINDS.get(wc.gpu, {}).get("slurm_gpu_model", wc.gpu),
            cpus_per_gpu=lambda wc, m=_model: job_size(m).cpus_per_gpu,
            mem_mb=lambda wc, m=_model: job_size(m).mem_mb,
            runtime=lambda wc, m=_model: job_size(m).runtime_min,
        conda:
            "../../envs/gpu.yaml"
        shell:
            "python3 -m diffusion_energy.cli -v measure --gpu {wildcards.gpu} --model {params.model}"
            " --points {params.points} --outdir results/measurements --summary {params.summary}"
            " --protocol {params.protocol:q} --gpu-kinds {params.gpu_kinds:q} 2> {log}"
