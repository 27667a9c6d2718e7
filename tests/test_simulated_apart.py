"""Simulated measurements live apart (issue 25.1): their own kind (h200-simulated), refused under a
real kind, never merged, collected or shipped, and every line they print says "simulated".

On e26a971 the simulated H200 wrote to results/measurements/h200/..., the real kind's paths: the
merge replaced the 11 real shipped H200 points with simulated ones, the collection then dropped
them with an INFO line, and a real run skipped its jobs because their outputs existed. The whole
default run after a simulated one is in test_shipped_data.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO_ROOT
from workflow_support import run_workflow

from diffusion_energy.measurement import gpu
from diffusion_energy.measurement import simulated_gpu as sg
from diffusion_energy.sources import dataset

SHIPPED_H200 = REPO_ROOT / "resources" / "measurements" / "h200.parquet"


def cli(*args: str, simulated: str | None = None, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != sg.ENV}
    if simulated:
        env[sg.ENV] = simulated
    return subprocess.run([sys.executable, "-m", "diffusion_energy.cli", *args], capture_output=True,
                          text=True, timeout=600, env=env, cwd=cwd)


def test_the_simulated_gpu_has_its_own_kind_and_knobs() -> None:
    assert sg.simulated_kind("h200") == "h200-simulated" == sg.simulated_kind("h200,uuid=GPU-2")
    assert sg.simulated_kind("") is None
    assert sg.SimulatedGpu("h200,uuid=GPU-2").snapshot()["gpu_uuid"] == "GPU-2"
    assert sg.calibration("h200,counter_lag_s=0.1").counter_lag_s == pytest.approx(0.1)
    with pytest.raises(Exception, match="is not a knob"):
        sg.calibration("h200,colour=red")


def test_measure_refuses_simulated_rows_under_a_real_kind_and_the_reverse(tmp_path: Path) -> None:
    args = ("measure", "--model", "sd15", "--precision", "fp16", "--points", "256px_10steps_cfg1_b1",
            "--outdir", str(tmp_path))
    real_kind = cli(*args, "--gpu", "h200", simulated="h200")
    assert real_kind.returncode == 2 and "Traceback" not in real_kind.stderr
    assert "pass --gpu h200-simulated" in real_kind.stderr and "stand in for a real GPU" in real_kind.stderr
    no_simulator = cli(*args, "--gpu", "h200-simulated")
    assert no_simulator.returncode == 2 and f"set {sg.ENV}=h200 to measure it" in no_simulator.stderr
    assert not list(tmp_path.rglob("*.parquet"))


def test_the_workflow_measures_the_simulated_kind_apart(workflow_copy: Path, monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setenv(sg.ENV, "h200")
    kinds, reason = gpu.measure_plan("auto", {"h200": {"name_pattern": "H200"}})
    assert kinds == ["h200-simulated"] and "kept apart" in reason
    with pytest.raises(gpu.GpuError, match="its rows would stand in for real ones"):
        gpu.measure_plan(["h200"], {"h200": {"name_pattern": "H200"}})
    planned = run_workflow(workflow_copy, targets=["measurements"])
    measured = [f for f in planned if f.startswith("results/measurements/")]
    assert measured and all(f.startswith("results/measurements/h200-simulated/") for f in measured)
    # the default target merges no simulated file: nothing simulated is measured for it
    everything = run_workflow(workflow_copy)
    assert not [f for f in everything if f.startswith("results/measurements/h200")]


def _shipped_as_simulated() -> pd.DataFrame:
    rows = pd.read_parquet(SHIPPED_H200)
    return rows.assign(gpu="h200-simulated",
                       energy_status="simulated: NVIDIA H200 calibration, not a measurement")


def test_merge_and_collect_refuse_simulated_rows_naming_the_file(tmp_path: Path) -> None:
    point = tmp_path / "results" / "measurements" / "h200" / "sd15" / "fp16" / "256px_10steps_cfg1_b1.parquet"
    point.parent.mkdir(parents=True)
    rows = _shipped_as_simulated().assign(gpu="h200")  # what e26a971 wrote: simulated rows, real kind
    rows[(rows["resolution"] == 256) & (rows["steps"] == 10)].to_parquet(point)
    merged = cli("merge-measurements", "--reference", str(SHIPPED_H200), "--local", str(point), "--out",
                 str(tmp_path / "m.parquet"))
    assert merged.returncode == 2 and "Traceback" not in merged.stderr
    assert str(point) in merged.stderr and "simulated row(s)" in merged.stderr
    table = tmp_path / "sim.parquet"
    _shipped_as_simulated().to_parquet(table)
    collected = cli("collect", "--measurements", str(table), "--flops", str(tmp_path / "none.parquet"),
                    "--out", str(tmp_path / "e.parquet"))
    assert collected.returncode == 2 and "Traceback" not in collected.stderr
    assert str(table) in collected.stderr and "simulated row(s)" in collected.stderr
    with pytest.raises(dataset.DatasetError, match="never enter merged, collected, fitted or shipped tables"):
        dataset.collect_energy(_shipped_as_simulated(), pd.DataFrame())


def test_collect_without_any_point_to_collect_says_so(tmp_path: Path) -> None:
    """e26a971: merged rows none of which had FLOPs (e.g. published rows of models not counted, or the
    simulated rows that had replaced the real ones) ended in a pandas TypeError."""
    rows = pd.read_parquet(SHIPPED_H200).assign(source="mlenergy-v2", quoted=False)
    rows.to_parquet(tmp_path / "m.parquet")
    flops = pd.DataFrame({c: pd.Series(dtype="float64") for c in dataset.FLOPS_TABLE_KEYS})
    flops.to_parquet(tmp_path / "flops.parquet")
    result = cli("collect", "--measurements", str(tmp_path / "m.parquet"), "--flops",
                 str(tmp_path / "flops.parquet"), "--out", str(tmp_path / "e.parquet"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "no point to collect" in result.stderr
    assert pd.read_parquet(tmp_path / "e.parquet").empty
