"""Print the laws' goals beside what the run's held-out tables give, for the chosen law.

    python benchmarks/law_goals.py [--results results]

Reads results/laws/laws.json (the chosen law) and results/tables/{lomo,logo}_metrics.csv
(written by `snakemake results/laws/laws.json`). Each goal is a held-out figure of the one law
chosen for every GPU kind:

* H100, every architecture left out in turn, every batch size: median and P90 absolute
  error, Spearman's rho;
* every GPU kind left out in turn (entering by its datasheet only): median absolute error;
* H200, architectures never measured there: in the visible data the only architecture measured
  on an H200 is left out (so the H200 has no point in the fit): median and worst error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
#: (what, GPU kind, table, column, bound, "max" or "min").
GOALS = (
    ("H100 leave-one-model-out median", "h100", "lomo", "median_ape", 0.05, "max"),
    ("H100 leave-one-model-out P90", "h100", "lomo", "p90_ape", 0.12, "max"),
    ("H100 leave-one-model-out Spearman", "h100", "lomo", "spearman", 0.97, "min"),
    ("H200 architectures never measured there: median", "h200", "lomo", "median_ape", 0.10, "max"),
    ("H200 architectures never measured there: worst", "h200", "lomo", "max_ape", 0.30, "max"),
)
LOGO_MEDIAN = 0.10


def _fmt(column: str, value: float) -> str:
    return f"{value:.3f}" if column == "spearman" else f"{100 * value:.1f}%"


def goal_rows(results: Path) -> list[tuple[str, str, str, bool]]:
    """(goal, bound, value, met) for every goal, from a run's tables."""
    laws = json.loads((results / "laws" / "laws.json").read_text())
    entry = laws["pooled"]["image"]
    chosen, unseen = entry["selected"], entry["selected_unmeasured_gpu"]
    tables = {name: pd.read_csv(results / "tables" / f"{name}_metrics.csv") for name in ("lomo", "logo")}
    rows = []
    for what, gpu, table, column, bound, kind in GOALS:
        m = tables[table]
        r = m[(m["target"] == "image") & (m["candidate"] == chosen) & (m["gpu"] == gpu)
              & (m["held_out"] == "all")]
        if r.empty:
            rows.append((what, _fmt(column, bound), "not cross-validated", False))
            continue
        v = float(r.iloc[0][column])
        rows.append((f"{what} ({chosen})", f"{'<=' if kind == 'max' else '>='} {_fmt(column, bound)}",
                     _fmt(column, v), v <= bound if kind == "max" else v >= bound))
    logo = tables["logo"]
    logo = logo[(logo["target"] == "image") & (logo["candidate"] == unseen) & (logo["held_out"] != "all")]
    for _, r in logo.sort_values("held_out").iterrows():
        rows.append((f"{r['held_out']} left out, by its datasheet only: median ({unseen})",
                     f"<= {_fmt('median_ape', LOGO_MEDIAN)}", _fmt("median_ape", r["median_ape"]),
                     r["median_ape"] <= LOGO_MEDIAN))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(REPO / "results"))
    args = parser.parse_args()
    print("| goal | bound | held out | met |\n|---|---|---|---|")
    for what, bound, value, met in goal_rows(Path(args.results)):
        print(f"| {what} | {bound} | {value} | {'yes' if met else 'no'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
