"""The multi-GPU law (``laws.parallelism``): parameter recovery on points simulated from a known law,
physics bounds, held-out predictions that never see their architecture, and clear errors.

The simulated points are built on the attention work and datasheets of real
shapes (an H100 and a B200), so the features span what the shipped data span;
the workflow fits measured points only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffusion_energy.laws import parallelism
from diffusion_energy.sources import gpu_datasheets

SHEETS = {
    "h100": gpu_datasheets.Datasheet(989.4e12, 66.9e12, 3.35e12, 700.0, link_byte_s=900e9),
    "b200": gpu_datasheets.Datasheet(2250e12, 80e12, 8e12, 1000.0, link_byte_s=1800e9),
}
TRUTH = parallelism.ParallelLaw("image", replicated_share=0.12, ulysses_exposure=0.8, ring_exposure=1.5,
                                collective_latency_s=60e-6, n_points=0, models=(), gpus=(), sources=(),
                                rms_log=0.0)
SPLITS = [(2, 2, 1), (2, 1, 2), (4, 4, 1), (4, 2, 2), (4, 1, 4), (8, 8, 1), (8, 2, 4), (8, 1, 8)]


def _points(noise: float, seed: int = 0, law: parallelism.ParallelLaw = TRUTH
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points, attention work): six architectures on two kinds, each at one GPU and at every split,
    energies on N GPUs from ``law`` with log-normal noise."""
    rng = np.random.default_rng(seed)
    rows, work = [], []
    for m in range(6):
        attention_bytes, calls = 10 ** rng.uniform(9.5, 11), 10 ** rng.uniform(2.5, 3.5)
        for gpu in SHEETS:
            for batch in (1, 4):
                e1 = 10 ** rng.uniform(2.5, 3.5) / batch ** 0.2
                calls_b = calls / batch
                base = {"source": "published", "gpu": gpu, "model": f"m{m}", "precision": "bf16",
                        "resolution": 1024, "frames": 1, "steps": 50, "cfg": True, "batch": batch}
                rows.append({**base, "num_gpus": 1, "ulysses_degree": 1, "ring_degree": 1, "energy_j": e1})
                work.append((attention_bytes, calls_b))
                for n, u, r in SPLITS:
                    one = pd.DataFrame({"num_gpus": [n], "ulysses_degree": [u], "ring_degree": [r],
                                        "gpu": [gpu]})
                    f = parallelism.features(one, pd.DataFrame({"attention_bytes": [attention_bytes],
                                                                "attention_calls": [calls_b]}), SHEETS)
                    e = float(law.energy(np.array([e1]), np.array([n]), f)[0]) * np.exp(rng.normal(0, noise))
                    rows.append({**base, "num_gpus": n, "ulysses_degree": u, "ring_degree": r, "energy_j": e})
                    work.append((attention_bytes, calls_b))
    points = pd.DataFrame(rows)
    return points, pd.DataFrame(work, columns=["attention_bytes", "attention_calls"], index=points.index)


def _fit(points: pd.DataFrame, work: pd.DataFrame) -> parallelism.ParallelLaw:
    paired, unpaired = parallelism.pairs(points)
    assert unpaired.empty
    return parallelism.fit(paired, parallelism.features(paired, work.loc[paired.index], SHEETS), "image")


def test_the_constants_of_a_known_law_are_recovered() -> None:
    law = _fit(*_points(noise=0.01))
    assert law.replicated_share == pytest.approx(TRUTH.replicated_share, abs=0.02)
    assert law.ulysses_exposure == pytest.approx(TRUTH.ulysses_exposure, rel=0.3)
    assert law.ring_exposure == pytest.approx(TRUTH.ring_exposure, rel=0.3)
    assert law.collective_latency_s == pytest.approx(TRUTH.collective_latency_s, rel=0.3)
    assert law.rms_log < 0.02 and law.max_gpus == 8 and law.n_points == 6 * 2 * 2 * len(SPLITS)


