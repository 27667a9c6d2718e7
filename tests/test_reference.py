"""The shipped reference dataset: packaging checks, datasheet, anchors, and the merge rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_dataset import rows

from diffusion_energy.sources import dataset, reference

KINDS = {"h100": {"name_pattern": "H100"}, "h200": {"name_pattern": "H200"}}
PROTOCOL = {"repeats": 3, "warmup": 1, "min_window_s": 1.0}


def _files(tmp_path: Path, frames: list[pd.DataFrame]) -> list[Path]:
    paths = []
    for i, frame in enumerate(frames):
        path = tmp_path / "points" / f"p{i}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path)
        paths.append(path)
    return paths


def test_package_writes_parquet_and_a_datasheet_read_from_the_data(tmp_path: Path) -> None:
    frames = [rows(energy=100.0), rows(energy=300.0, resolution=64)]
    summary = reference.package(_files(tmp_path, frames), "h100", KINDS, PROTOCOL, tmp_path / "out")
    shipped = pd.read_parquet(tmp_path / "out" / "h100.parquet")
    assert len(shipped) == 24 and summary.points == 2 and summary.oom == 0
    assert summary.worst_spread == pytest.approx(0.02)
    sheet = (tmp_path / "out" / "h100.md").read_text()
    assert "NVIDIA H100 80GB HBM3" in sheet and "Random weights" in sheet and "repeats=3" in sheet


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.assign(gpu_name="NVIDIA H200"), "measured on 'NVIDIA H200'"),
    (lambda f: f.assign(energy_status="absent: no NVIDIA GPU"), "without GPU energy"),
    (lambda f: f[f["stage"] != "vae"], r"has no \['vae'\] rows"),
    (lambda f: f.assign(gpu="h200"), "GPU kinds"),
])
def test_package_refuses_what_is_not_a_measurement_of_this_gpu(tmp_path: Path, change, message) -> None:
    bad = change(rows())
    with pytest.raises(dataset.DatasetError, match=message):
        reference.check_reference(bad, "h100", KINDS)


def test_anchor_ratios_match_on_settings() -> None:
    energy = pd.DataFrame([
        {"model": "sd21", "gpu": "h100", "resolution": 768, "steps": 25, "precision": "fp16",
         "energy_j": 400.0, "status": "ok"},
        {"model": "sd21", "gpu": "h100", "resolution": 512, "steps": 25, "precision": "fp16",
         "energy_j": 200.0, "status": "ok"},
    ])
    anchors = pd.read_csv(Path(__file__).resolve().parents[1] / "resources/anchors/published.csv")
    ratios = reference.anchor_ratios(energy, anchors)
    assert len(ratios) == 1
    assert ratios["ratio"].iloc[0] == pytest.approx(400.0 / 387.0)


def test_default_run_without_gpu_collects_the_shipped_rows(workflow_copy: Path) -> None:
    """The merge rule reads resources-style reference files; nothing local is measured."""
    ref = workflow_copy / "tests" / "data" / "reference"
    ref.mkdir(parents=True)
    shipped = pd.concat([rows(energy=100.0), rows(energy=250.0, resolution=64)])
    shipped.assign(model="tiny-sd").to_parquet(ref / "h100.parquet")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "results/energy.parquet",
         "--configfile", "tests/configs/tiny.yaml", "--replace-workflow-config",
         "--config", "reference_dir=tests/data/reference"],
        cwd=workflow_copy, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    merged = pd.read_parquet(workflow_copy / "results" / "measurements.parquet")
    assert len(merged) == len(shipped)
    energy = pd.read_parquet(workflow_copy / "results" / "energy.parquet")
    assert sorted(energy["resolution"]) == [32, 64] and (energy["gpu"] == "h100").all()
    assert energy["flops"].gt(0).all()
