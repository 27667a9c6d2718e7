"""The measurement campaign (issue 24.1): the grid measured across short GPU runs on the simulated H200.

Each run plans the points not yet shipped, measures them one process per model within its budget
(virtual time on the simulated GPU: nothing here depends on the host's speed) and returns one
tarball; ``campaign-merge`` checks it and merges it into one table. Two runs on two cards (two
UUIDs) measure each point once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO_ROOT

from diffusion_energy import grid
from diffusion_energy.measurement import campaign, journal, measure
from diffusion_energy.measurement import simulated_gpu as sg
from diffusion_energy.models import zoo
from diffusion_energy.sources import campaign_merge, dataset

KEYS = ["model", "precision", "resolution", "steps", "cfg", "batch"]


def _config(tmp_path: Path) -> Path:
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    config["grids"] = {
        "main": {"models": ["sd15", "sdxl"], "resolutions": [256, 512], "steps": [10, 25],
                 "precisions": ["default"]},
        "fp32": {"models": ["sd15"], "resolutions": [512], "steps": [10], "precisions": ["fp32"]},
    }
    config["measure_order"] = ["sdxl", "sd15"]
    config["reference_dir"] = "shipped"
    config["public_sources"] = {}
    (tmp_path / "shipped").mkdir(exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(cwd: Path, *args: str, gpu: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != sg.ENV}
    if gpu:
        env[sg.ENV] = gpu
    return subprocess.run([sys.executable, "-m", "diffusion_energy.cli", *args], capture_output=True,
                          text=True, timeout=900, env=env, cwd=cwd)


def _points(frame: pd.DataFrame) -> list[tuple]:
    return sorted(map(tuple, frame[KEYS].drop_duplicates().astype(str).to_numpy()))


@pytest.mark.slow
def test_a_two_run_campaign_on_two_cards_measures_each_point_once_into_one_table(tmp_path: Path) -> None:
    config = _config(tmp_path)
    wanted = grid.grid_points(yaml.safe_load(config.read_text()))
    # run 1, card GPU-1: a budget for part of the grid; everything comes back as one tarball
    first = cli(tmp_path, "campaign-run", "--config", str(config), "--budget-s", "60", "--out", "out1",
                gpu="h200,uuid=GPU-1")
    assert first.returncode == 0, first.stdout + first.stderr
    tarballs = list((tmp_path / "out1").iterdir())
    assert len(tarballs) == 1 and tarballs[0].suffix == ".tar"
    assert all("[h200-simulated]" in line for line in first.stdout.splitlines())
    merged = cli(tmp_path, "campaign-merge", str(tarballs[0]), "--config", str(config))
    assert merged.returncode == 0, merged.stdout + merged.stderr
    table = tmp_path / "results" / "simulated-measurements" / "h200-simulated.parquet"
    after_one = pd.read_parquet(table)
    assert 0 < len(_points(after_one)) < len(wanted)
    # run 2: a fresh machine (no journal, no logs) with another card goes on where the table ends
    for leftover in ("results/measurements", "logs"):
        subprocess.run(["rm", "-rf", str(tmp_path / leftover)], check=True)
    second = cli(tmp_path, "campaign-run", "--config", str(config), "--budget-s", "900", "--out", "out2",
                 gpu="h200,uuid=GPU-2")
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{len(_points(after_one))} already in" in second.stdout
    (tarball,) = (tmp_path / "out2").iterdir()
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        journaled = [n for n in tar.getnames() if n.startswith("journal/") and n.endswith(".parquet")]
    assert len(journaled) == len(wanted) - len(_points(after_one))  # no point measured twice
    assert cli(tmp_path, "campaign-merge", str(tarball), "--config", str(config)).returncode == 0
    final = pd.read_parquet(table)
    assert _points(final) == sorted(tuple(str(v) for v in (p.model, p.precision, p.resolution, p.steps,
                                                             p.cfg, p.batch)) for p in wanted)
    per_point = final.groupby(KEYS)
    assert (per_point["gpu_uuid"].nunique() == 1).all() and (per_point["campaign_run"].nunique() == 1).all()
    assert set(final["gpu_uuid"]) == {"GPU-1", "GPU-2"}  # the UUID stays in the rows
    assert (per_point.size() == 12).all()  # 4 stages x 3 repeats, once
    assert manifest["simulated"] and manifest["kind"] == "h200-simulated" and len(manifest["jobs"]) == 2
    runs = json.loads((table.parent / "h200-simulated.runs.json").read_text())
    assert [r["run_id"] for r in runs] == sorted(set(final["campaign_run"]))
    sheet = (table.parent / "h200-simulated.md").read_text()
    assert "SIMULATED" in sheet and "GPU-1" in sheet and "GPU-2" in sheet
    # run 3: the grid is done
    third = cli(tmp_path, "campaign-run", "--config", str(config), "--out", "out3", gpu="h200,uuid=GPU-3")
    assert third.returncode == 0 and "nothing to measure" in third.stdout
    assert not (tmp_path / "out3").exists()


def _run_rows(tmp_path: Path, points: list[grid.GridPoint], kind: str = "h200-simulated", seed: int = 1,
              **change) -> Path:
    """A run's tarball of simulated points (the journal as a campaign run leaves it); ``seed``: the
    simulated card's noise (the same seed measures the same rows)."""
    gpu = sg.SimulatedGpu("h200", seed=seed)
    meter = sg.simulated_meter(gpu, min_tail_s=measure.Protocol().min_tail_s)
    spec = zoo.load_spec(points[0].model)
    root = tmp_path / "run"
    for p, rows in measure.measure_group(
            spec, points, kind, meter, measure.Protocol(), "cpu", gpu.snapshot,
            workload_factory=lambda s, precision, _: sg.SimulatedWorkload(gpu, s, precision),
            clock=gpu.clock, sleep=gpu.sleep, sync_fn=gpu.sync):
        frame = dataset.conform(rows.assign(protocol=journal.protocol_text(measure.Protocol()),
                                            measurement_code=journal.measurement_code(p.model), **change))
        journal.write(frame, grid.measurement_path(root / "results/measurements/.journal", kind, p),
                      json.loads(journal.protocol_text(measure.Protocol())))
    the_plan = campaign.Plan(kind, {points[0].model: points}, [])
    record = campaign.new_record(kind, 100.0, True, the_plan)
    return campaign.pack(record, root, tmp_path / f"{record.run_id}.tar")


