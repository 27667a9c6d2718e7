"""The pieces around the laws: baselines, intervals that widen off the data, one model for every GPU
kind, the newest stack, the roofline's trends across kinds, and the findings a run summary starts with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffusion_energy.laws import baselines, choice, findings, intervals, roofline
from diffusion_energy.laws.crossval import ALL, PREDICTION_COLUMNS, metrics
from diffusion_energy.laws.targets import TARGETS

IMAGE = TARGETS["image"]


def _points(flops: list[float], **cols: list) -> pd.DataFrame:
    n = len(flops)
    base = {"flops": flops, "kernels": [1e4] * n, "resolution": [512] * n, "steps": [25] * n,
            "batch": [1] * n}
    base.update(cols)
    return pd.DataFrame(base)


def test_ecologits_is_a_constant_energy_per_flop_of_1_1_x_3_73e_18_kwh() -> None:
    pred = baselines.ecologits(IMAGE).predict(_points([1e12, 2e12]), 0.9)
    assert pred.energy_j[0] == pytest.approx(1e12 * 1.1 * 3.73e-18 * 3.6e6)
    assert pred.energy_j[1] == pytest.approx(2 * pred.energy_j[0])
    assert baselines.fit_ecologits(_points([1.0]), IMAGE).j_per_flop == pytest.approx(1.4770800e-11)


def test_distance_is_zero_inside_the_fitted_ranges_and_grows_in_log_units_outside() -> None:
    fitted = intervals.ranges(_points([1e12, 1e14], resolution=[256, 1024], steps=[10, 50]), IMAGE)
    inside = _points([1e13], resolution=[512], steps=[25])
    outside = _points([1e15, 1e16], resolution=[2048, 2048], steps=[100, 100], batch=[1, 1])
    assert intervals.distance(fitted, inside, IMAGE)[0] == 0
    d = intervals.distance(fitted, outside, IMAGE)
    assert d[0] == pytest.approx(np.log(10) + np.log(2) + np.log(2) + np.log(10), rel=1e-6)
    assert d[1] > d[0]


def test_the_calibrated_interval_widens_with_distance_and_never_less_than_the_minimum_slope() -> None:
    rng = np.random.default_rng(0)
    r_in, r_out = rng.normal(0, 0.05, 200), rng.normal(0, 0.05, 50) + np.linspace(0, 1, 50)
    d = np.concatenate([np.zeros(200), np.linspace(0.1, 2, 50)])
    rule = intervals.calibrate(np.concatenate([r_in, r_out]), d, 0.9)
    assert rule is not None and rule.slope > intervals.MIN_SLOPE
    lo0, hi0 = rule.bounds(np.array([100.0]), np.array([0.0]))
    lo2, hi2 = rule.bounds(np.array([100.0]), np.array([2.0]))
    assert lo2[0] < lo0[0] <= 100 <= hi0[0] < hi2[0]
    flat = intervals.calibrate(np.zeros(20), np.linspace(0, 1, 20), 0.9)
    assert flat is not None and flat.slope == intervals.MIN_SLOPE


def test_grouped_errors_weigh_each_architecture_the_same_and_cover_a_new_one() -> None:
    """Errors share their architecture's offset: one architecture with many points must not set the
    quantiles, and a new architecture (offset drawn like the others) is covered about as often as asked."""
    rng = np.random.default_rng(1)
    hits, plain_hits = [], []
    for _ in range(400):
        offsets = rng.normal(0, 0.15, 12)
        sizes = rng.integers(3, 30, 12)
        r = np.concatenate([o + rng.normal(0, 0.02, n) for o, n in zip(offsets, sizes, strict=True)])
        groups = np.repeat(np.arange(12).astype(str), sizes)
        rule = intervals.calibrate(r, np.zeros(len(r)), 0.9, groups=groups)
        plain = intervals.calibrate(r, np.zeros(len(r)), 0.9)
        new = rng.normal(0, 0.15) + rng.normal(0, 0.02)
        hits.append(rule.lo <= new <= rule.hi)
        plain_hits.append(plain.lo <= new <= plain.hi)
    print(f"new architecture inside the 90% interval: grouped {np.mean(hits):.3f}, "
          f"plain {np.mean(plain_hits):.3f}")
    assert 0.86 <= np.mean(hits) <= 0.94 and np.mean(hits) > np.mean(plain_hits) + 0.03
    # One architecture with 1,000 points at +0.5 counts as one group, not 1,000 points.
    r = np.concatenate([np.linspace(-0.2, 0.2, 10), np.full(1000, 0.5)])
    groups = np.concatenate([np.arange(10).astype(str), np.full(1000, "big")])
    grouped = intervals.calibrate(r, np.zeros(len(r)), 0.5, groups=groups)
    plain = intervals.calibrate(r, np.zeros(len(r)), 0.5)
    assert plain.lo == pytest.approx(0.5) and grouped.lo < 0.0 < grouped.hi


def _predictions(errors: dict[str, dict[str, list[float]]], by: str = "model") -> pd.DataFrame:
    rows = []
    for cand, groups in errors.items():
        for group, ratios in groups.items():
            for i, ratio in enumerate(ratios):
                rows.append({"target": "image", "candidate": cand, "held_out": group, "point_id": i,
                             "gpu": group if by == "gpu" else "h100", "source": "s", "resolution": 512,
                             "steps": 25, "model": group if by == "model" else "m",
                             "batch": 1, "measured_j": 100.0, "predicted_j": 100.0 * ratio, "low_j": 90.0,
                             "high_j": 110.0, "ape": abs(ratio - 1), "log_ratio": np.log(1 / ratio),
                             "distance": 0.0})
    return pd.DataFrame(rows).reindex(columns=PREDICTION_COLUMNS)


def test_cross_calibrated_intervals_come_from_the_other_groups_only() -> None:
    p = _predictions({"x": {"a": [1.0] * 10, "b": [1.0] * 10, "c": [2.0] * 10}})
    out = intervals.cross_calibrated(p, 0.9)
    c = out[out["held_out"] == "c"]
    # Calibrated on a and b (no error), c's 2x over-prediction falls outside: a held-out miss.
    assert (c["measured_j"] < c["low_j"]).all()
    m = metrics(out)
    assert m[(m["held_out"] == ALL) & (m["gpu"] == ALL)]["coverage"].iloc[0] == pytest.approx(20 / 30)


def test_a_kind_left_out_gets_a_symmetric_interval_the_size_of_the_other_kinds_errors() -> None:
    # Each kind's errors lean its own way (two read high, one low): kept where they lie, the other
    # kinds' errors point the wrong way for the kind that leans alone; only their size carries over.
    rng = np.random.default_rng(1)
    shifts = {"a100": 1 / 1.15, "b200": 1 / 1.1, "h100": 1.12}
    errors = {g: list(s * np.exp(rng.normal(0, 0.03, 20))) for g, s in shifts.items()}
    p = _predictions({"x": errors}, by="gpu")
    shifted = intervals.cross_calibrated(p, 0.9)
    symmetric = intervals.cross_calibrated(p, 0.9, symmetric=True)
    inside = {name: (o["measured_j"] >= o["low_j"]) & (o["measured_j"] <= o["high_j"])
              for name, o in (("shifted", shifted), ("symmetric", symmetric))}
    h100 = p["held_out"] == "h100"
    assert inside["symmetric"][h100].mean() == 1.0 and inside["symmetric"].mean() >= 0.8
    # Kept where they lie, two kinds' errors say little about a third: the rule over groups (Student's t
    # on two group means) covers only by being far wider than the symmetric one.
    width = {name: float(np.median(o["high_j"] / o["low_j"])) for name, o in (("shifted", shifted),
                                                                              ("symmetric", symmetric))}
    assert width["shifted"] > 2 * width["symmetric"]
    rule = intervals.calibrate(p["log_ratio"], p["distance"], 0.9, symmetric=True)
    assert rule is not None and rule.lo == pytest.approx(-rule.hi) and rule.hi > np.log(1.1)


def test_the_simplest_law_within_one_standard_error_of_the_best_is_chosen_never_a_baseline() -> None:
    """Occam: a more complex law answers only where it beats a simpler one by more than the spread of the
    errors between held-out groups shows is noise; EcoLogits (fitted on nothing) is never chosen."""
    groups = [f"m{i}" for i in range(8)]
    rng = np.random.default_rng(3)
    spread = rng.normal(0, 0.05, len(groups))

    def errors(scale: float) -> dict[str, list[float]]:
        return {g: [float(np.exp(scale + e))] * 4 for g, e in zip(groups, spread, strict=True)}

    # roofline_datasheet 0.10 mean error, flops_kernels 0.11: within one standard error -> the simpler.
    close = _predictions({"roofline_datasheet": errors(0.10), "flops_kernels": errors(0.11),
                          "ecologits": errors(0.0)})
    decided = choice.choose(close, 0.9)
    assert decided.candidate == "flops_kernels" and "one standard error" in decided.why
    # Far apart (0.10 against 0.30): the better law has earned its place.
    far = choice.choose(_predictions({"roofline_datasheet": errors(0.10), "flops_kernels": errors(0.30),
                                      "ecologits": errors(0.0)}), 0.9)
    assert far.candidate == "roofline_datasheet"
    # A candidate that skipped points is not compared (it would look better for skipping the hard ones).
    partial = _predictions({"jpf": {g: [1.0] * 2 for g in groups}, "flops_kernels": errors(0.11)})
    assert choice.choose(partial, 0.9).candidate == "flops_kernels"


def test_a_kind_outside_the_fit_gets_the_trend_across_kinds_and_a_measured_kind_its_own_factor() -> None:
    c = roofline.RooflineConstants(
        gpu="all", efficiency={"matmul": 0.5, "memory": 0.8}, launch_s={"s": 1e-5}, time_factor={"s": 1.0},
        pi_static=0.2, pi_flop=1.0, pi_byte=0.5, pi_source={}, idle_power_w=float("nan"), reference={},
        source_reference="s", sigma_log=0.1, dof=10, n_points=20, precisions=("fp16",), sources=("s",),
        gpu_factor={"h100": 0.9, "a100": 1.6}, peak_exponent=0.3, energy_exponent=-0.2)
    assert c.gpu_time_factor("h100", 1e15) == pytest.approx(0.9)
    # A kind outside the fit: the typical (geometric mean) factor of the measured kinds, times the trend.
    assert c.gpu_time_factor("b200", 2.25e15) == pytest.approx(np.sqrt(0.9 * 1.6) * 2.25 ** 0.3)
    assert c.energy_factor(np.array([1e-12, 0.5e-12])) == pytest.approx([1.0, 0.5 ** -0.2])


def test_findings_say_first_how_sure_from_the_nested_folds_and_name_bounds_hit(tmp_path: Path) -> None:
    tables = tmp_path / "results" / "tables"
    tables.mkdir(parents=True)
    (tmp_path / "results" / "laws").mkdir()
    lomo = _predictions({"roofline_datasheet": {"m1": [1.05] * 4, "m2": [0.9] * 4},
                         "flops": {"m1": [1.3] * 4, "m2": [0.7] * 4}, "ecologits": {"m1": [5.0] * 8}})
    metrics(lomo).to_csv(tables / "lomo_metrics.csv", index=False)
    lomo.to_csv(tables / "lomo_predictions.csv", index=False)
    # Nested: the procedure picked roofline_datasheet for m1 and flops for m2.
    chosen = {"m1": "roofline_datasheet", "m2": "flops"}
    picked = pd.concat([lomo[(lomo["candidate"] == c) & (lomo["held_out"] == g)].assign(
        candidate="selected", chosen=c) for g, c in chosen.items()], ignore_index=True)
    nested = pd.concat([lomo.assign(chosen=""), picked], ignore_index=True)
    metrics(nested).to_csv(tables / "nested_lomo_metrics.csv", index=False)
    nested.to_csv(tables / "nested_lomo_predictions.csv", index=False)
    law = {"kind": "roofline", "constants": [{
        "efficiency": {"matmul": 0.6, "memory": 1.0}, "launch_s": {"s": 4e-5}, "gpu_factor": {"h100": 0.95},
        "peak_exponent": 0.3, "energy_exponent": -0.3, "pi_static": 0.2, "pi_flop": 1.8, "pi_byte": 0.5}]}
    payload = {"status": "ok", "n_points": 16, "models": ["m1", "m2"], "gpus": ["h100"],
               "settings": {"prediction_level": 0.9},
               "pooled": {"image": {"selected": "roofline_datasheet", "selection": "the simplest within 1 SE",
                                    "selected_unmeasured_gpu": "roofline_datasheet",
                                    "baselines": ["jpf", "flops", "paper", "ecologits"],
                                    "candidates": {"roofline_datasheet": {"law": law}}}}}
    (tmp_path / "results" / "laws" / "laws.json").write_text(json.dumps(payload))
    lines = findings.findings(tmp_path)
    text = "\n".join(lines)
    assert lines[0].startswith("Findings (GPU energy per image; 16 measured single-GPU points")
    # Plain words first, from the nested folds: m1 5% off (roofline), m2 30% off (flops, its choice).
    assert lines[1].startswith("  An architecture nobody has shown the laws: predicted within 17.5% at the "
                               "median"), lines[1]
    assert "per architecture, median error 5.0% to 30.0%" in text
    assert "The law that answers, one for every GPU kind: roofline_datasheet" in text
    assert "selected            h100 17.5% / 30.0% (8)" in text
    assert "Diagnostic, not a test" in text and "roofline_datasheet  h100 7.5% / 10.0% (8)" in text
    assert "(peak FLOP/s)^0.30" in text and "Example (held out):" in text
    assert "at a bound of their physical range: efficiency memory 1 at its upper bound 1" in text
    assert findings.findings(tmp_path / "nothing") == ["Findings: no law fitted (no measured points yet)."]


class _Constant:
    """A stand-in law predicting a constant energy."""

    def __init__(self, joules: float) -> None:
        self.joules, self.precisions, self.sources, self.gpus = joules, ("fp16",), ("s",), ("h100",)

    def predict(self, frame: pd.DataFrame, level: float) -> baselines.Prediction:
        e = np.full(len(frame), self.joules)
        return baselines.Prediction(e, e / 2, e * 2, level)


def test_a_blend_is_the_geometric_mean_of_its_parts() -> None:
    from diffusion_energy.laws.blend import BlendFit

    pred = BlendFit("image", "b", {"x": _Constant(100.0), "y": _Constant(400.0)}).predict(
        _points([1e12]), None, 0.9)  # type: ignore[arg-type]
    assert pred.energy_j[0] == pytest.approx(200.0)
    assert (pred.low_j[0], pred.high_j[0]) == pytest.approx((100.0, 400.0))


def test_a_gpu_kind_measured_on_one_architecture_shifts_only_that_architecture() -> None:
    from diffusion_energy.laws import powerlaw

    rng = np.random.default_rng(1)
    rows = []
    for model, gpu, shift in (("a", "h100", 0.0), ("b", "h100", 0.0), ("c", "h100", 0.0), ("a", "a100", 0.3),
                              ("b", "a100", 0.3), ("d", "h200", 1.0)):
        for f in np.geomspace(1e12, 1e14, 4) * rng.uniform(0.8, 1.2):
            rows.append({"model": model, "gpu": gpu, "source": "s", "precision": "fp16", "resolution": 512,
                         "steps": 25, "batch": 1, "flops": f, "energy_j": 1e-11 * f * np.exp(shift)})
    frame = pd.DataFrame(rows)
    law = powerlaw.fit_law(frame, IMAGE, scope="pooled", name="flops", optional=("beta_gpu",), n_boot=0,
                           rng=np.random.default_rng(0))
    assert law.design.confined == {"beta_gpu_h200": ("d",)} and "beta_gpu_a100" not in law.design.confined
    new = pd.DataFrame({"model": ["d", "e", "e"], "gpu": ["h200", "h200", "h100"], "flops": [1e13] * 3})
    e = law.predict(new, 0.9).energy_j
    assert e[0] == pytest.approx(np.exp(1.0) * 1e2, rel=1e-6)  # d keeps its own shift
    assert e[1] == pytest.approx(e[2]) == pytest.approx(1e2, rel=1e-6)  # e on h200: the reference kind's


def test_blend_weights_are_inverse_held_out_squared_errors_from_the_other_groups() -> None:
    from diffusion_energy.laws.blend import heldout_blend, inverse_mse_weights

    low = 1 / 1.2
    p = _predictions({"x": {"m1": [1.1] * 4, "m2": [1.1] * 4}, "y": {"m1": [low] * 4, "m2": [low] * 4}})
    w = inverse_mse_weights(p, ["x", "y"])
    assert w is not None and w["x"] / w["y"] == pytest.approx((np.log(1.2) / np.log(1.1)) ** 2)
    blend = heldout_blend(p, "xy", ["x", "y"])
    assert len(blend) == 8 and set(blend["candidate"]) == {"xy"}
    expected = np.exp(w["x"] * np.log(110.0) + w["y"] * np.log(100 / 1.2))
    assert blend["predicted_j"].to_numpy() == pytest.approx([expected] * 8)
    assert heldout_blend(p, "xz", ["x", "z"]).empty
