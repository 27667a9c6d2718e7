"""Measurement tables: schema, 0 J refusal, merging shipped with local, collection."""

from __future__ import annotations

from pathlib import Path

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


def sd15_flops_table(per_evaluation: float) -> pd.DataFrame:
    """A FLOPs table of SD 1.5 at 512 px: text encoder twice and VAE once per image, the U-Net once per
    denoiser evaluation."""
    base = {"model": "sd15", "architecture": "unet", "family": "sd", "resolution": 512, "cfg": True,
            "batch": 1, "params": 1000, "params_nonembedding": 900, "call_batch": 2, "tokens": 77,
            "kernels": 100, "bytes": 1000, "flops_analytic": 10}
    return pd.DataFrame([
        base | {"stage": "text", "component": "text_encoder", "calls": 2, "per": "image", "flops": 1e9},
        base | {"stage": "denoise", "component": "unet", "calls": 1, "per": "step", "flops": per_evaluation},
        base | {"stage": "vae", "component": "vae", "calls": 1, "per": "image", "flops": 3e9},
    ])


def test_per_image_costs_count_every_denoiser_evaluation() -> None:
    # SD 1.5's PNDM scheduler runs the U-Net steps + 1 times (the H200 hook counted 11, 26, 51).
    unet = 1.6e12
    points = pd.DataFrame([{"gpu": "h200", "model": "sd15", "precision": "fp16", "resolution": 512,
                            "steps": s, "cfg": True, "batch": 1} for s in (1, 10, 25)])
    costs = dataset.per_image_costs(points, sd15_flops_table(unet)).set_index("steps")
    assert list(costs["denoiser_evaluations"]) == [1, 11, 26]
    assert costs.loc[25, "denoise_flops"] == 26 * unet
    assert costs.loc[10, "denoise_flops"] == 11 * unet and costs.loc[1, "denoise_flops"] == unet
    assert costs.loc[25, "flops"] == 2e9 + 26 * unet + 3e9
    assert costs.loc[25, "denoise_kernels"] == 26 * 100
    assert costs.loc[25, "flops_analytic"] == 10 * (2 + 26 + 1)
    # Per step as the per-step energy is: the denoise total over the user's steps.
    assert costs.loc[25, "denoise_flops_per_step"] == pytest.approx(26 / 25 * unet)


def test_per_image_costs_refuse_a_model_whose_evaluations_are_unknown() -> None:
    table = sd15_flops_table(1e12).assign(model="my-unet")
    points = pd.DataFrame([{"gpu": "h200", "model": "my-unet", "precision": "fp16", "resolution": 512,
                            "steps": 20, "cfg": True, "batch": 1}])
    with pytest.raises(dataset.EvaluationsError, match="model 'my-unet' at 20 steps.*unknown model"):
        dataset.per_image_costs(points, table)
    given = dataset.per_image_costs(points.assign(denoiser_evaluations=21), table)
    assert given["denoise_flops"].iloc[0] == 21e12


def test_shipped_denoiser_calls_are_the_schedulers_evaluations() -> None:
    # The hook of the H200 measurements counted the U-Net forwards: what the FLOPs multiply by.
    shipped = pd.read_parquet(Path(__file__).resolve().parents[1] / "resources/measurements/h200.parquet")
    image = shipped[(shipped["stage"] == "image") & shipped["denoiser_calls"].notna()]
    assert len(image)
    for r in image.drop_duplicates(["model", "steps", "cfg"]).itertuples():
        spec = zoo.load_spec(r.model)
        calls = spec.denoiser_evaluations(int(r.steps)) * spec.denoiser_calls_per_step(bool(r.cfg))
        assert r.denoiser_calls == calls, (r.model, r.steps)


def test_collect_keeps_oom_points_and_drops_energy_absent_ones() -> None:
    spec = zoo.load_spec("tiny-sd")
    table = flops.count_model(spec, [32, 64], [True], [1])
    absent = rows(resolution=64).assign(energy_status="absent: no NVIDIA GPU", energy_j=np.nan)
    oom = rows(resolution=64, gpu="h200", status="oom").head(1).assign(energy_j=np.nan)
    energy = dataset.collect_energy(pd.concat([rows(), absent, oom]), table)
    assert sorted(zip(energy["gpu"], energy["status"], strict=True)) == [("h100", "ok"), ("h200", "oom")]
