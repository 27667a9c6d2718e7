"""The workflow through the Snakemake Python API, always in a temporary working copy.

Snakemake's Python API (``snakemake.api.SnakemakeApi``) does not read workflow profiles, so every setting a
test needs is given here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import watched
import yaml
from workflow_support import TINY_CONFIG, run_workflow

from diffusion_energy import grid
from diffusion_energy.counting import flops
from diffusion_energy.models import zoo


def default_config(repo_root: Path) -> dict[str, Any]:
    return yaml.safe_load((repo_root / "config" / "config.yaml").read_text())


@pytest.mark.slow
def test_dry_run_of_default_grid_lists_every_measurement(workflow_copy: Path, repo_root: Path) -> None:
    planned = set(run_workflow(workflow_copy, config={"measure_gpus": ["h100"]}))
    points = grid.grid_points(default_config(repo_root))
    expected = {str(grid.measurement_path("results/measurements", "h100", p)) for p in points}
    assert len(expected) == len(points) == 78
    assert not expected - planned, f"{len(expected - planned)} grid points have no job"
    assert "results/measurements/h100/sd15/fp16/512px_50steps_cfg1_b1.parquet" in planned
    assert "results/measurements/h100/flux-dev/bf16/1024px_25steps_cfg0_b1.parquet" in planned
    assert {"results/flops.parquet", "results/flops_ops.parquet", "results/energy.parquet"} <= planned
    published = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())["public_sources"]
    assert {f"results/public/{name}.parquet" for name in published} <= planned


def test_a_config_file_replaces_the_default_as_a_slurm_job_reads_it(workflow_copy: Path) -> None:
    # A SLURM job is started with --configfiles but never with --replace-workflow-config:
    # without that flag the plan must be the one the main process made with it.
    def plan(*flags: str) -> list[str]:
        out = watched.run(
            [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(TINY_CONFIG),
             *flags, "--printshellcmds"],
            cwd=workflow_copy, check=True,
        ).stdout
        # The run summary's command carries the start time; every other command is compared whole.
        return sorted(line.strip() for line in out.splitlines()
                      if "diffusion_energy.cli" in line and "--since" not in line)

    as_job = plan()
    assert as_job == plan("--replace-workflow-config")
    assert not [line for line in as_job if "sd15" in line or "import-public" in line], as_job


@pytest.mark.slow
def test_one_measurement_rule_per_model(workflow_copy: Path, repo_root: Path) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "snakemake", "--list-rules", "--config", "measure_gpus=[h100]"],
        cwd=workflow_copy, capture_output=True, text=True, check=True,
    ).stdout.split()
    jobs = grid.measurement_jobs(grid.grid_points(default_config(repo_root)))
    wanted = {grid.rule_name(model) for model in jobs}
    assert "measure_sd15" in wanted and len(wanted) == 6
    assert wanted <= set(listed)


def test_dry_run_without_gpus_measures_nothing(workflow_copy: Path) -> None:
    planned = run_workflow(workflow_copy, configfile=TINY_CONFIG)
    assert not [f for f in planned if f.startswith("results/measurements/")]
    assert {"results/flops.parquet", "results/flops_ops.parquet"} <= set(planned)


@pytest.mark.slow
def test_flops_rule_runs_on_tiny_config(workflow_copy: Path, repo_root: Path) -> None:
    start = time.time()
    ran = run_workflow(workflow_copy, ["results/flops.parquet"], executor="local", configfile=TINY_CONFIG)
    assert set(ran) == {"results/flops.parquet", "results/flops_ops.parquet"}, "one job counts every model"
    assert all(f.startswith("results/flops") for f in ran), "the FLOPs target runs only FLOP rules"
    frame = pd.read_parquet(workflow_copy / "results" / "flops.parquet")
    assert list(frame.columns) == flops.FLOPS_COLUMNS
    assert set(frame["model"]) == {"tiny-sd", "tiny-flux"}
    assert set(frame["resolution"]) == {32, 64}
    assert set(frame["batch"]) == {1}
    # Each model is counted with its default CFG only: on for tiny-sd, off for (distilled) tiny-flux.
    assert frame.groupby("model")["cfg"].unique().map(list).to_dict() == {
        "tiny-flux": [False], "tiny-sd": [True]
    }
    stages = frame.groupby(["model", "resolution"])["stage"].apply(set)
    assert all(s == {"text", "denoise", "vae"} for s in stages)
    assert (frame["flops"] > 0).all() and (frame["kernels"] > 0).all() and (frame["bytes"] > 0).all()
    # The rule's numbers are the library's numbers.
    spec = zoo.load_spec("tiny-sd")
    direct = flops.count_model(spec, [32, 64], [True], [1])
    mine = frame[frame["model"] == "tiny-sd"].sort_values(["resolution", "stage", "component"])
    direct = direct.sort_values(["resolution", "stage", "component"])
    assert mine["flops"].tolist() == direct["flops"].tolist()
    # Logs land in the working copy; nothing is written into the repository's results/.
    assert "tiny-sd" in (workflow_copy / "logs" / "flops" / "count.log").read_text()
    in_repo = repo_root / "results" / "flops.parquet"
    assert not in_repo.exists() or in_repo.stat().st_mtime < start
    # Nothing is out of date afterwards: params and outputs are stable.
    assert run_workflow(workflow_copy, ["results/flops.parquet"], configfile=TINY_CONFIG) == []


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        ({"grids": {"main": {"models": ["sd16"]}}}, ["grids.main.models", "'sd16'", "sd15"]),
        ({"protocol": {"repeat": 3}}, ["protocol", "'repeat'", "repeats"]),
        ({"measure_gpus": ["h1000"]}, ["measure_gpus", "'h1000'", "h100"]),
        ({"measure_order": ["sd15", "sd1.5"]}, ["measure_order", "'sd1.5'", "unknown model", "sdxl"]),
    ],
    ids=["unknown-model", "protocol-typo", "unknown-gpu", "unknown-model-in-order"],
)
def test_bad_config_stops_the_workflow_with_a_clear_error(
    workflow_copy: Path, config: dict[str, Any], needles: list[str]
) -> None:
    with pytest.raises(Exception) as info:  # noqa: B017 - the class comes from the workflow's import
        run_workflow(workflow_copy, config=config)
    assert type(info.value).__name__ == "ConfigError"
    for needle in needles:
        assert needle in str(info.value)


def test_bad_config_on_the_command_line(workflow_copy: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--config", "cfg=sometimes"],
        cwd=workflow_copy, capture_output=True, text=True,
    )
    output = proc.stdout + proc.stderr  # Snakemake prints the error to stdout
    assert proc.returncode != 0
    assert "ConfigError" in output
    assert "cfg" in output and "sometimes" in output


@pytest.mark.parametrize("order", [["tiny-flux", "tiny-sd"], ["tiny-sd", "tiny-flux"]])
def test_measurement_jobs_run_in_the_configured_order(workflow_copy: Path, order: list[str]) -> None:
    # On this machine without a GPU every measurement job fails at once ("GPU not
    # present"); --keep-going runs them all, one at a time (gpu=1), in priority order.
    proc = watched.run(
        [sys.executable, "-m", "snakemake", "measurements", "--configfile", str(TINY_CONFIG),
         "--replace-workflow-config", "--config", "measure_gpus=[h100]",
         f"measure_order=[{','.join(order)}]", "--cores", "2", "--resources", "gpu=1", "--keep-going"],
        cwd=workflow_copy,
    )
    output = proc.stdout + proc.stderr
    started = [line.split()[-1].rstrip(":") for line in output.splitlines()
               if line.startswith(("rule measure_", "localrule measure_"))]
    assert started == [grid.rule_name(m) for m in order], output
    assert "GPU not present" in (workflow_copy / "logs/measure/h100/tiny-sd.log").read_text()


def test_measure_priorities_follow_the_order_and_a_job_its_usual_precision_first(repo_root: Path) -> None:
    points = [grid.GridPoint(m, p, 512, 10, True, 1) for m, p in
              [("sd15", "fp32"), ("sd15", "fp16"), ("sdxl", "fp16"), ("sdxl", "fp32"), ("sd21", "fp16")]]
    jobs = grid.measurement_jobs(points)
    prio = grid.measure_priorities({"measure_order": ["sdxl", "sd15"]}, jobs)
    assert sorted(prio, key=prio.get, reverse=True) == ["sdxl", "sd15", "sd21"]
    assert [p.precision for p in jobs["sd15"]] == ["fp16", "fp32"]  # usual precision first
    config = default_config(repo_root)
    config["grids"] = {"main": {"models": ["sd15"], "resolutions": [512], "steps": [10],
                                "precisions": ["default"]}}
    grid.validate_config({**config, "measure_order": ["qwen-image", "sd15"]})  # outside the grid: fine
    with pytest.raises(grid.ConfigError, match="listed twice"):
        grid.validate_config({**config, "measure_order": ["sd15", "sd15"]})


def test_lint_is_clean(workflow_copy: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=workflow_copy, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"snakemake --lint found problems:\n{proc.stdout}\n{proc.stderr}"


# --- what a run in the wrong folder, or beside another run, says -------------------------------------


def _snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_a_snakefile_run_from_another_folder_names_the_folder_and_directory(workflow_copy: Path,
                                                                          tmp_path: Path) -> None:
    """It said "YamlSyntaxError ... config/config.yaml: no such config file"."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _snakemake(elsewhere, "-s", str(workflow_copy / "Snakefile"), "-n")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (f"config/config.yaml: no such config file in {elsewhere.resolve()} (the folder Snakemake runs "
            "in), which is where Snakemake reads it from, not from beside the Snakefile; run from "
            f"{workflow_copy.resolve()}, or add --directory {workflow_copy.resolve()}") in output, output
    assert "YamlSyntaxError" not in output and "ConfigFileMissing" in output
    (workflow_copy / "config" / "config.yaml").unlink()
    proc = _snakemake(workflow_copy, "-n")
    output = proc.stdout + proc.stderr
    assert "config/config.yaml: no such config file in" in output and "restore it" in output, output
    assert "YamlSyntaxError" not in output


