"""Campaign subcommands: measure the next points of the grid in one GPU run, merge a run's tarball."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .measurement import simulated_output, simulated_selection

log = logging.getLogger(__name__)

#: Where a simulated campaign's table lives (never the workflow's reference_dir).
SIMULATED_SHIPPED = "results/simulated-measurements"


def _kinds_json(kinds: dict) -> str:
    """What identifies a GPU kind (as the workflow's measure jobs get it)."""
    return json.dumps({k: {f: v[f] for f in ("name_pattern", "slurm_gpu_model") if f in v}
                       for k, v in kinds.items()}, sort_keys=True)


def cmd_campaign_run(args: argparse.Namespace) -> int:
    """Plan and measure the next points of the grid on this machine's GPU, then pack one tarball."""
    simulated = simulated_selection(None)
    with simulated_output():
        return _campaign_run(args, simulated)


def _campaign_run(args: argparse.Namespace, simulated: str | None) -> int:
    from .. import grid
    from ..measurement import campaign, gpu, measure, simulated_gpu

    config = grid.load_config(args.config)
    grid.validate_config(config, workdir=Path.cwd())
    kinds = config.get("gpu_kinds", {})
    if simulated:
        kind = simulated_gpu.simulated_kind(simulated)
    else:
        local = gpu.local_kinds(kinds)
        if not local:
            raise gpu.GpuError(f"GPU not present: no configured GPU kind found (NVML names: "
                               f"{gpu.device_names() or 'none'}); set {simulated_gpu.ENV}=h200 to run the "
                               "campaign on the simulated H200")
        kind = local[0]
    shipped_dir = Path(args.shipped or (SIMULATED_SHIPPED if simulated else
                                        config.get("reference_dir", "resources/measurements")))
    root = Path.cwd()
    protocol = measure.Protocol.from_config(config.get("protocol"))
    shipped = campaign.read_shipped(shipped_dir, kind, root / "results" / "measurements" / ".journal")
    the_plan = campaign.plan(config, kind, shipped, measure.library_versions(), protocol)
    print(f"campaign on {kind}: {the_plan.points()} point(s) of the grid to measure in "
          f"{len(the_plan.todo)} job(s); {len(the_plan.done)} already in {shipped_dir}/{kind}.parquet"
          + (f"; {len(the_plan.redo)} shipped point(s) measured again (e.g. {next(iter(the_plan.redo))}: "
             f"{next(iter(the_plan.redo.values()))})" if the_plan.redo else ""))
    for model, points in the_plan.todo.items():
        print(f"  {model}: {len(points)} point(s): {grid.job_point_names(points)}")
    if args.plan_only or not the_plan.todo:
        if not the_plan.todo:
            print("nothing to measure: the grid is done on this GPU kind")
        return 0
    record = campaign.new_record(kind, args.budget_s, bool(simulated), the_plan)
    out = Path(args.out) / campaign.tarball_name(record)
    extra = [Path(p) for p in args.log]

    def pack() -> None:
        campaign.pack(record, root, out, extra)

    code = 0
    try:
        campaign.run_jobs(the_plan, record, json.dumps(config.get("protocol", {}), sort_keys=True),
                          _kinds_json(kinds), root, after_job=pack)
    except KeyboardInterrupt:
        record.stopped = "stopped (SIGINT or SIGTERM): every point measured so far is in the tarball"
        code = 130
    pack()
    measured = record.measured()
    print(f"this run: {len(measured)} point(s) measured in {len(record.jobs)} job(s), "
          f"{record.spent_s:.0f} of "
          f"{record.budget_s:.0f} s spent" + (f"; {record.stopped}" if record.stopped else ""))
    for job in record.jobs:
        s = job.summary
        print(f"  {job.model}: {s.get('measured', 0)} of {len(job.points)} measured, "
              f"{s.get('total_s', 0):.0f} s, "
              f"fixed cost {s.get('fixed_s', 0):.0f} s ({s.get('fixed_share', float('nan')):.0%})"
              + (f"; {s['stopped']}" if s.get("stopped") else f"; exit status {job.returncode}"))
    print(f"tarball: {out} ({out.stat().st_size / 1e6:.1f} MB); on a CPU machine: "
          f"diffusion-energy campaign-merge {out.name}" + (f" --into {shipped_dir}" if simulated else ""))
    return code


def cmd_campaign_merge(args: argparse.Namespace) -> int:
    """Check each run's tarball, merge its points into the shipped table, rewrite the datasheet."""
    from .. import grid
    from ..sources import campaign_merge

    config = grid.load_config(args.config)
    grid.validate_schema(config)
    reference_dir = Path(config.get("reference_dir", "resources/measurements"))
    protocol = config.get("protocol", {})
    expected = [(p.model, p.precision, p.resolution, p.steps, p.cfg, p.batch)
                for p in grid.grid_points(config)]
    failed = False
    for tarball in args.tarballs:
        simulated = str(campaign_merge.read_manifest(Path(tarball)).get("kind", "")).endswith("-simulated")
        into = Path(args.into or (SIMULATED_SHIPPED if simulated else reference_dir))
        report, merged = campaign_merge.merge_run(Path(tarball), into, config.get("gpu_kinds", {}),
                                                  reference_dir)
        tag = "simulated " if report.kind.endswith("-simulated") else ""
        sheet = campaign_merge.write_datasheet(merged, report.kind, into, protocol, expected)
        print(f"{tag}run {report.run_id} ({report.kind}) -> {into / (report.kind + '.parquet')}: "
              f"{len(report.added)} point(s) added, {len(report.replaced)} replaced (old rows kept in "
              f"{into / 'superseded'}), {len(report.unchanged)} already there, "
              f"{len(report.left_out)} left out; "
              f"table: {merged.drop_duplicates(campaign_merge.POINT_KEYS).shape[0] if len(merged) else 0} "
              f"point(s); datasheet {sheet}")
        if report.spreads:
            spreads = sorted(report.spreads)
            print(f"  {tag}repeat spread median {spreads[len(spreads) // 2]:.1%}, worst {spreads[-1]:.1%}; "
                  f"stage sums worst {max(report.stage_sums):.1%}; {len(report.flagged)} point(s) flagged "
                  "(kept with their flag)")
        for point, flag in report.flagged.items():
            print(f"  {tag}flagged: {point}: {flag}")
        for point, why in report.left_out.items():
            print(f"  {tag}left out: {point}: {why}")
        failed |= bool(report.left_out)
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("campaign-run", help="on a GPU machine: measure the next points of the grid not yet "
                                            "shipped, within a time budget; pack one tarball")
    p.add_argument("--config", default="config/config.yaml", help="grid, measure_order, protocol, gpu_kinds")
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="seconds of measuring in this run (virtual on the simulated GPU); no job starts "
                        "with less than 20 s left")
    p.add_argument("--out", default="results/campaign",
                   help="folder for the run's tarball ($OUT on a lent GPU)")
    p.add_argument("--shipped", help="folder of <kind>.parquet tables of points already measured "
                                     f"(default: the config's reference_dir; simulated: {SIMULATED_SHIPPED})")
    p.add_argument("--log", action="append", default=[],
                   help="a file to add to the tarball (e.g. gpu-check's output)")
    p.add_argument("--plan-only", action="store_true",
                   help="say what this run would measure, measure nothing")
    p.set_defaults(func=cmd_campaign_run)

    p = sub.add_parser("campaign-merge", help="check campaign runs' tarballs and merge them into the shipped "
                                              "table <kind>.parquet and its datasheet")
    p.add_argument("tarballs", nargs="+", help="campaign-<kind>-<time>.tar files, in the order they ran")
    p.add_argument("--into", help="folder of the shipped tables (default: the config's reference_dir; a "
                                  f"simulated run: another folder, e.g. {SIMULATED_SHIPPED})")
    p.add_argument("--config", default="config/config.yaml", help="gpu_kinds, the protocol and the grid")
    p.set_defaults(func=cmd_campaign_merge)
