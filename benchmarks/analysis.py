"""Time the whole analysis: collect, cross-validate, fit, anchors and every figure, in one process.

    python benchmarks/analysis.py                       # simulated energies on the config's grid
    python benchmarks/analysis.py --measurements results/measurements.parquet \
        --flops results/flops.parquet --ops results/flops_ops.parquet   # real measurements

Without ``--measurements`` the energies are SIMULATED (roofline constants of an
H100 and an H200) on the grid of config/config.yaml, with the real FLOPs,
kernels and bytes of every architecture counted on the meta device; that is
enough to time the analysis, never to report a result. The FLOP counting is
not part of the timed analysis (the workflow does it once, in rule flops).
Settings (bootstrap resamples, seed, ...) come from the config's analysis block.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "tests"))  # simulate.py: measurement tables simulated from a known law

import simulate  # noqa: E402

from diffusion_energy import figures, grid  # noqa: E402
from diffusion_energy.counting.features import Point  # noqa: E402
from diffusion_energy.laws import analysis, analysis_io  # noqa: E402
from diffusion_energy.models.zoo import load_spec  # noqa: E402
from diffusion_energy.sources import anchors, dataset, gpu_datasheets  # noqa: E402


def _timed(label: str, fn: Callable[[], object], times: dict[str, float]) -> object:
    t0 = time.perf_counter()
    out = fn()
    times[label] = time.perf_counter() - t0
    print(f"  {label:<34s} {times[label]:7.2f} s", flush=True)
    return out


def simulated_inputs(
    config: dict, flops_path: str | None, ops_path: str | None, gpus: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(measurements, FLOPs table, per-op table): energies SIMULATED on the config's grid."""
    points = grid.grid_points(config)
    if flops_path and ops_path and Path(flops_path).is_file() and Path(ops_path).is_file():
        table, ops = pd.read_parquet(flops_path), pd.read_parquet(ops_path)
        print(f"FLOPs from {flops_path} and {ops_path}")
    else:
        models = sorted({p.model for p in points})
        resolutions = sorted({p.resolution for p in points})
        t0 = time.perf_counter()
        table, ops = simulate.count_flops(models, resolutions)
        print(
            f"FLOPs counted on meta for {len(models)} architectures in {time.perf_counter() - t0:.1f} s "
            "(not part of the analysis time)"
        )
    sim_points = [
        Point(g, p.model, load_spec(p.model).architecture, p.precision, p.resolution, p.steps, p.cfg, p.batch)
        for g in gpus
        for p in points
    ]
    truth = {
        "h100": simulate.RooflineTruth(),
        "h200": simulate.RooflineTruth(bandwidth_byte_per_s=4.0e12, idle_power_w=123.0),
    }
    measurements = simulate.simulate_roofline(
        sim_points, table, ops, {g: truth[g] for g in gpus}, np.random.default_rng(0)
    )
    return measurements, table, ops


def run(
    measurements: pd.DataFrame,
    table: pd.DataFrame,
    ops: pd.DataFrame,
    settings: analysis.Settings,
    outdir: Path,
    config: dict,
) -> dict[str, float]:
    times: dict[str, float] = {}
    energy = _timed(
        "collect", lambda: analysis_io.usable_points(dataset.collect_energy(measurements, table)), times
    )
    sheets = gpu_datasheets.datasheets(config.get("gpu_kinds", {}))
    points, inputs = analysis.prepare(energy, table, ops, sheets)
    print(
        f"  ({len(points)} points, {points['model'].nunique()} architectures, "
        f"{points['gpu'].nunique()} GPU kind(s), roofline at {inputs.granularity} granularity)"
    )
    cv = _timed(
        "cross-validate (LOMO + LOGO)", lambda: analysis.run_crossval(points, inputs, settings), times
    )
    payload, _ = _timed(
        f"fit (bootstrap {settings.bootstrap})",
        lambda: analysis.run_fit(points, inputs, cv["lomo_predictions"], cv["lomo_metrics"], settings,
                                 cv["logo_predictions"], cv["logo_metrics"], sheets),
        times,
    )
    published = anchors.read_published(REPO / "resources" / "anchors" / "published.csv")
    a_energy, a_laws = _timed(
        "anchors",
        lambda: (anchors.compare_energy(published, energy), anchors.compare_laws(published, payload)),
        times,
    )
    data = figures.FigureInputs(energy=energy, laws=payload, predictions=cv["lomo_predictions"],
                                metrics=cv["lomo_metrics"], anchor_energy=a_energy, anchor_laws=a_laws)
    for name in figures.FIGURE_NAMES:
        outs = [outdir / f"{name}.pdf", outdir / f"{name}.png"]
        _timed(f"figure {name}", lambda name=name, outs=outs: figures.draw(name, data, outs), times)
    m = cv["lomo_metrics"]
    overall = m[(m["held_out"] == "all") & (m["target"] == "image") & (m["gpu"] == "all")]
    if len(overall):
        print("leave-one-model-out, raw energy, all held-out points:")
        print(overall[["candidate", "spearman", "kendall", "median_ape", "p90_ape"]].to_string(index=False))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--measurements", help="a measurements table (default: simulate energies)")
    parser.add_argument("--flops", default=str(REPO / "results" / "flops.parquet"))
    parser.add_argument("--ops", default=str(REPO / "results" / "flops_ops.parquet"))
    parser.add_argument("--gpus", default="h100,h200", help="GPU kinds to simulate")
    parser.add_argument("--outdir", help="where the figures go (default: a temporary folder)")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    a = config.get("analysis", {})
    settings = analysis.Settings(
        bootstrap=a.get("bootstrap", 1000),
        seed=a.get("seed", 20261126),
        min_points=a.get("min_points", 3),
        prediction_level=a.get("prediction_level", 0.90),
    )
    if args.measurements:
        measurements = pd.read_parquet(args.measurements)
        table, ops = pd.read_parquet(args.flops), pd.read_parquet(args.ops)
        print(f"MEASURED energies from {args.measurements}")
    else:
        measurements, table, ops = simulated_inputs(config, args.flops, args.ops, args.gpus.split(","))
        print("SIMULATED energies (roofline constants; real FLOPs/kernels/bytes): timing only, not a result")
    with tempfile.TemporaryDirectory() as tmp:
        outdir = Path(args.outdir or tmp)
        t0 = time.perf_counter()
        times = run(measurements, table, ops, settings, outdir, config)
        total = time.perf_counter() - t0
    n_fig = len(figures.FIGURE_NAMES)
    print(
        f"analysis total (collect + cross-validate + fit + anchors + {n_fig} figures):"
        f" {total:.1f} s (sum of steps {sum(times.values()):.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
