"""The multi-GPU law against a lookup table, on the same held-out architectures.

    python benchmarks/multi_gpu_law.py [--results results]

Reads a run's ``results/tables/multi_gpu_predictions.csv`` (``rule parallel``). For each architecture
left out, the lookup table predicts its ratio (energy on N GPUs over one) as the median ratio of the
other architectures at the same modality, GPU count and Ulysses degree; the law's held-out ratio is
in the table. Both are scored on the ratio alone (one-GPU energy measured): median and 90th
percentile of the absolute percentage error, per modality. A table needs no physics but answers no
split, GPU kind or architecture nobody ran; the law is kept unless the table is clearly better.
Prints figures, writes nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SPLIT = ["modality", "num_gpus", "ulysses_degree"]


def lookup_errors(table: pd.DataFrame) -> pd.Series:
    """Held-out absolute percentage errors of the median-ratio table, aligned with ``table``."""
    out = pd.Series(np.nan, index=table.index)
    for model in table["held_out"].unique():
        mine = table["held_out"] == model
        medians = table[~mine].groupby(SPLIT)["ratio_measured"].median().rename("lookup")
        part = table[mine].join(medians, on=SPLIT)
        out[mine] = (part["lookup"] / part["ratio_measured"] - 1).abs()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(REPO / "results"))
    args = parser.parse_args()
    table = pd.read_csv(Path(args.results) / "tables" / "multi_gpu_predictions.csv")
    table = table.assign(lookup_ape=lookup_errors(table))
    print("held out by architecture, ratio to one GPU (one-GPU energy measured)")
    print(f"{'modality':<9}{'points':>8}{'law median':>12}{'law P90':>10}{'table median':>14}"
          f"{'table P90':>11}{'no table row':>14}")
    for modality, part in table.groupby("modality"):
        law, lookup = part["ratio_ape"], part["lookup_ape"].dropna()
        print(f"{modality:<9}{len(part):>8}{law.median():>12.1%}{law.quantile(0.9):>10.1%}"
              f"{lookup.median():>14.1%}{lookup.quantile(0.9):>11.1%}{len(part) - len(lookup):>14}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
