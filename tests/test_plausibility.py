"""Energies a GPU cannot have spent, points the fits leave out, one release under two names.

Each case feeds one bad input (a published file in the wrong unit, a point at 1e30 J, a
datasheet peak 10x off, NaN dynamic energies, a copy of a source) and asserts the
refusal or the flag with its reason: nothing wrong enters a fit without a word.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_sources import CONFIG, REPO, edit_json, refused, v2, v2_point  # noqa: F401 - v2 is a fixture

from diffusion_energy import cli, run_summary
from diffusion_energy.laws import analysis, crossval, exclusions, predict
from diffusion_energy.laws.powerlaw import NotIdentifiable
from diffusion_energy.laws.targets import TARGETS
from diffusion_energy.sources import dataset, duplicates, gpu_datasheets, importing, plausibility

SHEETS = gpu_datasheets.datasheets(CONFIG["gpu_kinds"])
H100 = SHEETS["h100"]


def point(**change: object) -> dict:
    """One H100 point of SD 2.1 as ML.ENERGY published it: 386 J in 0.94 s (410 W), 57 TFLOP."""
    row = {"source": "mlenergy-v2", "gpu": "h100", "model": "sd21", "precision": "fp16", "resolution": 768,
           "steps": 25, "batch": 1, "num_gpus": 1, "status": "ok", "energy_j": 386.46, "time_s": 0.941,
           "flops": 57e12, "idle_power_w": np.nan, "dynamic_energy_j": np.nan}
    return {**row, **change}


def reasons(*rows: dict) -> list[str]:
    return list(plausibility.violations(pd.DataFrame(rows), SHEETS))


def test_a_real_point_is_possible() -> None:
    assert reasons(point()) == [""]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"energy_j": 386.46 / 1000}, "average power 0.4107 W below idle (35 W, 5% of the power limit)"),
        ({"energy_j": 386.46 / 3.6e6}, "below idle"),  # joules that are really kWh
        ({"energy_j": 1e30}, "average power 1.063e+30 W above 1 x the 700 W power limit"),
        ({"energy_j": 50.0, "idle_power_w": 120.0}, "below idle (120 W, measured idle)"),
        ({"flops": 5e15}, "faster than 1 x the datasheet peak 989.4 TFLOP/s"),
        ({"time_s": np.nan, "energy_j": 0.01}, "0.01 J below the least 2.016 J its 57 TFLOP take"),
    ],
    ids=["divided-by-1000", "kwh-as-joules", "1e30-joules", "below-measured-idle", "faster-than-peak",
         "no-time-below-flops-floor"],
)
def test_impossible_energies_are_named_with_the_bound(change: dict, needle: str) -> None:
    found = reasons(point(**change))[0]
    assert found.startswith("impossible on h100: ") and needle in found, found


def test_several_gpus_share_the_bounds() -> None:
    """Eight GPUs may draw eight times the limit: 4 kW over 8 GPUs is possible, over one it is not."""
    assert reasons(point(energy_j=4000.0, time_s=1.0, num_gpus=8)) == [""]
    assert "above" in reasons(point(energy_j=4000.0, time_s=1.0))[0]


def test_a_kind_without_datasheet_is_not_checked() -> None:
    assert reasons(point(gpu="mystery", energy_j=1e30)) == [""]


def test_a_datasheet_peak_typed_ten_times_too_high_is_flagged() -> None:
    frame = pd.DataFrame([point(flops=57e12 * k) for k in (1, 2, 4)])
    assert plausibility.peak_warnings(frame, SHEETS) == []
    sheet = gpu_datasheets.Datasheet(H100.half_flop_s * 10, H100.fp32_flop_s, H100.bandwidth_byte_s,
                                     H100.power_limit_w)
    (line,) = plausibility.peak_warnings(frame, {**SHEETS, "h100": sheet})
    assert line.startswith("h100: the fastest of its 3 points reaches 242.3 TFLOP/s, 2.4% of the datasheet's "
                           "9,894 TFLOP/s (gpu_kinds.h100.datasheet.half_tflop_s)"), line


# --- on import: a published file in the wrong unit is refused, naming the file ---------------------


def test_published_energies_divided_by_1000_are_refused_on_import(v2: Path) -> None:  # noqa: F811
    for path in (v2 / "text-to-image").glob("*/*/*/*.json"):
        edit_json(path, lambda d: d.update({"Energy/image (J)": d["Energy/image (J)"] / 1000}))
    message = refused(v2, "is impossible on a100: average power")
    assert "kandinsky-2-2-decoder/bs1+steps25.json: energy per image" in message
    assert "(and 79 more of 80 points)" in message and "check the file's units" in message


def test_one_point_at_1e30_joules_is_refused_on_import(v2: Path) -> None:  # noqa: F811
    edit_json(v2_point(v2), lambda d: d.update({"Energy/image (J)": 1e30}))
    message = refused(v2, "above 1 x the 700 W power limit")
    assert message.startswith(f"{v2_point(v2)}: energy per image 1e+30 J is impossible on h100")


# --- before the fits: every point left out is a warning, in the laws JSON and in the summary ---------


def energy_table() -> pd.DataFrame:
    rows = [point(model=m, resolution=r, flops=f, energy_j=e, time_s=t)
            for m, r, f, e, t in (("sd21", 768, 57e12, 386.0, 0.94), ("sdxl", 1024, 170e12, 969.0, 2.1),
                                  ("sd3-medium", 1024, 240e12, 1257.0, 2.3))]
    rows.append(point(model="sdxl", resolution=512, energy_j=1e30))
    rows.append(point(model="sd21", resolution=512, flops=-9.2e18))  # a count that wrapped round
    rows.append(point(source="this-workflow", model="sd15", resolution=512, flops=16e12, energy_j=300.0,
                      time_s=0.8, idle_power_w=120.0, dynamic_energy_j=np.nan))
    return pd.DataFrame(rows)


def test_split_leaves_out_impossible_and_unfittable_points_with_warnings(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="diffusion_energy.laws.exclusions"):
        kept, left = exclusions.split(energy_table(), SHEETS)
    assert len(kept) == 4 and set(left) == {"all", "dynamic"}
    assert left["all"] == [
        "sdxl on h100 (mlenergy-v2), 512 px, 25 steps, fp16, batch 1: impossible on h100: average power "
        "1.063e+30 W above 1 x the 700 W power limit",
        "sd21 on h100 (mlenergy-v2), 512 px, 25 steps, fp16, batch 1: FLOPs per image -9.2e+18 is not a "
        "positive finite number"]
    assert left["dynamic"] == ["sd15 on h100 (this-workflow), 512 px, 25 steps, fp16, batch 1: "
                               "dynamic energy nan J is not a positive finite number"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned[0].startswith("2 point(s) left out of every fit: sdxl on h100") and len(warned) == 2


def test_fit_writes_what_it_left_out_and_the_run_summary_lists_it(tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    energy_table().to_parquet(tmp_path / "energy.parquet")
    for name, columns in (("p", crossval.PREDICTION_COLUMNS), ("m", crossval.METRIC_COLUMNS)):
        pd.DataFrame(columns=columns).to_csv(results / "tables" / f"{name}.csv", index=False)
    laws = results / "laws" / "laws.json"
    tables = [x for n in ("laws", "terms", "roofline") for x in (f"--{n}-table", str(results / f"{n}.csv"))]
    assert cli.main(["fit", "--energy", str(tmp_path / "energy.parquet"), "--datasheets",
                     json.dumps({k: v["datasheet"] for k, v in CONFIG["gpu_kinds"].items()}),
                     "--lomo-predictions", str(results / "tables" / "p.csv"),
                     "--lomo-metrics", str(results / "tables" / "m.csv"), "--bootstrap", "0",
                     "--laws", str(laws), *tables]) == 0
    assert json.loads(laws.read_text())["left_out"] == exclusions.split(energy_table(), SHEETS)[1]
    measurements = dataset.conform(pd.DataFrame(columns=["source"]))
    measurements.to_parquet(tmp_path / "results" / "measurements.parquet")
    dataset.collect_energy(measurements, pd.DataFrame()).to_parquet(tmp_path / "results" / "energy.parquet")
    text = run_summary.summarize(tmp_path, measure_reason="test")
    assert "Left out of the fits: none" not in text
    assert "  2 point(s) left out of every fit: sdxl on h100 (mlenergy-v2), 512 px" in text
    assert "  1 point(s) left out of the dynamic (idle-subtracted) laws: sd15 on h100 (this-workflow)" in text


def test_predict_names_the_points_without_dynamic_energy() -> None:
    payload = {"left_out": {"dynamic": ["sd15 on h100 (this-workflow), 512 px: dynamic energy nan J"]}}
    why = predict._why_no_pooled({"not_fitted": {"flops": "0 points"}}, "image_dynamic", payload)
    assert why.startswith("1 point(s) of this workflow have no dynamic (idle-subtracted) energy and are left "
                          "out of the dynamic laws (first: sd15 on h100 (this-workflow), 512 px")


@pytest.mark.parametrize("name", ["jpf", "roofline_datasheet"])
def test_min_points_holds_for_the_baseline_and_roofline_models(name: str) -> None:
    """With analysis.min_points 50, four points fit no model: not only the OLS ones refuse."""
    settings = analysis.Settings(bootstrap=0, min_points=50)
    frame = pd.DataFrame([point(model=m, point_id=i) for i, m in enumerate(("sd21", "sdxl", "sd3-medium",
                                                                            "sd15"))])
    (cand,) = [c for c in analysis.candidates(TARGETS["image"], None, settings) if c.name == name]
    with pytest.raises(NotIdentifiable, match="4 points < min_points 50"):
        cand.fit(frame)
    with pytest.raises(NotIdentifiable, match="4 points < min_points 50"):
        analysis.enough(frame, TARGETS["image"], settings)


# --- one release under two names --------------------------------------------------------------------


def test_two_sources_holding_the_same_points_are_refused(tmp_path: Path) -> None:
    frame = importing.import_source(REPO / CONFIG["public_sources"]["mlenergy-v2"], CONFIG["upstream_models"],
                                    CONFIG["gpu_kinds"])
    paths = []
    for name, part in (("mlenergy-v2", frame), ("mlenergy-v2-copy", frame.assign(source="mlenergy-v2-copy"))):
        paths.append(str(tmp_path / f"{name}.parquet"))
        part.to_parquet(paths[-1])
    with pytest.raises(dataset.DatasetError) as err:
        dataset.write_merged([], [], tmp_path / "merged.parquet", paths)
    assert str(err.value).startswith("public_sources 'mlenergy-v2' and 'mlenergy-v2-copy' hold the same "
                                     "80 of 'mlenergy-v2-copy''s 80 points"), str(err.value)
    assert "keep one of them in public_sources" in str(err.value)


def test_sources_that_measured_the_same_settings_independently_are_kept() -> None:
    """Two releases may measure one model on one GPU: their values differ, both stay."""
    a = pd.DataFrame([point(upstream_model="m", gpu_name="H100", batch_time_s=0.94) | {"stage": "image"}])
    b = a.assign(source="mlenergy-v3", energy_j=390.0)
    duplicates.refuse_same_points(pd.concat([a, b], ignore_index=True))

