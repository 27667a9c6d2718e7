"""Measurement tables: schema, 0 J refusal, merging shipped with local, collection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diffusion_energy.counting import flops
from diffusion_energy.models import zoo
from diffusion_energy.sources import dataset


def rows(gpu: str = "h100", energy: float = 100.0, resolution: int = 32, status: str = "ok") -> pd.DataFrame:
    """Rows of one point as the measurement job writes them (values chosen by the test)."""
    out = []
    parts = {"text": 0.1 * energy, "denoise": 0.8 * energy, "vae": 0.1 * energy, "image": energy}
    for stage, e in parts.items():
        for r in range(3):
            out.append({"gpu": gpu, "model": "tiny-sd", "architecture": "unet", "precision": "fp32",
                        "resolution": resolution, "steps": 2, "cfg": True, "batch": 1, "stage": stage,
                        "repeat": r, "status": status, "energy_status": "measured",
                        "energy_j": e * (1 + 0.01 * r), "dynamic_energy_j": e / 2, "time_s": e / 400,
                        "idle_power_w": 120.0, "stage_sum_error": 0.0 if stage == "image" else np.nan,
                        "repeat_spread": 0.02, "flag": "", "gpu_name": "NVIDIA H100 80GB HBM3",
                        "denoiser_calls": 2})
    return dataset.conform(pd.DataFrame(out))


def test_zero_energy_rows_are_refused() -> None:
    bad = rows()
    bad.loc[3, "energy_j"] = 0.0
    with pytest.raises(dataset.DatasetError, match="non-positive energy"):
        dataset.check_measurements(bad)


def test_unknown_columns_are_refused() -> None:
    with pytest.raises(dataset.DatasetError, match="unknown measurement column"):
        dataset.conform(rows().assign(joules=1.0))


def test_local_point_replaces_the_shipped_one() -> None:
    shipped = pd.concat([rows(energy=100.0), rows(energy=200.0, resolution=64)])
    local = rows(energy=150.0)
    merged = dataset.merge_reference(shipped, local)
    assert len(merged) == 24
    by_res = merged[merged["stage"] == "image"].groupby("resolution")["energy_j"].median()
    assert by_res[32] == pytest.approx(151.5) and by_res[64] == pytest.approx(202.0)


def test_collect_joins_medians_with_per_image_flops() -> None:
    spec = zoo.load_spec("tiny-sd")
    table = flops.count_model(spec, [32], [True], [1])
    energy = dataset.collect_energy(rows(), table)
    assert len(energy) == 1
    row = energy.iloc[0]
    assert row["energy_j"] == pytest.approx(101.0) and row["repeat_spread"] == pytest.approx(0.02)
    assert row["denoise_energy_j"] == pytest.approx(80.8)
    den = table[table["stage"] == "denoise"].iloc[0]
    assert row["denoise_flops"] == 2 * den["flops"]
    text = table[table["stage"] == "text"]
    assert row["text_flops"] == (text["flops"] * text["calls"]).sum()
    assert row["flops"] == row["text_flops"] + row["denoise_flops"] + row["vae_flops"]
    assert row["flops"] == flops.per_image_totals(table, 2)["flops"].iloc[0]
    assert list(energy.columns) == list(dataset.ENERGY_COLUMNS)


def test_collect_keeps_oom_points_and_drops_energy_absent_ones() -> None:
    spec = zoo.load_spec("tiny-sd")
    table = flops.count_model(spec, [32, 64], [True], [1])
    absent = rows(resolution=64).assign(energy_status="absent: no NVIDIA GPU", energy_j=np.nan)
    oom = rows(resolution=64, gpu="h200", status="oom").head(1).assign(energy_j=np.nan)
    energy = dataset.collect_energy(pd.concat([rows(), absent, oom]), table)
    assert sorted(zip(energy["gpu"], energy["status"], strict=True)) == [("h100", "ok"), ("h200", "oom")]