def _one_impossible_energy(workflow_copy: Path) -> None:
    point = (workflow_copy / "resources/public/mlenergy-v2/text-to-image/H100 80GB HBM3/stabilityai/"
             "stable-diffusion-2-1/bs1+steps25.json")
    data = json.loads(point.read_text())
    data["Energy/image (J)"] = 1e30
    point.write_text(json.dumps(data))


def test_import_public_refuses_impossible_energies_as_a_run_by_hand_does(workflow_copy: Path) -> None:
    """The rule passed gpu_kinds without their datasheets: such a file was imported."""
    _one_impossible_energy(workflow_copy)
    proc = _snakemake(workflow_copy, "-c1", "results/public/mlenergy-v2.parquet")
    assert proc.returncode != 0, "a point at 1e30 J was imported"
    log = (workflow_copy / "logs" / "sources" / "mlenergy-v2.log").read_text()
    assert "bs1+steps25.json: energy per image 1e+30 J is impossible on h100: average power" in log, log
    assert not (workflow_copy / "results" / "public" / "mlenergy-v2.parquet").exists()


def test_a_failed_run_names_another_run_that_worked_in_its_folder(workflow_copy: Path) -> None:
    """`snakemake --nolock` beside a running workflow: the failed run says another run was at work."""
    from diffusion_energy import concurrent_runs

    other = subprocess.Popen(["sleep", "300"])
    try:
        record = {"host": socket.gethostname(), "pid": other.pid,
                  "process_start": concurrent_runs._process_start(other.pid), "started": time.time(),
                  "argv": ["snakemake", "--nolock", "-c2"], "ended": None}
        folder = workflow_copy / concurrent_runs.FOLDER
        folder.mkdir(parents=True)
        (folder / "other.json").write_text(json.dumps(record))
        _one_impossible_energy(workflow_copy)
        proc = _snakemake(workflow_copy, "-c1", "--nolock", "results/public/mlenergy-v2.parquet")
    finally:
        other.kill()
        other.wait()
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "Another run of the workflow worked in this folder at the same time (1; --nolock lets two runs " \
           "share a folder):" in output, output
    assert f"pid {other.pid} on " in output and "still running: snakemake --nolock -c2" in output
    assert "deleted or rewrote their outputs" in output
    ours = [r for p, r in concurrent_runs._records(workflow_copy).items() if p.name != "other.json"]
    assert len(ours) == 1 and ours[0]["ended"] is not None, "this run recorded itself and its end"
