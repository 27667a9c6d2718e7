"""The workflow on a real single-node SLURM (tests/slurm_cluster.py), with profiles/slurm.

Run only with ``pytest --slurm`` (marker ``slurm``; tests/conftest.py): the cluster is then
installed (Debian packages, about 6 s) and started once for this module. Where SLURM cannot be
installed (not root, no apt-get) every test here is skipped with the reason. Snakemake runs as long
as its jobs keep starting and finishing, and is interrupted (SIGINT) only when none has for
watched.STALL_S (run_snakemake): a loaded machine makes the runs slower, not failed.

The test cluster has no accounting database, so every run adds
``--slurm-status-command squeue --slurm-init-seconds-before-status-checks 1`` to the
profile (MinJobAge, a day on the test cluster, >= 3 x 1 s; finished jobs stay in squeue however
slow the run).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import deterministic_env
from slurm_cluster import SlurmCluster, SlurmUnavailable, install, run_snakemake

from diffusion_energy import grid

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY = "tests/configs/tiny.yaml"
CONFIG = ["--configfile", TINY, "--replace-workflow-config"]
SLURM = ["--workflow-profile", "profiles/slurm", "--slurm-status-command", "squeue",
         "--slurm-init-seconds-before-status-checks", "1"]
#: Rules that must never be submitted (``localrule: True`` or no shell command).
LOCAL_ONLY = ("all", "import_public", "merge_measurements", "collect")


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("snakemake-executor-plugin-slurm is missing: pip install -e '.[test]'")
    try:
        install()
    except SlurmUnavailable as exc:
        pytest.skip(f"SLURM cannot be installed on this machine: {exc}")
    with SlurmCluster.running() as cluster:
        yield cluster


def output_files(results: Path) -> set[str]:
    """Outputs under results/, without run timings (benchmarks) and hidden files."""
    return {
        str(p.relative_to(results)) for p in results.rglob("*")
        if p.is_file() and "benchmarks" not in p.relative_to(results).parts
        and not any(part.startswith(".") for part in p.relative_to(results).parts)
    }


def assert_same_outputs(expected: Path, actual: Path) -> None:
    names = output_files(expected)
    assert names, f"the local run wrote nothing under {expected}"
    assert output_files(actual) == names
    for name in sorted(names):
        a, b = expected / name, actual / name
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b), obj=name)
        else:
            assert a.read_bytes() == b.read_bytes(), f"{name} differs between the local and the SLURM run"


def submitted_jobs(log: str) -> dict[str, str]:
    """Snakemake job id -> SLURM job id, from the plugin's log lines."""
    return dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))


def test_tiny_workflow_through_slurm_equals_local_run(
    slurm: SlurmCluster, tiny_workflow_run: Path, workflow_copy: Path, tmp_path: Path
) -> None:
    """The SLURM run writes what the local run (conftest's tiny_workflow_run: profiles/local,
    the same config and environment) wrote, byte for byte."""
    env = deterministic_env()
    # The partition as a user gives it (profiles/slurm reads it from the environment).
    env["DIFFUSION_ENERGY_SLURM_PARTITION"] = "cpu"
    run = run_snakemake([*SLURM, *CONFIG, "--verbose"], workflow_copy, slurm.env(env), cpu=False)
    assert run.returncode == 0, run.log[-4000:] + "\n" + slurm.logs()
    print(f"SLURM run: {run.seconds:.0f} s, {len(submitted_jobs(run.log))} jobs submitted")
    (tmp_path / "slurm_run.log").write_text(run.log)

    # Every submitted job went through sbatch and completed in SLURM ...
    run_id = re.search(r"SLURM run ID: (\S+)", run.log).group(1)
    submitted = set(submitted_jobs(run.log).values())
    jobs = slurm.jobs(name=run_id)
    assert {j["id"] for j in jobs} == submitted
    assert {j["state"] for j in jobs} == {"COMPLETED"}
    assert {j["partition"] for j in jobs} == {"cpu"}  # not SLURM's default, "main"
    completed = {r["JobId"]: r for r in slurm.completed_jobs()}
    for job_id in submitted:
        assert completed[job_id]["JobState"] == "COMPLETED"
        assert completed[job_id]["Name"] == run_id
    # ... one FLOPs job (every model) was among them, and local rules stayed local.
    comments = sorted(j["comment"] for j in jobs)
    assert [c for c in comments if c.startswith("rule_flops")] == ["rule_flops"]
    for rule in LOCAL_ONLY:
        assert not [c for c in comments if re.fullmatch(rf"rule_{rule}(_wildcards_.*)?", c)], rule
    assert re.search(r"localrule (merge_measurements|collect):", run.log)

    assert_same_outputs(tiny_workflow_run / "results", workflow_copy / "results")


def test_measurement_job_asks_slurm_for_one_gpu_of_its_kind(
    slurm: SlurmCluster, workflow_copy: Path, tmp_path: Path
) -> None:
    """An h100 grid point goes to the partition that has H100s, with ``--gpus=h100:1`` and
    the CPUs, memory and time of its rule; on this CPU machine it then fails with the
    project's own "GPU not present" error, and Snakemake reports the failed SLURM job."""
    partitions = tmp_path / "partitions.yaml"
    partitions.write_text(yaml.safe_dump({"partitions": {
        "main": {"max_gpu": 0},
        "gpu-h100": {"max_gpu": 1, "available_gpu_models": ["h100"]},
    }}))
    config = yaml.safe_load((workflow_copy / TINY).read_text())
    point = next(p for p in grid.grid_points(config) if p.model == "tiny-sd")
    target = str(grid.measurement_path("results/measurements", "h100", point))
    rule = grid.rule_name(point.model)

    run = run_snakemake(
        [*SLURM, *CONFIG, "--slurm-partition-config", str(partitions), "--verbose", target],
        workflow_copy, slurm.env(deterministic_env()), cpu=False,
    )
    assert run.returncode != 0, "a measurement cannot succeed without a GPU"

    planned = next(line for line in run.log.splitlines()
                   if line.strip().startswith("resources:") and "gpu_model=" in line)
    resources = dict(re.findall(r"(\w+)=([^,\s]+)", planned))
    assert resources["gpu"] == "1" and resources["gpu_model"] == "h100"
    call = next(line for line in run.log.splitlines()
                if line.startswith("sbatch call:") and f"--comment rule_{rule}_wildcards_h100" in line)
    request = call.split(" --wrap=")[0]
    print(request)
    words = request.split()
    assert "--gpus=h100:1" in words
    assert f"--cpus-per-gpu={resources['cpus_per_gpu']}" in words
    assert re.search(rf"-p gpu-h100 .*-t {resources['runtime']} --mem {resources['mem_mb']} ", request)

    (job,) = [j for j in slurm.jobs() if j["comment"] == f"rule_{rule}_wildcards_h100"]
    shown = slurm.show_job(job["id"])
    assert shown["TresPerJob"] == "gres:gpu:h100:1"
    assert shown["Partition"] == "gpu-h100"
    assert shown["JobState"] == "FAILED"
    assert {r["JobId"]: r["JobState"] for r in slurm.completed_jobs()}[job["id"]] == "FAILED"
    assert f"SLURM-job '{job['id']}' failed" in run.log
    assert re.search(r"GPU not present|no GPU", run.log, re.IGNORECASE), run.log[-4000:]
