"""Data-source subcommands: import a published source into measurement rows."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def cmd_import_public(args: argparse.Namespace) -> int:
    from .. import atomic, grid
    from ..errors import json_argument
    from ..sources import importing

    frame = importing.import_source(args.path, json_argument(args.upstream_models, "--upstream-models"),
                                    grid.gpu_kinds_settings(args.gpu_kinds), args.format)
    if frame["source"].iloc[0] != args.source:
        raise importing.SourceError(f"{args.path}: its source.yaml names the source "
                                    f"{frame['source'].iloc[0]!r}, the config {args.source!r}")
    atomic.write_parquet(frame, args.out)
    counts = frame.groupby(["gpu", "model"]).size()
    log.info("%s: %d points -> %s\n%s", args.source, len(frame), args.out, counts.to_string())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-public", help="import a published source's files as measurement rows")
    p.add_argument("--source", required=True, help="the source's name (config public_sources)")
    p.add_argument("--path", required=True, help="its folder (with source.yaml)")
    p.add_argument("--format", help="upstream format (default: source.yaml's)")
    p.add_argument("--upstream-models", required=True, help="JSON: upstream model id -> zoo name")
    p.add_argument("--gpu-kinds", required=True, help="JSON of the config's gpu_kinds block")
    p.add_argument("--out", required=True, help="parquet to write")
    p.set_defaults(func=cmd_import_public)