def test_the_constants_stay_inside_physics() -> None:
    """Energies that fall with more GPUs (impossible: every GPU draws power) pull the share below 0 and
    the exposures negative; the bounds hold them at 0 and say the law adds nothing beyond one GPU."""
    points, work = _points(noise=0.0)
    multi = points["num_gpus"] > 1
    points.loc[multi, "energy_j"] = points.loc[multi, "energy_j"] * 0.0 + 1.0  # below any one-GPU energy
    law = _fit(points, work)
    for name in parallelism.PARAMS:
        low, high = parallelism.BOUNDS[name]
        assert low <= getattr(law, name) <= high, name
    assert law.replicated_share == pytest.approx(0.0, abs=1e-9)


def test_a_held_out_architecture_is_predicted_by_a_law_that_never_saw_it() -> None:
    points, work = _points(noise=0.05, seed=3)
    paired, _ = parallelism.pairs(points)
    feats = parallelism.features(paired, work.loc[paired.index], SHEETS)
    held = parallelism.leave_one_model_out(paired, feats, "image", None, 0.9)
    scrambled = paired.copy()
    mine = scrambled["model"] == "m0"
    scrambled.loc[mine, "energy_j"] *= 3.0  # what m0 measured cannot move its own held-out prediction
    again = parallelism.leave_one_model_out(scrambled, feats, "image", None, 0.9)
    ratio = held[held["held_out"] == "m0"]["ratio_predicted"].to_numpy()
    assert np.allclose(ratio, again[again["held_out"] == "m0"]["ratio_predicted"].to_numpy())
    assert held["ratio_ape"].median() < 0.1
    assert held["predicted_j"].isna().all(), "no one-GPU prediction given: no end-to-end figure"


def test_multi_gpu_points_without_a_one_gpu_point_are_listed_not_fitted() -> None:
    points, work = _points(noise=0.0)
    lone = points.index[(points["model"] == "m1") & (points["num_gpus"] == 1) & (points["gpu"] == "h100")]
    payload = parallelism.run(points.drop(index=lone), work.drop(index=lone), SHEETS, {}, 0.9)[2]
    assert len(payload["image"]["unpaired"]) == 2 * len(SPLITS)
    assert all("m1" in u and "h100" in u for u in payload["image"]["unpaired"])
    assert payload["video"]["status"] == "not fitted"


def test_points_on_a_kind_without_an_nvlink_figure_are_listed_not_fitted() -> None:
    points, work = _points(noise=0.0)
    sheets = {**SHEETS, "b200": gpu_datasheets.Datasheet(2250e12, 80e12, 8e12, 1000.0)}
    payload = parallelism.run(points, work, sheets, {}, 0.9)[2]
    assert len(payload["image"]["no_nvlink"]) == 6 * 2 * len(SPLITS)
    assert payload["image"]["gpus"] == ["h100"] and payload["image"]["n_points"] == 6 * 2 * len(SPLITS)


@pytest.mark.parametrize(("n", "u", "r", "expected"), [(4, None, None, (4, 1)), (4, 2, None, (2, 2)),
                                                       (8, None, 2, (4, 2)), (1, None, None, (1, 1))])
def test_degrees_default_to_ulysses_over_every_gpu(n: int, u: int | None, r: int | None,
                                                   expected: tuple[int, int]) -> None:
    assert parallelism.degrees(n, u, r) == expected


@pytest.mark.parametrize(("n", "u", "r"), [(4, 3, None), (4, 2, 4), (0, None, None), (6, None, 4)])
def test_degrees_that_do_not_multiply_to_the_gpus_are_refused(n: int, u: int | None, r: int | None) -> None:
    with pytest.raises(parallelism.ParallelError, match="--gpus|--ulysses-degree"):
        parallelism.degrees(n, u, r)


def test_a_file_that_is_not_multi_gpu_laws_is_refused_naming_it(tmp_path: Path) -> None:
    other = tmp_path / "laws.json"
    other.write_text(json.dumps({"schema_version": 2, "status": "ok"}))
    with pytest.raises(parallelism.ParallelError, match=str(other)):
        parallelism.read_laws(other)
    with pytest.raises(parallelism.ParallelError, match="no multi-GPU law for video"):
        parallelism.law_for({"kind": parallelism.KIND, "video": {"status": "not fitted",
                                                                 "reason": "no pairs"}}, "video")
