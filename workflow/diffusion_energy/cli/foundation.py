"""Subcommands of the foundation: the zoo, config validation and FLOP counting."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

# pandas, flops and the zoo's components import seconds of libraries: imported by the commands
# that use them, so that every command of this CLI starts fast.

log = logging.getLogger(__name__)


def _bools(text: str) -> list[bool]:
    values = {"1": True, "true": True, "0": False, "false": False}
    try:
        return [values[t.strip().lower()] for t in text.split(",")]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(f"expected 0/1/true/false, got {text!r}") from exc


def _ints(text: str) -> list[int]:
    """Comma-separated positive integers (a batch or resolution of 0 is refused by argparse)."""
    try:
        values = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def cmd_zoo(args: argparse.Namespace) -> int:
    """List the architectures with their components' parameter counts."""
    import pandas as pd

    from ..models import zoo

    rows = []
    for name in zoo.available_models():
        spec = zoo.load_spec(name)
        if spec.test_only and not args.all:
            continue
        for comp in spec.components:
            module = zoo.build_component(spec, comp, "meta")
            rows.append({"model": name, "component": comp.name, "stage": comp.stage,
                         "class": comp.class_path.rsplit(".", 1)[-1],
                         "params_m": round(zoo.count_parameters(module) / 1e6, 1)})
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .. import grid

    config = grid.load_config(args.config)
    grid.validate_config(config, workdir=Path.cwd())
    points = grid.grid_points(config)
    groups = grid.measurement_groups(points)
    print(f"{args.config}: valid; {len(points)} grid points in {len(groups)} measurement groups")
    for warning in grid.protocol_warnings(config, points):
        log.warning("%s: %s", args.config, warning)
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    from .. import atomic
    from ..counting import flops
    from ..models import zoo

    spec = zoo.load_spec(args.model)
    frame, ops = flops.count_model_ops(spec, args.resolutions, args.cfgs, args.batches, frames=args.frames)
    atomic.write_parquet(frame, args.out)
    if args.ops_out:
        atomic.write_parquet(ops, args.ops_out)
    log.info("wrote %d FLOP rows for %s to %s", len(frame), spec.name, args.out)
    return 0


def cmd_count_flops(args: argparse.Namespace) -> int:
    """Every model of the grid and of the measured or imported points, in one job."""
    from .. import atomic
    from ..counting import runner
    from ..errors import json_argument
    from ..models import zoo
    from ..sources import dataset

    requests = json_argument(args.requests, "--requests")
    known = zoo.available_models()
    unknown = sorted(set(requests) - set(known))
    if unknown:
        raise zoo.ZooError(f"--requests: model(s) {unknown} not in the zoo ({', '.join(known)})")
    points = dataset.read_measurements(args.points, models=known)
    shapes = runner.union(runner.shapes_from_requests(requests), runner.shapes_from_points(points))
    counted = runner.count_all(shapes, args.jobs)
    table, ops = runner.merge(counted)
    atomic.write_parquet(table, args.out)
    atomic.write_parquet(ops, args.ops_out)
    for c in sorted(counted, key=lambda c: -c.seconds):
        log.info("%-18s %3d shapes  %5.1f s", c.model, len(shapes[c.model]), c.seconds)
    log.info("counted %d models (%d shapes) with %d process(es) -> %s", len(counted),
             sum(len(s) for s in shapes.values()), args.jobs, args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the architectures and their parameter counts")
    p.add_argument("--all", action="store_true", help="include the tiny test models")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("validate-config", help="check a workflow config and count its grid")
    p.add_argument("--config", default="config/config.yaml")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("flops", help="count per-stage FLOPs, kernels and bytes of one model")
    p.add_argument("--model", required=True, help="zoo name or path to an architecture file")
    p.add_argument("--resolutions", type=_ints, required=True, help="e.g. 256,512")
    p.add_argument("--cfgs", type=_bools, default=[True], help="e.g. 1 or 0,1")
    p.add_argument("--batches", type=_ints, default=[1])
    p.add_argument("--frames", type=_ints, default=None,
                   help="frames per video, e.g. 49,81 (default: the model's usual; 1 for an image model)")
    p.add_argument("--out", required=True)
    p.add_argument("--ops-out", help="also write the per-op table (for the roofline model)")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("count-flops", help="count every model of the grid and of the points, in one job")
    p.add_argument("--requests", default="{}",
                   help="JSON: model -> {resolutions, cfgs, batches} (the grid's; see grid.flops_requests)")
    p.add_argument("--points", nargs="*", default=[],
                   help="measurement tables (shipped, imported) whose points need FLOPs too")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (models are counted in parallel)")
    p.add_argument("--out", required=True)
    p.add_argument("--ops-out", required=True, help="the per-op table (for the roofline model)")
    p.set_defaults(func=cmd_count_flops)


__all__ = ["register"]
