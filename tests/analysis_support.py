"""Shared data for the analysis tests: real FLOPs counted on meta, and energies simulated from them.

Simulated energies are for tests only (the workflow fits measurements or
nothing). The FLOPs, kernels and bytes are real: counted on the meta device for
the zoo's architectures. Counting the six real models takes a minute, so the
tables are kept in pytest's cache, keyed by everything that changes them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import simulate
from filelock import FileLock

from diffusion_energy.laws import analysis, analysis_io
from diffusion_energy.models import zoo
from diffusion_energy.sources import dataset

REPO = Path(__file__).resolve().parents[1]
REAL_MODELS = ("sd15", "sd21", "sdxl", "sd35-large", "flux-dev", "qwen-image")
REAL_RESOLUTIONS = (256, 512, 1024)
TINY_MODELS = ("tiny-sd", "tiny-sdxl", "tiny-sd3", "tiny-flux", "tiny-qwen")
TINY_RESOLUTIONS = (32, 64)


def _key(models: Sequence[str], resolutions: Sequence[int]) -> str:
    h = hashlib.sha256()
    for name in models:
        h.update(zoo.resolve_model_path(name).read_bytes())
    package = REPO / "workflow" / "diffusion_energy"
    for module in ("counting/flops.py", "models/zoo.py", *sorted(
            str(p.relative_to(package)) for p in (package / "models" / "families").glob("*.py"))):
        h.update((package / module).read_bytes())
    for dist in ("torch", "diffusers", "transformers"):
        h.update(importlib.metadata.version(dist).encode())
    h.update(repr((tuple(models), tuple(resolutions))).encode())
    return h.hexdigest()[:16]


_COUNTED: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}


def counted_flops(cache: pytest.Cache | None, models: Sequence[str], resolutions: Sequence[int]
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(FLOPs table, per-op table) of ``models``: counted once per session, and kept in pytest's
    cache (``request.config.cache``; None when the cache plugin is off) while it is current.
    A file lock makes parallel workers (pytest-xdist) count once and never read a half-written table."""
    key = _key(models, resolutions)
    if key in _COUNTED:
        return _COUNTED[key]
    if cache is None:
        _COUNTED[key] = simulate.count_flops(models, resolutions)
        return _COUNTED[key]
    folder = cache.mkdir(f"diffusion-energy-flops-{key}")
    with FileLock(str(folder / "counting.lock")):
        if not ((folder / "flops.parquet").is_file() and (folder / "ops.parquet").is_file()):
            table, ops = simulate.count_flops(models, resolutions)
            table.to_parquet(folder / "flops.parquet")
            ops.to_parquet(folder / "ops.parquet")
        _COUNTED[key] = pd.read_parquet(folder / "flops.parquet"), pd.read_parquet(folder / "ops.parquet")
    return _COUNTED[key]


def energy_table(measurements: pd.DataFrame, flops_table: pd.DataFrame) -> pd.DataFrame:
    """What the workflow's collect step makes of simulated measurements, ready for the analysis."""
    return analysis_io.usable_points(dataset.collect_energy(measurements, flops_table))


def paper_truth(models: Sequence[str], seed: int = 7, sigma_log: float = 0.02) -> simulate.PaperTruth:
    """Per-model intercepts and exponents in the paper's range, shared shifts."""
    rng = np.random.default_rng(seed)
    return simulate.PaperTruth(
        log_a={m: float(rng.uniform(-26.0, -24.0)) for m in models},
        alpha={m: float(rng.uniform(0.85, 1.0)) for m in models},
        beta_dtype=0.8, beta_gpu={"h200": -0.12}, beta_res=0.05, sigma_log=sigma_log,
    )


def shared_truth(models: Sequence[str], alpha: float = 0.9, log_a: float = -24.5, spread: float = 0.0,
                 seed: int = 3, sigma_log: float = 0.02) -> simulate.PaperTruth:
    """One law for every model (``spread``: s.d. of per-model intercept offsets)."""
    rng = np.random.default_rng(seed)
    return simulate.PaperTruth(
        log_a={m: log_a + float(rng.normal(0, spread)) for m in models}, alpha=dict.fromkeys(models, alpha),
        beta_dtype=0.8, beta_gpu={"h200": -0.12}, beta_res=0.0, sigma_log=sigma_log,
    )


def settings(bootstrap: int = 200) -> analysis.Settings:
    return analysis.Settings(bootstrap=bootstrap, seed=20261126, min_points=4, prediction_level=0.90)
