"""Cross-validation mechanics and metrics, on hand-made numbers and on simulated data (real FLOPs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_support import (
    REAL_MODELS,
    REAL_RESOLUTIONS,
    counted_flops,
    energy_table,
    settings,
    shared_truth,
)

from diffusion_energy.laws import analysis, crossval, simulate
from diffusion_energy.laws.targets import TARGETS, Prediction

IMAGE = TARGETS["image"]


@pytest.fixture(scope="module")
def shared_law_points(request: pytest.FixtureRequest) -> tuple[pd.DataFrame, object]:
    """Six architectures on two GPU kinds, all following ONE law (so held-out models are predictable)."""
    table, ops = counted_flops(getattr(request.config, "cache", None), REAL_MODELS, REAL_RESOLUTIONS)
    points = simulate.grid(table, [10, 25, 50], gpus=["h100", "h200"])
    measurements = simulate.simulate_paper_law(
        points, table, shared_truth(REAL_MODELS, sigma_log=0.03), np.random.default_rng(2)
    )
    return analysis.prepare(energy_table(measurements, table), table, ops)


def _frame(n_models: int = 3, per: int = 5) -> pd.DataFrame:
    rows = []
    for m in range(n_models):
        for i in range(per):
            f = 1e12 * (i + 1) * (m + 1)
            rows.append(
                {
                    "point_id": len(rows),
                    "model": f"m{m}",
                    "gpu": "h100",
                    "architecture": "unet",
                    "precision": "fp16",
                    "resolution": 512,
                    "steps": 10 * (i + 1),
                    "cfg": True,
                    "batch": 1,
                    "flops": f,
                    "energy_j": f**0.9 * 1e-9,
                }
            )
    return pd.DataFrame(rows)


class _Recorder:
    """A candidate that predicts exactly and remembers what it was trained on."""

    def __init__(self) -> None:
        self.trained_on: list[set[str]] = []

    def fit(self, train: pd.DataFrame) -> _Recorder:
        self.trained_on.append(set(train["model"]))
        return self

    def predict(self, frame: pd.DataFrame, level: float) -> Prediction:
        e = frame["energy_j"].to_numpy(dtype=float)
        return Prediction(e, e * 0.9, e * 1.1, level)


def test_each_model_is_held_out_and_never_trained_on() -> None:
    frame = _frame()
    rec = _Recorder()
    pred = crossval.leave_one_out(frame, "model", [crossval.Candidate("rec", "", rec.fit)], IMAGE, 0.9)
    assert list(pred.columns) == crossval.PREDICTION_COLUMNS
    assert sorted(pred["held_out"].unique()) == ["m0", "m1", "m2"]
    assert len(pred) == len(frame)
    for trained, held in zip(rec.trained_on, ["m0", "m1", "m2"], strict=True):
        assert held not in trained and len(trained) == 2
    assert (pred["held_out"] == pred["model"]).all()


def test_metrics_of_exact_and_of_known_errors() -> None:
    m = crossval.score(
        np.array([1.0, 2.0, 4.0, 8.0]), np.array([1.0, 2.0, 4.0, 8.0]), np.zeros(4), np.full(4, 10.0)
    )
    assert m["spearman"] == pytest.approx(1.0) and m["kendall"] == pytest.approx(1.0)
    assert m["median_ape"] == 0 and m["p90_ape"] == 0 and m["r2_log"] == pytest.approx(1.0)
    assert m["coverage"] == 1.0
    measured = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    predicted = measured * np.array([1.1, 0.8, 1.0, 1.3, 1.05])
    m = crossval.score(measured, predicted, predicted * 0.9, predicted * 1.1)
    assert m["median_ape"] == pytest.approx(0.1)
    assert m["max_ape"] == pytest.approx(0.3)
    assert m["p90_ape"] == pytest.approx(np.percentile([0.1, 0.2, 0.0, 0.3, 0.05], 90))
    assert m["spearman"] == pytest.approx(1.0)


def test_metrics_table_has_per_group_and_overall_rows() -> None:
    frame = _frame()
    pred = crossval.leave_one_out(
        frame, "model", [crossval.Candidate("rec", "", _Recorder().fit)], IMAGE, 0.9
    )
    table = crossval.metrics(pred)
    assert list(table.columns) == crossval.METRIC_COLUMNS
    assert set(table["held_out"]) == {"m0", "m1", "m2", crossval.ALL}
    overall = table[table["held_out"] == crossval.ALL].iloc[0]
    assert overall["n_points"] == len(frame)


def test_one_group_gives_empty_tables_with_their_columns() -> None:
    frame = _frame(n_models=1)
    pred = crossval.leave_one_out(
        frame, "model", [crossval.Candidate("rec", "", _Recorder().fit)], IMAGE, 0.9
    )
    assert pred.empty and list(pred.columns) == crossval.PREDICTION_COLUMNS
    table = crossval.metrics(pred)
    assert table.empty and list(table.columns) == crossval.METRIC_COLUMNS
    assert crossval.select_candidate(table, "image") is None


def test_select_candidate_prefers_small_tail_error_over_all_points() -> None:
    table = pd.DataFrame(
        [
            {
                "target": "image",
                "candidate": "a",
                "gpu": "all",
                "held_out": "all",
                "n_points": 10,
                "median_ape": 0.05,
                "p90_ape": 0.30,
            },
            {
                "target": "image",
                "candidate": "b",
                "gpu": "all",
                "held_out": "all",
                "n_points": 10,
                "median_ape": 0.08,
                "p90_ape": 0.12,
            },
            {
                "target": "image",
                "candidate": "c",
                "gpu": "all",
                "held_out": "all",
                "n_points": 6,
                "median_ape": 0.01,
                "p90_ape": 0.02,
            },  # failed on some folds: not eligible
        ]
    )
    assert crossval.select_candidate(table, "image") == "b"


def test_lomo_of_a_shared_law_predicts_unseen_architectures(shared_law_points: tuple) -> None:
    points, inputs = shared_law_points
    tables = analysis.run_crossval(points, inputs, settings())
    m = tables["lomo_metrics"]
    overall = (m["held_out"] == crossval.ALL) & (m["gpu"] == crossval.ALL)
    flops = m[(m["target"] == "image") & (m["candidate"] == "flops") & overall].iloc[0]
    assert flops["n_points"] == len(points)
    assert flops["spearman"] > 0.99
    assert flops["median_ape"] < 0.05 and flops["p90_ape"] < 0.08
    assert 0.75 <= flops["coverage"] <= 1.0
    assert set(m["held_out"]) == set(REAL_MODELS) | {crossval.ALL}
    # Without datasheets the roofline model across kinds cannot be fitted; the power laws and baselines are.
    assert {"flops", "paper", "flops_kernels", "jpf", "ecologits"} <= set(m["candidate"])
    # The headline: nested, with the procedure's own answer ("selected") beside every candidate.
    n = tables["nested_lomo_metrics"]
    sel = n[(n["target"] == "image") & (n["candidate"] == "selected") & (n["held_out"] == crossval.ALL)
            & (n["gpu"] == crossval.ALL)].iloc[0]
    assert sel["n_points"] == len(points) and sel["median_ape"] < 0.05
    chosen = tables["nested_lomo_predictions"]
    chosen = chosen[(chosen["target"] == "image") & (chosen["candidate"] == "selected")]
    assert set(chosen["chosen"]) <= {"flops", "paper", "flops_kernels", "jpf"}
    # Reported per GPU kind too: each kind's points of every held-out architecture.
    per_gpu = m[(m["target"] == "image") & (m["candidate"] == "flops") & (m["held_out"] == crossval.ALL)]
    assert set(per_gpu["gpu"]) == {"h100", "h200", crossval.ALL}
    assert per_gpu[per_gpu["gpu"] != crossval.ALL]["n_points"].sum() == len(points)
    # Two GPU kinds: leave-one-GPU-out runs too, each kind predicted by fits on the other.
    g = tables["logo_metrics"]
    assert set(g["held_out"]) == {"h100", "h200", crossval.ALL}
    # Without datasheets the GPU enters no shared model: LOGO predicts the held-out kind as the other.
    assert "roofline_datasheet" not in set(g["candidate"]), "no datasheet, no kind left out by the roofline"
    p = tables["logo_predictions"]
    assert (p["held_out"] == p["gpu"]).all()


def test_nothing_a_held_out_group_measured_enters_what_is_predicted_for_it(shared_law_points: tuple) -> None:
    """Nested: scramble every energy (and time) of one architecture, or of one GPU kind, and nothing the
    nested cross-validation predicts for it changes: no candidate's estimate, no interval, not the choice
    of law. Its data enter no choice made for it (they do enter the other groups' predictions)."""
    points, inputs = shared_law_points
    rng = np.random.default_rng(11)

    def scrambled(mask: np.ndarray) -> pd.DataFrame:
        out = points.copy()
        factor = np.exp(rng.normal(0, 0.5, int(mask.sum())))
        for col in ("energy_j", "dynamic_energy_j", "time_s"):
            out.loc[mask, col] = out.loc[mask, col].astype(float) * factor
        return out

    base = analysis.run_crossval(points, inputs, settings())
    keys = ["candidate", "point_id"]
    for by, table, group in (("model", "nested_lomo_predictions", REAL_MODELS[0]),
                             ("gpu", "nested_logo_predictions", "h200")):
        again = analysis.run_crossval(scrambled((points[by] == group).to_numpy()), inputs, settings())
        for t in (base, again):
            assert (t[table]["held_out"] == group).any()

        def mine(t: dict, table: str = table, group: str = group) -> pd.DataFrame:
            p = t[table]
            p = p[(p["held_out"] == group) & (p["target"] == "image")]
            return p.sort_values(keys).reset_index(drop=True)

        a, b = mine(base), mine(again)
        assert len(a) == len(b) > 0
        for col in ("predicted_j", "low_j", "high_j"):
            np.testing.assert_allclose(a[col], b[col], rtol=1e-9, err_msg=f"{by}={group}: {col}")
        assert (a["chosen"].fillna("") == b["chosen"].fillna("")).all()
        # The measured values did change, so the errors did: the scramble reached the table.
        assert not np.allclose(a["measured_j"], b["measured_j"])
