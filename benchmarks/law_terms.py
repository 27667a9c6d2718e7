"""Which terms of the pooled laws earn their place: each removed in turn, judged on held-out errors.

    python benchmarks/law_terms.py [--results results] [--workers 2]

Reads a run's ``results/energy.parquet``, ``flops.parquet`` and ``flops_ops.parquet`` and the
config's GPU datasheets, and fits the roofline model across GPU kinds (``laws/roofline.Terms``) with
every term, then without each one (attention and convolutions at rates of their own, attention's
exponentials at a fitted rate, a factor per GPU kind, the trend in the datasheet peak across kinds,
the energy trend in J/FLOP, a factor per software stack), and
the power laws with and without their terms (kernel launches; the paper's resolution term). Each
variant is a fixed design, so its held-out errors (each architecture, then each GPU kind, left out
in turn) need no nesting: nothing in it is chosen from them.

A term earns its place where removing it raises the mean absolute log error per held-out
architecture (each counts once) by more than one standard error of that change over the
architectures (paired); the table prints both. Prints figures, writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from diffusion_energy.laws import analysis, nested, powerlaw, roofline  # noqa: E402
from diffusion_energy.laws.crossval import Candidate  # noqa: E402
from diffusion_energy.laws.targets import TARGETS  # noqa: E402
from diffusion_energy.sources import gpu_datasheets  # noqa: E402

TARGET = TARGETS["image"]
#: Roofline variants: name -> the terms.
ROOFLINE_VARIANTS = {
    "all terms": roofline.Terms(),
    "without class efficiencies": roofline.Terms(class_efficiencies=False),
    "without a fitted exponential rate": roofline.Terms(exponentials=False),
    "without kind factors": roofline.Terms(kind_factors=False),
    "without the trend in the peak": roofline.Terms(trend=False),
    "without the energy trend": roofline.Terms(energy_trend=False),
    "without stack factors": roofline.Terms(stack_factors=False),
}
#: Power-law variants: name -> the optional terms (beside log_A and alpha).
POWER_LAW_VARIANTS = {
    "flops_kernels": ("beta_dtype", "beta_gpu", "beta_source", "gamma_kernels"),
    "flops_kernels without kernels (= flops)": ("beta_dtype", "beta_gpu", "beta_source"),
    "paper": (*powerlaw.PAPER_TERMS, "beta_source"),
    "paper without the resolution term": tuple(t for t in (*powerlaw.PAPER_TERMS, "beta_source")
                                               if t != "beta_res"),
}


def _inputs(results: Path) -> tuple[pd.DataFrame, roofline.RooflineInputs]:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    sheets = {k: gpu_datasheets.Datasheet.from_config(v["datasheet"])
              for k, v in config.get("gpu_kinds", {}).items() if v.get("datasheet")}
    energy = pd.read_parquet(results / "energy.parquet")
    points, inputs = analysis.prepare(energy, pd.read_parquet(results / "flops.parquet"),
                                      pd.read_parquet(results / "flops_ops.parquet"), sheets)
    rows = analysis.law_points(points)
    return rows, inputs.subset(rows["point_id"].to_numpy())


def candidates(inputs: roofline.RooflineInputs, settings: analysis.Settings, unseen: bool) -> list[Candidate]:
    """Every variant as a candidate (its name the variant's)."""
    out = []
    for name, terms in ROOFLINE_VARIANTS.items():
        def fit(train: pd.DataFrame, terms: roofline.Terms = terms) -> object:
            rf = roofline.fit_roofline(analysis.enough(train, TARGET, settings), inputs, TARGET, by_gpu=False,
                                       name=analysis.ROOFLINE, gpu_factors=True, terms=terms)
            return analysis._BoundRoofline(rf, inputs)
        out.append(Candidate(f"roofline {name}", "", fit))
    for name, terms in POWER_LAW_VARIANTS.items():
        optional = analysis.unseen_gpu_terms(terms) if unseen else terms
        out.append(Candidate(name, "", lambda tr, o=optional: powerlaw.fit_law(
            tr, TARGET, scope="pooled", name="variant", optional=o, n_boot=0, rng=np.random.default_rng(0),
            min_points=settings.min_points)))
    return out


def per_group(predictions: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute log error per (candidate, held-out group)."""
    return (predictions.assign(err=predictions["log_ratio"].abs())
            .pivot_table(index="held_out", columns="candidate", values="err", aggfunc="mean"))


def report(predictions: pd.DataFrame, reference: dict[str, str], what: str) -> None:
    errors = per_group(predictions)
    print(f"\n{what}: median / P90 absolute error over points; mean |log error| per held-out group; "
          "the change against the full model, paired over the groups, +- its standard error")
    print("| variant | points | median | P90 | mean per group | change | +- SE | earns its place |")
    print("|---|---|---|---|---|---|---|---|")
    for cand, part in predictions.groupby("candidate", sort=False):
        ape = part["ape"].astype(float)
        ref = reference.get(cand, cand)
        diff = (errors[ref] - errors[cand]).dropna() if ref != cand else pd.Series(dtype=float)
        change = f"{-diff.mean():+.3f}" if len(diff) else ""
        se = f"{diff.std(ddof=1) / np.sqrt(len(diff)):.3f}" if len(diff) > 1 else ""
        # diff is the full model's error minus the variant's: removing the term costs -diff.
        earns = ("yes" if len(diff) > 1 and -diff.mean() > diff.std(ddof=1) / np.sqrt(len(diff)) else "no"
                 if len(diff) > 1 else "")
        print(f"| {cand} | {len(part)} | {100 * ape.median():.1f}% | {100 * np.percentile(ape, 90):.1f}% | "
              f"{errors[cand].mean():.3f} | {change} | {se} | {earns} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(REPO / "results"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows, inputs = _inputs(Path(args.results))
    settings = analysis.Settings(workers=args.workers)
    level = settings.prediction_level
    # The full model each variant is compared with ("earns its place": removing it costs more than noise).
    reference = {f"roofline {n}": "roofline all terms" for n in ROOFLINE_VARIANTS}
    reference.update({"flops_kernels without kernels (= flops)": "flops_kernels",
                      "paper without the resolution term": "paper"})
    start = time.perf_counter()
    for by, unseen, what in (("model", False, "Architectures left out"), ("gpu", True, "GPU kinds left out")):
        folds = nested.fold_predictions(rows, by, candidates(inputs, settings, unseen), TARGET, level,
                                        inner=False, workers=args.workers)
        report(nested.outer(folds), reference, what)
    kinds = ", ".join(sorted(set(rows["gpu"].astype(str))))
    print(f"\n{time.perf_counter() - start:.0f} s; {len(rows)} points, {rows['model'].nunique()} "
          f"architectures, GPU kinds {kinds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
