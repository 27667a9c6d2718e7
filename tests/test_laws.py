"""Laws: design matrix, identifiability, OLS + HC3 + bootstrap, the mixed model, on simulated data.

The energies are simulated from a known law on the REAL FLOPs of the zoo's six
architectures (counted on meta); the fits must recover the law's exponents and
shifts within their intervals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_support import (
    REAL_MODELS,
    REAL_RESOLUTIONS,
    counted_flops,
    energy_table,
    paper_truth,
    shared_truth,
)

from diffusion_energy.laws import powerlaw, simulate
from diffusion_energy.laws.targets import TARGETS

IMAGE = TARGETS["image"]


@pytest.fixture(scope="module")
def real_flops(request: pytest.FixtureRequest) -> tuple[pd.DataFrame, pd.DataFrame]:
    return counted_flops(getattr(request.config, "cache", None), REAL_MODELS, REAL_RESOLUTIONS)


@pytest.fixture(scope="module")
def paper_data(real_flops: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, simulate.PaperTruth]:
    """Six architectures x 3 resolutions x 3 step counts x 2 GPU kinds, fp32 for the U-Nets."""
    table, _ = real_flops
    truth = paper_truth(REAL_MODELS)
    points = simulate.grid(table, [10, 25, 50], gpus=["h100", "h200"], fp32_models=["sd15", "sd21", "sdxl"])
    measurements = simulate.simulate_paper_law(points, table, truth, np.random.default_rng(11))
    return energy_table(measurements, table), truth


def _synthetic(n_res: int = 4, steps: tuple[int, ...] = (10, 25, 50), gpus: tuple[str, ...] = ("h100",),
               precisions: tuple[str, ...] = ("fp16",)) -> pd.DataFrame:
    """A small energy table by hand: FLOPs ~ steps x res^2.3, energy = FLOPs^0.9."""
    rows = []
    for res in [256 * (i + 1) for i in range(n_res)]:
        for s in steps:
            for g in gpus:
                for p in precisions:
                    f = s * 1e12 * (res / 256) ** 2.3
                    rows.append({"model": "m", "gpu": g, "precision": p, "resolution": res, "steps": s,
                                 "flops": f, "kernels": 1000.0 * s, "energy_j": f ** 0.9 * 1e-10})
    return pd.DataFrame(rows)


def test_paper_law_recovered_per_architecture(paper_data: tuple[pd.DataFrame, simulate.PaperTruth]) -> None:
    energy, truth = paper_data
    for model, part in energy.groupby("model"):
        fit = powerlaw.fit_law(part, IMAGE, scope="architecture", name="paper", optional=powerlaw.PAPER_TERMS,
                           n_boot=1000, rng=powerlaw.child_rng(20261126, "test", model), min_points=4)
        expected = {"log_A": truth.log_a[model], "alpha": truth.alpha[model], "beta_dtype": truth.beta_dtype,
                    "beta_gpu_h200": truth.beta_gpu["h200"], "beta_res": truth.beta_res}
        assert fit.r2_log >= 0.99, model
        assert fit.n_bootstrap >= 950
        for term, lo, hi, est, se in zip(fit.design.terms, fit.ci_low, fit.ci_high, fit.coef, fit.se_hc3,
                                         strict=True):
            # The truth lies inside the 95% bootstrap interval and within 3 HC3 standard errors.
            assert lo <= expected[term] <= hi, (model, term, lo, expected[term], hi)
            assert abs(est - expected[term]) <= 3 * se, (model, term)
        assert abs(fit.coefficients["alpha"] - truth.alpha[model]) < 0.03
        dropped = dict(fit.design.dropped)
        if model in ("sd15", "sd21", "sdxl"):
            assert "beta_dtype" in fit.design.terms
        else:
            assert "one precision class" in dropped["beta_dtype"]
        assert fit.design.gpu_reference == "h100"


def test_pooled_shared_exponent_recovered(real_flops: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    table, _ = real_flops
    truth = shared_truth(REAL_MODELS, alpha=0.9, spread=0.15)
    points = simulate.grid(table, [10, 25, 50], gpus=["h100"], fp32_models=["sd15"])
    energy = energy_table(simulate.simulate_paper_law(points, table, truth, np.random.default_rng(5)), table)
    ols = powerlaw.fit_law(energy, IMAGE, scope="pooled", name="flops", optional=("beta_dtype", "beta_gpu"),
                       n_boot=300, rng=powerlaw.child_rng(1, "pooled"), cluster_col="model")
    assert ols.bootstrap_unit == "model"
    # The per-architecture intercepts (spread 0.15) blur the pooled exponent; the bootstrap over whole
    # architectures still holds the truth.
    assert ols.ci_low[1] <= 0.9 <= ols.ci_high[1]
    assert ols.ci_low[1] <= ols.coefficients["alpha"] <= ols.ci_high[1]


def test_one_gpu_and_one_precision_drop_their_terms() -> None:
    design = powerlaw.choose_design(_synthetic(), IMAGE, powerlaw.PAPER_TERMS)
    dropped = dict(design.dropped)
    assert design.terms == ("log_A", "alpha", "beta_res")
    assert dropped["beta_gpu"] == "one GPU kind only (h100)"
    assert dropped["beta_dtype"] == "one precision class only (fp16)"


def test_resolution_collinear_with_flops_when_steps_are_fixed() -> None:
    design = powerlaw.choose_design(_synthetic(steps=(25,)), IMAGE, powerlaw.PAPER_TERMS)
    assert "beta_res" not in design.terms
    reason = dict(design.dropped)["beta_res"]
    assert "collinear with alpha" in reason


def test_gpu_term_uses_the_most_measured_kind_as_reference() -> None:
    frame = _synthetic(gpus=("h100", "h200"))
    frame = pd.concat([frame, frame[frame["gpu"] == "h200"].assign(steps=lambda f: f["steps"] + 1)])
    design = powerlaw.choose_design(frame, IMAGE, powerlaw.PAPER_TERMS)
    assert design.gpu_reference == "h200"
    assert "beta_gpu_h100" in design.terms


def test_too_few_points_drop_terms_then_refuse() -> None:
    frame = _synthetic(n_res=2, steps=(10, 50))  # 4 points, one of them in fp32: 4 identifiable terms
    frame.loc[3, "precision"] = "fp32"
    design = powerlaw.choose_design(frame, IMAGE, powerlaw.PAPER_TERMS)
    assert len(frame) - len(design.terms) >= 1
    assert any("too few points" in r for _, r in design.dropped)
    with pytest.raises(powerlaw.NotIdentifiable, match="FLOPs do not vary"):
        powerlaw.choose_design(frame.assign(flops=1e12), IMAGE)
    with pytest.raises(powerlaw.NotIdentifiable, match="min_points"):
        powerlaw.fit_law(frame.head(3), IMAGE, scope="architecture", name="paper", optional=(), n_boot=0,
                     rng=np.random.default_rng(0), min_points=4)


def test_bootstrap_is_reproducible_from_the_seed() -> None:
    frame = _synthetic()
    frame["energy_j"] *= np.exp(np.random.default_rng(0).normal(0, 0.05, len(frame)))

    def fit(seed: int) -> powerlaw.LawFit:
        return powerlaw.fit_law(frame, IMAGE, scope="architecture", name="paper",
                                optional=powerlaw.PAPER_TERMS, n_boot=400,
                                rng=powerlaw.child_rng(seed, "image", "m"))

    assert fit(1).ci_low == fit(1).ci_low
    assert fit(1).ci_low != fit(2).ci_low


def test_law_round_trips_through_json_and_predicts_the_same() -> None:
    frame = _synthetic(gpus=("h100", "h200"), precisions=("fp16", "fp32"))
    frame["energy_j"] *= np.exp(np.random.default_rng(1).normal(0, 0.03, len(frame)))
    fit = powerlaw.fit_law(frame, IMAGE, scope="architecture", name="paper", optional=powerlaw.PAPER_TERMS,
                       n_boot=100, rng=np.random.default_rng(3))
    import json

    from diffusion_energy.laws.analysis_io import _clean

    back = powerlaw.law_from_dict(json.loads(json.dumps(_clean(fit.to_dict()))))
    a, b = fit.predict(frame, 0.9), back.predict(frame, 0.9)
    np.testing.assert_allclose(a.energy_j, b.energy_j)
    np.testing.assert_allclose(a.high_j, b.high_j)
    assert (a.low_j < a.energy_j).all() and (a.energy_j < a.high_j).all()


def test_prediction_interval_covers_new_draws_at_its_level() -> None:
    rng = np.random.default_rng(4)
    frame = _synthetic(n_res=6, steps=(5, 10, 20, 50))
    clean = frame["energy_j"].copy()
    frame["energy_j"] = clean * np.exp(rng.normal(0, 0.1, len(frame)))
    fit = powerlaw.fit_law(frame, IMAGE, scope="architecture", name="paper", optional=powerlaw.PAPER_TERMS,
                       n_boot=0, rng=rng)
    pred = fit.predict(frame, 0.9)
    hits = []
    for _ in range(200):
        new = clean * np.exp(rng.normal(0, 0.1, len(frame)))
        hits.append(np.mean((new >= pred.low_j) & (new <= pred.high_j)))
    assert 0.85 <= float(np.mean(hits)) <= 0.95


def test_stage_targets_model_the_denoiser_per_step() -> None:
    t = TARGETS["denoise_step"]
    frame = pd.DataFrame({"steps": [10, 20], "denoise_energy_j": [100.0, 200.0],
                          "denoise_flops_per_step": [1e12, 1e12], "denoise_kernels": [1e4, 2e4]})
    np.testing.assert_allclose(t.energy_j(frame), [10.0, 10.0])
    np.testing.assert_allclose(t.kernels(frame), [1e3, 1e3])
    assert TARGETS["vae_dynamic"].energy_col == "vae_dynamic_energy_j"
