"""The end of every run says what happened (``run_summary``): measured here or not and why, reused,
the data the results rest on per source and GPU kind, what was left out and why, the warnings."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import watched
from test_dataset import rows

from diffusion_energy import run_summary
from diffusion_energy.figures import FIGURE_NAMES
from diffusion_energy.measurement import gpu
from diffusion_energy.sources import dataset

NO_GPU = "measure_gpus is auto and this machine has no NVIDIA GPU (NVML finds none): nothing is measured here"


def _energy_and_measurements(root: Path, frames: list[pd.DataFrame], flops_models: set[str]) -> None:
    """Write results/measurements.parquet and an energy.parquet as collect would leave it."""
    merged = dataset.conform(pd.concat(frames, ignore_index=True))
    (root / "results").mkdir(parents=True, exist_ok=True)
    merged.to_parquet(root / "results" / "measurements.parquet")
    points = merged.drop_duplicates(dataset.POINT_KEYS)
    keep = points[
        (points["status"] == "oom")
        | ((points["energy_status"] == "measured") & points["model"].isin(flops_models))
    ]
    keep[[*dataset.POINT_KEYS, "status", "flag"]].to_parquet(root / "results" / "energy.parquet")


def test_a_run_without_gpu_says_nothing_was_measured_and_what_the_results_rest_on(tmp_path: Path) -> None:
    (tmp_path / "ref").mkdir()
    shipped = rows(gpu="h200").assign(flag="repeat spread 12.9% > 10%")
    published = rows(gpu="h100").assign(source="mlenergy-v2", repeat=0).drop_duplicates("stage")
    no_flops = rows(gpu="h200", resolution=64).assign(model="tiny-flux")
    cpu_run = rows(gpu="h200", resolution=128).assign(
        energy_status="absent: no NVIDIA GPU", energy_j=float("nan")
    )
    oom = (
        rows(gpu="h200", resolution=256, status="oom")
        .drop_duplicates("stage")
        .assign(energy_status="absent: oom", energy_j=float("nan"))
    )
    _energy_and_measurements(tmp_path, [shipped, published, no_flops, cpu_run, oom], {"tiny-sd"})
    shipped.to_parquet(tmp_path / "ref" / "h200.parquet")
    text = run_summary.summarize(tmp_path, measure_kinds=[], measure_reason=NO_GPU, reference_dir="ref")
    assert f"Measured on this machine: nothing. Why: {NO_GPU}." in text
    assert "Shipped reference files in ref: h200.parquet" in text
    assert "nothing measured locally" in text
    assert ("this-workflow, shipped reference (ref/h200.parquet)  h200      2 points, 1 models "
            "(1 out of memory) (1 flagged, kept with their flag)") in text
    assert "mlenergy-v2 (published)" in text and "h100      1 points" in text
    assert "1 point(s) without FLOPs (their model and shape were not counted): tiny-flux on h200" in text
    assert "1 point(s) without GPU energy (absent: no NVIDIA GPU): tiny-sd on h200" in text
    assert "1 point(s) out of memory" in text
    n = len(FIGURE_NAMES)
    assert f"figures: results/figures/ ({n} figures, {2 * n} files (PDF and PNG); 0 drawn so far)" in text
    assert text.splitlines()[4].startswith("Findings: no law fitted")


def test_measured_reused_and_remeasured_points_and_this_runs_warnings(tmp_path: Path) -> None:
    old_log = tmp_path / "logs" / "collect" / "collect.log"
    old_log.parent.mkdir(parents=True)
    old_log.write_text("2026-01-01 00:00:00,000 WARNING diffusion_energy.x: an old warning\n")
    os.utime(old_log, (time.time() - 3600, time.time() - 3600))
    started = time.time()
    log = tmp_path / "logs" / "flops" / "count.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        "2026-01-01 00:00:00,000 INFO diffusion_energy.x: fine\n"
        "2026-01-01 00:00:01,000 WARNING diffusion_energy.sources.dataset: 2 points have no FLOPs\n"
    )
    failed = tmp_path / "logs" / "measure" / "h100" / "sdxl" / "fp16.log"
    failed.parent.mkdir(parents=True)
    failed.write_text("diffusion-energy measure: error: wrong GPU for this job: it measures kind 'h100'\n")
    job = tmp_path / "logs" / "measure" / "h100" / "sd15.job.json"  # one job per model
    job.parent.mkdir(parents=True, exist_ok=True)
    job.write_text(
        json.dumps(
            {
                "model": "sd15",
                "precision": "fp16,fp32",
                "gpu": "h100",
                "measured": 2,
                "reused": ["fp16/512px_10steps_cfg1_b1"],
                "warnings": ["x: journal entry unreadable"],
                "remeasured": {"fp16/256px_10steps_cfg1_b1": "measured with torch_version 2.0, now 2.1"},
            }
        )
    )
    text = run_summary.summarize(
        tmp_path, measure_kinds=["h100"], measure_reason="measure_gpus is auto", since=started
    )
    assert "This run: 2 point(s) measured, 1 reused from the journal" in text
    assert "sd15 fp16/256px_10steps_cfg1_b1: measured with torch_version 2.0, now 2.1" in text
    assert "logs/flops/count.log: 2 points have no FLOPs" in text
    assert "x: journal entry unreadable" in text
    assert (
        "Errors during this run: 1\n  logs/measure/h100/sdxl/fp16.log: diffusion-energy measure: error: "
        "wrong GPU for this job"
    ) in text
    assert "an old warning" not in text, "warnings of earlier runs are not this run's"
    assert "results/energy.parquet: not written (yet)." in text


def test_the_summary_command_writes_results_summary_txt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from diffusion_energy import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["run-summary", "--reason", NO_GPU]) == 0
    out = capsys.readouterr().out
    assert "Measured on this machine: nothing" in out
    assert (tmp_path / "results" / "summary.txt").read_text() == out


@pytest.mark.skipif(bool(gpu.device_names()), reason="this machine has an NVIDIA GPU")
def test_snakemake_measurements_without_a_gpu_says_there_is_nothing_to_measure(workflow_copy: Path) -> None:
    proc = watched.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--cores",
            "1",
            "measurements",
            "--configfile",
            "tests/configs/tiny.yaml",
            "--replace-workflow-config",
            "--config",
            "measure_gpus=auto",
        ],
        cwd=workflow_copy,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to measure here" in proc.stdout
    assert NO_GPU in proc.stdout


@pytest.mark.slow
def test_the_default_run_ends_with_the_summary(tiny_reference_run: Path) -> None:
    """A newcomer's run on a machine without a GPU: nothing measured here, the shipped rows used."""
    workflow_copy = tiny_reference_run
    summary = (workflow_copy / "results" / "summary.txt").read_text()
    assert summary in (workflow_copy / "run.log").read_text(), "the summary is printed on the terminal"
    assert "Measured on this machine: nothing. Why: measure_gpus is [] in the config" in summary
    assert "Shipped reference files in tests/data/reference: h100.parquet" in summary
    assert "this-workflow, shipped reference (tests/data/reference/h100.parquet)  h100      2 points" \
        in summary
    assert "Left out of the fits: none" in summary
    figures = len(list((workflow_copy / "results" / "figures").glob("*.pdf")))
    assert figures == len(FIGURE_NAMES)
    assert f"figures: results/figures/ ({figures} figures, {2 * figures} files (PDF and PNG))" in summary
    # Two points of one architecture fit no law (analysis.min_points is 4): the findings say so, first.
    first = "Findings: no law fitted (2 single-GPU points: 2 points < min_points 4)."
    assert summary.splitlines()[4] == first, "the summary starts with the findings"
    assert "laws: results/laws/laws.json" in summary
