"""Measurement subcommands: measure a group of grid points, merge, collect."""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from . import atomic, dataset

log = logging.getLogger(__name__)


def cmd_merge(args: argparse.Namespace) -> int:
    merged = dataset.write_merged(args.reference, args.local, args.out)
    log.info("%d rows (%d from %d shipped files, %d local files) -> %s", len(merged),
             len(dataset.read_measurements(args.reference)), len(args.reference),
             len(args.local), args.out)
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    energy = dataset.collect_energy(pd.read_parquet(args.measurements), pd.read_parquet(args.flops))
    atomic.write_parquet(energy, args.out)
    log.info("%d grid points with GPU energy -> %s", len(energy), args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge-measurements",
                       help="merge the shipped reference dataset with local measurements")
    p.add_argument("--reference", nargs="*", default=[], help="shipped parquet files")
    p.add_argument("--local", nargs="*", default=[], help="locally measured point files")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("collect", help="one row per measured point, joined with FLOPs")
    p.add_argument("--measurements", required=True)
    p.add_argument("--flops", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_collect)
