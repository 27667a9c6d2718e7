"""profiles/local and profiles/slurm: valid Snakemake 9 options, and what they do.

No SLURM needed here: the SLURM request of a measurement job is checked in a dry run and
with the plugin's own sbatch builder (tests/test_slurm.py submits it to a real SLURM).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import watched
import yaml
from slurm_cluster import run_snakemake

REPO = Path(__file__).resolve().parents[1]
PROFILES = ("local", "slurm")
TINY = ["--configfile", "tests/configs/tiny.yaml", "--replace-workflow-config"]


def profile(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "profile.yaml").read_text())


@pytest.fixture(scope="module")
def cli_options() -> set[str]:
    """Every long option of the installed Snakemake and its executor plugins."""
    out = watched.run([sys.executable, "-m", "snakemake", "--help"], check=True).stdout
    return set(re.findall(r"--[a-z][a-z0-9-]*", out))


@pytest.mark.parametrize("name", PROFILES)
def test_profile_keys_are_snakemake_options(name: str, cli_options: set[str]) -> None:
    if name == "slurm":
        pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install .[slurm]")
    unknown = [key for key in profile(name) if f"--{key}" not in cli_options]
    assert not unknown, f"profiles/{name}/profile.yaml: not Snakemake options: {unknown}"


def test_no_auto_loaded_default_profile() -> None:
    # Snakemake loads profiles/default by itself: a GPU cap there would also cap a cluster run.
    assert not (REPO / "profiles" / "default").exists()
    assert not (REPO / "workflow" / "profiles" / "default").exists()


def test_slurm_profile_leaves_site_choices_to_the_run() -> None:
    slurm = profile("slurm")
    assert slurm["executor"] == "slurm"
    assert "resources" not in slurm, "a global resource limit would cap the cluster run"
    defaults = slurm["default-resources"]
    assert defaults["mem_mb"] > 0 and defaults["runtime"] > 0
    for key in ("slurm_partition", "slurm_account"):  # read from the environment, never hard-coded
        assert "DIFFUSION_ENERGY_" + key.upper() in defaults[key]
    text = (REPO / "profiles" / "slurm" / "profile.yaml").read_text()
    assert "gpu_model" not in slurm.get("set-resources", {}), "the GPU kind comes from the rule"
    assert "slurm-status-command: squeue" not in text, "sacct is right where accounting exists"


def test_local_profile_limits_gpu_jobs_only() -> None:
    local = profile("local")
    assert local["resources"] == {"gpu": 1}
    assert local["cores"] == "all"
    assert "executor" not in local


#: Each CPU job says it started, then waits for the other to say so too: run in parallel they meet
#: whatever the load; run one after the other, the first gives up after 600 s and says "alone".
RENDEZVOUS = ("touch cpu/started.{wildcards.i}; n=0; while [ $(ls cpu/started.* | wc -l) -lt 2 ] && "
              "[ $n -lt 6000 ]; do sleep 0.1; n=$((n+1)); done; "
              "if [ $n -lt 6000 ]; then echo met > {output}; else echo alone > {output}; fi")

TOY = """
rule gpu_all:
    input: expand("gpu/{i}.txt", i=range(3))

rule cpu_all:
    input: expand("cpu/{i}.txt", i=range(2))

rule gpu_job:
    output: "gpu/{i}.txt"
    resources: gpu=1
    shell: "date +%s.%N > {output}; sleep 1.5; date +%s.%N >> {output}"

rule cpu_job:
    output: "cpu/{i}.txt"
    shell: "RENDEZVOUS"
