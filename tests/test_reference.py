"""The shipped reference dataset: packaging checks, datasheet, anchors, and the merge rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO_ROOT, TINY_REFERENCE_DIR
from test_dataset import rows

from diffusion_energy import cli, grid
from diffusion_energy.sources import dataset, reference

KINDS = {"h100": {"name_pattern": "H100"}, "h200": {"name_pattern": "H200"}}
SHIPPED_H200 = REPO_ROOT / "resources" / "measurements" / "h200.parquet"
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


def test_package_reference_takes_a_table_names_the_missing_points_and_keeps_flags(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A table of rows (not a run's folder) is packaged as it is: the grid's points it lacks are
    named, a flagged point stays with its flag, the run's own protocol values win over the config's."""
    table = rows(energy=100.0).assign(min_window_s=2.0, warmup=1, warmup_s=1.0,
                                      flag="repeat spread 12.0% > 10%", repeat_spread=0.12)
    table.to_parquet(tmp_path / "run.parquet")
    rc = cli.main(["package-reference", "--gpu", "h100", "--measurements", str(tmp_path / "run.parquet"),
                   "--config", str(REPO_ROOT / "tests" / "configs" / "tiny.yaml"),
                   "--out", str(tmp_path / "out"),
                   "--anchors", str(REPO_ROOT / "resources" / "anchors" / "published.csv"),
                   "--code", "main at abc1234 plus a test change", "--note", "stopped by its time budget"])
    assert rc == 0, capsys.readouterr().err
    shipped = pd.read_parquet(tmp_path / "out" / "h100.parquet")
    assert len(shipped) == 12 and set(shipped["flag"]) == {"repeat spread 12.0% > 10%"}
    sheet = (tmp_path / "out" / "h100.md").read_text()
    assert "- tiny-sd fp32 64 px / 2 steps (CFG on, batch 1): not measured" in sheet
    assert "groups of the grid with no point on this GPU: tiny-flux fp32 (2 points)" in sheet
    assert "min_window_s=2.0 (recorded in the rows)" in sheet and "idle_s=3.0," in sheet
    assert "- Code: main at abc1234 plus a test change" in sheet and "- stopped by its time budget" in sheet
    assert "| tiny-sd | fp32 | 32 | 2 | 101.0 | 0.250 | 12.0% | +0.0%, +0.0%, +0.0% | 0.0% |" in sheet
    assert "1 flagged, kept with their flag" in sheet


def test_point_files_refuses_a_path_that_is_neither_folder_nor_table(tmp_path: Path) -> None:
    with pytest.raises(dataset.DatasetError, match="no such folder of measured points or parquet file"):
        reference.point_files(tmp_path / "nothing.parquet", "h100")


def test_the_shipped_h200_dataset_and_its_datasheet_come_from_one_another() -> None:
    """resources/measurements/h200.parquet: the 11 SD 1.5 points of the 2026-12-04 H200 run, checked
    as package-reference checks them, and the datasheet's numbers the ones its rows give."""
    config = grid.load_config(REPO_ROOT / "config" / "config.yaml")
    frame = dataset.read_measurements([SHIPPED_H200])
    reference.check_reference(frame, "h200", config["gpu_kinds"])
    points = reference.point_table(frame)
    assert len(frame) == 132 and len(points) == 11 and set(frame["source"]) == {"this-workflow"}
    assert (points["flag"] != "").sum() == 4 and (frame.groupby("resolution")["steps"].nunique()
                                                  .to_dict() == {256: 3, 512: 3, 768: 3, 1024: 2})
    expected = [(p.model, p.precision, p.resolution, p.steps, p.cfg, p.batch)
                for p in grid.grid_points(config)]
    assert reference.missing_points(frame, expected) == [("sd15", "fp16", 1024, 50, True, 1)]
    regenerated = reference.datasheet(frame, reference.summarize(frame, "h200"), config["protocol"], expected)
    shipped = (SHIPPED_H200.parent / "h200.md").read_text()

    def section(text: str, title: str) -> str:
        return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]

    assert section(shipped, "Points") == section(regenerated, "Points")
    assert section(shipped, "Not measured").startswith(
        "\n- sd15 fp16 1024 px / 50 steps (CFG on, batch 1): not measured")
    assert "- Code: main at 21c0713 plus one changed line" in shipped and "min_window_s=2.0" in shipped


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


@pytest.mark.slow
def test_default_run_without_gpu_collects_the_shipped_rows(tiny_reference_run: Path) -> None:
    """The merge rule reads resources-style reference files; nothing local is measured."""
    workflow_copy = tiny_reference_run
    shipped = pd.read_parquet(workflow_copy / TINY_REFERENCE_DIR / "h100.parquet")
    merged = pd.read_parquet(workflow_copy / "results" / "measurements.parquet")
    assert len(merged) == len(shipped)
    energy = pd.read_parquet(workflow_copy / "results" / "energy.parquet")
    assert sorted(energy["resolution"]) == [32, 64] and (energy["gpu"] == "h100").all()
    assert energy["flops"].gt(0).all()