def test_merge_checks_each_point_and_keeps_what_it_replaces(tmp_path: Path) -> None:
    points = [grid.GridPoint("sd15", "fp16", 256, s, True, 1) for s in (10, 25)]
    into = tmp_path / "sim"
    tarball = _run_rows(tmp_path, points)
    report, table = campaign_merge.merge_run(tarball, into, {}, reference_dir=tmp_path / "shipped")
    assert len(report.added) == 2 and not report.left_out
    again, same = campaign_merge.merge_run(tarball, into, {}, reference_dir=tmp_path / "shipped")
    assert len(again.unchanged) == 2 and len(same) == len(table)  # merging twice changes nothing
    newer = _run_rows(tmp_path / "b", points, seed=2)  # another run measures other values
    replaced, _ = campaign_merge.merge_run(newer, into, {}, reference_dir=tmp_path / "shipped")
    assert len(replaced.replaced) == 2
    kept = pd.read_parquet(into / "superseded" / "h200-simulated.parquet")
    assert len(kept) == len(table)  # the replaced rows are kept, never dropped


@pytest.mark.parametrize(("change", "why"), [
    ({"idle_power_w": 900.0}, "the work did not run on this GPU"),
    ({"gpu_uuid": ""}, "no GPU UUID recorded"),
    ({"energy_status": "measured"}, "energy_status 'measured', not simulated"),
])
def test_a_point_that_fails_a_check_is_left_out_and_said(tmp_path: Path, change: dict, why: str) -> None:
    tarball = _run_rows(tmp_path, [grid.GridPoint("sd15", "fp16", 256, 10, True, 1)], **change)
    report, _ = campaign_merge.merge_run(tarball, tmp_path / "sim", {}, reference_dir=tmp_path / "shipped")
    assert not report.added and why in next(iter(report.left_out.values()))


def test_a_simulated_run_never_enters_the_shipped_folder(tmp_path: Path) -> None:
    tarball = _run_rows(tmp_path, [grid.GridPoint("sd15", "fp16", 256, 10, True, 1)])
    with pytest.raises(dataset.DatasetError, match="never enters the shipped folder"):
        campaign_merge.merge_run(tarball, tmp_path / "shipped", {}, reference_dir=tmp_path / "shipped")


def test_the_plan_skips_shipped_points_of_this_protocol_and_code_only(tmp_path: Path) -> None:
    config = yaml.safe_load(_config(tmp_path).read_text())
    protocol = measure.Protocol.from_config(config["protocol"])
    tarball = _run_rows(tmp_path, [grid.GridPoint("sd15", "fp16", 256, s, True, 1) for s in (10, 25)])
    _, table = campaign_merge.merge_run(tarball, tmp_path / "sim", {}, reference_dir=tmp_path / "shipped")
    versions = measure.library_versions()
    the_plan = campaign.plan(config, "h200-simulated", table, versions, protocol)
    assert [m for m in the_plan.todo] == ["sdxl", "sd15"]  # measure_order
    assert len(the_plan.done) == 2 and the_plan.points() == 9 - 2
    old = table.assign(measurement_code="sha256:000000000000")
    redo = campaign.plan(config, "h200-simulated", old, versions, protocol)
    assert redo.points() == 9 and all("measured by code sha256:000000000000" in r for r in redo.redo.values())
    other = campaign.plan(config, "h200-simulated", table, versions,
                          measure.Protocol.from_config({**config["protocol"], "repeats": 5}))
    assert other.points() == 9


def test_a_merge_rewrites_the_shipped_datasheet_keeping_the_older_runs_notes(tmp_path: Path) -> None:
    """The H200 rows from before campaigns keep their code line and notes (h200.runs.json) when a
    campaign merge writes h200.md again."""
    shipped = REPO_ROOT / "resources" / "measurements"
    for name in ("h200.parquet", "h200.runs.json"):
        shutil.copy(shipped / name, tmp_path / name)
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    frame = dataset.read_measurements([tmp_path / "h200.parquet"])
    expected = [(p.model, p.precision, p.resolution, p.steps, p.cfg, p.batch)
                for p in grid.grid_points(config)]
    sheet = campaign_merge.write_datasheet(frame, "h200", tmp_path, config["protocol"], expected).read_text()
    old = (shipped / "h200.md").read_text()
    for line in old.splitlines():
        if line.startswith(("- Code:", "- Run:", "- Spreads and stage sums")):
            assert line in sheet