""".replace("RENDEZVOUS", RENDEZVOUS)


def intervals(folder: Path) -> list[tuple[float, float]]:
    spans = [tuple(map(float, p.read_text().split())) for p in folder.glob("*.txt")]
    return sorted(spans)


def test_local_profile_serialises_gpu_jobs_and_runs_cpu_jobs_in_parallel(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(TOY)
    args = ["--workflow-profile", str(REPO / "profiles" / "local"), "--snakefile", "Snakefile"]
    run = run_snakemake([*args, "gpu_all"], tmp_path)
    assert run.returncode == 0, run.log[-3000:]
    gpu = intervals(tmp_path / "gpu")
    assert len(gpu) == 3
    for (_, end), (start, _) in zip(gpu, gpu[1:], strict=False):
        assert start >= end, f"two GPU jobs ran at once: {gpu}"

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: CPU jobs cannot run in parallel here")
    run = run_snakemake([*args, "cpu_all"], tmp_path)
    assert run.returncode == 0, run.log[-3000:]
    met = [p.read_text().strip() for p in sorted((tmp_path / "cpu").glob("*.txt"))]
    assert met == ["met", "met"], f"CPU jobs ran one after the other: {met}"


def dry_run_jobs(log: str) -> list[dict]:
    """Rule name, wildcards and resources of every job of a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \S+:\n)", log)[1:]:
        job: dict = {"rule": re.match(r"(?:local)?rule (\S+):", block).group(1)}
        for key in ("wildcards", "resources"):
            m = re.search(rf"^\s+{key}: (.*)$", block, re.MULTILINE)
            job[key] = dict(re.findall(r"(\w+)=([^,\s]*)", m.group(1))) if m else {}
        jobs.append(job)
    return jobs


class _Resources(dict):
    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def sbatch_request(rule: str, resources: dict[str, str]) -> str:
    """The sbatch options snakemake-executor-plugin-slurm builds for a job with these resources."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    res = _Resources({k: int(v) if v.isdigit() else v for k, v in resources.items()
                      if k in ("mem_mb", "runtime", "gpu", "gpu_model", "cpus_per_gpu", "slurm_partition")})
    fake = SimpleNamespace(resources=res, threads=1, name=rule)
    partition = f"-p {res['slurm_partition']}" if res.get("slurm_partition") else ""
    params = {"run_uuid": "RUN", "slurm_logfile": "LOG", "comment_str": "COMMENT", "account": "",
              "partition": partition, "workdir": ""}
    return get_submit_command(fake, params) + set_gres_string(fake)


@pytest.mark.slow
def test_slurm_dry_run_asks_each_measurement_for_a_gpu_of_its_kind(
    workflow_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install .[slurm]")
    monkeypatch.setenv("DIFFUSION_ENERGY_SLURM_PARTITION", "gpu-test")
    targets = [
        "results/measurements/h100/tiny-sd/fp32/32px_2steps_cfg1_b1.parquet",
        "results/measurements/a100/tiny-flux/fp32/64px_2steps_cfg0_b1.parquet",
        "results/flops.parquet",
    ]
    run = run_snakemake(["-n", "--workflow-profile", "profiles/slurm", *TINY, *targets], workflow_copy)
    assert run.returncode == 0, run.log[-3000:]
    jobs = dry_run_jobs(run.log)
    measure = {j["wildcards"]["gpu"]: j for j in jobs if j["rule"].startswith("measure_")}
    assert set(measure) == {"h100", "a100"}
    for kind, job in measure.items():
        res = job["resources"]
        assert res["gpu"] == "1" and res["gpu_model"] == kind
        request = sbatch_request(job["rule"], res)
        assert f"--gpus={kind}:1" in request.split(), request
        assert f"--cpus-per-gpu={res['cpus_per_gpu']}" in request.split(), request
        assert f"-t {res['runtime']} --mem {res['mem_mb']}" in request, request
        assert "-p gpu-test" in request
        assert int(res["mem_mb"]) > int(profile("slurm")["default-resources"]["mem_mb"])
    flops = [j for j in jobs if j["rule"] == "flops"]
    assert len(flops) == 1, "one CPU job counts every model"
    for job in flops:
        res = job["resources"]
        assert "gpu" not in res and "--gpus" not in sbatch_request(job["rule"], res)
        assert res["slurm_partition"] == "gpu-test" and int(res["runtime"]) > 0
