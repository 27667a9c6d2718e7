# GPU energy of each grid point. One job per (model, precision) measures all of
# that group's points (see README, "Job granularity"): building the pipeline,
# the idle baseline and the text/VAE windows are shared by the group, so the
# fixed cost per job stays a small share of GPU time. Every point is still its
# own output file, addressable as a target.
import functools

from diffusion_energy.measurement import jobsize
from diffusion_energy.models import zoo

PROTOCOL_JSON = json.dumps(config.get("protocol", {}), sort_keys=True)


@functools.cache
def job_size(model, precision):
    """Scheduler resources of a measurement job, computed only when one is scheduled
    (building the components on the meta device imports diffusers: seconds)."""
    return jobsize.job_size(
        zoo.load_spec(model),
        GROUPS[(model, precision)],
        config["protocol"].get("repeats", 3),
        config["protocol"].get("warmup", 1),
    )


for (_model, _precision), _points in GROUPS.items():

    rule:
        name:
            grid.rule_name(_model, _precision)
        output:
            [
                f"results/measurements/{{gpu}}/{_model}/{_precision}/{p.slug}.parquet"
                for p in _points
            ],
        log:
            f"logs/measure/{{gpu}}/{_model}/{_precision}.log",
        benchmark:
            f"results/benchmarks/measure/{{gpu}}/{_model}/{_precision}.tsv"
        priority:
            MEASURE_PRIORITY[(_model, _precision)]
        params:
            model=_model,
            precision=_precision,
            points=",".join(p.slug for p in _points),
            summary=f"logs/measure/{{gpu}}/{_model}/{_precision}.job.json",
            protocol=PROTOCOL_JSON,
            gpu_kinds=GPU_KINDS_JSON,
        resources:
            gpu=1,
            gpu_model=lambda wc: GPU_KINDS[wc.gpu].get("slurm_gpu_model", wc.gpu),
            cpus_per_gpu=lambda wc, m=_model, p=_precision: job_size(m, p).cpus_per_gpu,
            mem_mb=lambda wc, m=_model, p=_precision: job_size(m, p).mem_mb,
            runtime=lambda wc, m=_model, p=_precision: job_size(m, p).runtime_min,
        conda:
            "../../envs/gpu.yaml"
        shell:
            "python3 -m diffusion_energy.cli -v measure --gpu {wildcards.gpu} --model {params.model}"
            " --precision {params.precision} --points {params.points}"
            " --outdir results/measurements --summary {params.summary}"
            " --protocol {params.protocol:q} --gpu-kinds {params.gpu_kinds:q} 2> {log}"
