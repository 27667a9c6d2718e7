"""Per-architecture offsets of the pooled laws: recovered from simulated residuals, shrunk where the
points are few and noisy, carried by a fitted law to a GPU kind the architecture was never measured on,
and absent for an architecture never measured (leave-one-model-out is unchanged)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diffusion_energy.laws import analysis, offsets, powerlaw
from diffusion_energy.laws.targets import TARGETS, Prediction

IMAGE = TARGETS["image"]


def test_offsets_recover_simulated_architecture_shifts() -> None:
    rng = np.random.default_rng(7)
    truth = {f"m{i}": float(v) for i, v in enumerate(rng.normal(0, 0.15, 10))}
    models = np.repeat(list(truth), 20)
    residuals = np.array([truth[m] for m in models]) + rng.normal(0, 0.02, len(models))
    got = offsets.estimate(models, residuals)
    assert set(got) == set(truth)
    assert max(abs(got[m] - truth[m]) for m in truth) < 0.02


def test_few_noisy_points_are_shrunk_towards_zero_and_no_spread_gives_no_offsets() -> None:
    rng = np.random.default_rng(3)
    many = np.repeat([f"m{i}" for i in range(8)], 10)
    shifts = {f"m{i}": s for i, s in enumerate(rng.normal(0, 0.1, 8))}
    r = np.array([shifts[m] for m in many]) + rng.normal(0, 0.1, len(many))
    models = np.concatenate([many, ["lone", "lone"]])
    r = np.concatenate([r, [0.3, 0.1]])
    got = offsets.estimate(models, r)
    assert 0 < got["lone"] < 0.2 * 0.8  # its mean is 0.2: kept in part only
    assert offsets.estimate(np.repeat(["a", "b"], 5), np.zeros(10)) == {}
    assert offsets.estimate(["a", "a"], [0.1, 0.2]) == {}


def test_shifted_scales_energy_and_interval_of_models_with_an_offset_only() -> None:
    frame = pd.DataFrame({"model": ["a", "b"]})
    pred = Prediction(np.array([10.0, 10.0]), np.array([8.0, 8.0]), np.array([12.0, 12.0]), 0.9)
    out = offsets.shifted(frame, pred, {"a": np.log(2.0)})
    assert out.energy_j.tolist() == pytest.approx([20.0, 10.0])
    assert out.low_j.tolist() == pytest.approx([16.0, 8.0])
    assert out.high_j.tolist() == pytest.approx([24.0, 12.0])


def _two_kinds(rng: np.random.Generator) -> pd.DataFrame:
    """Points of a law with an architecture shift that holds on both GPU kinds."""
    shift = {"a": 0.25, "b": -0.2, "c": 0.0, "d": 0.1, "e": -0.1}
    rows = []
    for gpu, g in (("h100", 0.0), ("a100", 0.3)):
        for m, s in shift.items():
            for f in (1e13, 3e13, 1e14, 3e14):
                rows.append({"model": m, "gpu": gpu, "flops": f, "kernels": 1e4, "precision": "fp16",
                             "resolution": 512, "steps": 25, "batch": 1, "source": "x",
                             "energy_j": 1e-11 * f ** 0.9 * np.exp(g + s + rng.normal(0, 0.01))})
    return pd.DataFrame(rows)


def test_a_law_with_offsets_carries_an_architecture_to_a_kind_it_was_not_measured_on() -> None:
    points = _two_kinds(np.random.default_rng(0))
    train = points[~((points["model"] == "a") & (points["gpu"] == "a100"))]
    test = points[(points["model"] == "a") & (points["gpu"] == "a100")]
    law = powerlaw.fit_law(train, IMAGE, scope="pooled", name="flops", optional=("beta_gpu",), n_boot=0,
                           rng=np.random.default_rng(0), min_points=4)
    with_off = analysis.with_offsets(law, train, IMAGE, None)
    plain = np.abs(np.log(law.predict(test, 0.9).energy_j / test["energy_j"]))
    shifted = np.abs(np.log(with_off.predict(test, 0.9).energy_j / test["energy_j"]))
    assert np.median(plain) > 0.15 and np.median(shifted) < np.median(plain) / 4
    # The offsets travel with the law's JSON; an architecture never measured gets none.
    again = powerlaw.law_from_dict(with_off.to_dict())
    assert again.model_offsets == pytest.approx(with_off.model_offsets)
    unseen = test.assign(model="never")
    assert again.predict(unseen, 0.9).energy_j == pytest.approx(law.predict(unseen, 0.9).energy_j)
