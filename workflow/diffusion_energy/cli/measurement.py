"""Measurement subcommands: measure a group of grid points, merge, collect."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas, the dataset and measure (torch) are imported by the commands that use them
    import pandas as pd

    from ..measurement.journal import Expected

log = logging.getLogger(__name__)


def process_age_s() -> float:
    """Seconds since this process started (interpreter start and imports included)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return time.time() - (boot + start)
    except (OSError, ValueError, IndexError, StopIteration):
        return float("nan")


def _journal_ok(path: Path, expected: Expected) -> bool:
    """A journaled point is reused only if it is what this job would measure now
    (``measurement.journal.verdict``: measured energy, same GPU, protocol and versions)."""
    from ..measurement import journal

    return journal.verdict(path, expected).reuse


def claim_gpu(stack: contextlib.ExitStack, kind: str, gpu_kinds: dict, lock_timeout_s: float = 0.0,
              allow_shared: bool = False) -> str:
    """Make CUDA device 0 this job's, or refuse; return its UUID.

    The order matters: the GPU is found and locked through NVML before this process
    creates a CUDA context, so the busy check cannot see the job's own context; then
    the kind is checked through CUDA and both must name the same device.
    """
    from ..measurement import gpu, gpulock

    try:
        uuid = gpu.nvml_uuid_of_cuda_device(0)
    except gpu.GpuError as exc:
        raise gpu.GpuError(f"this job measures a {kind} GPU: {exc}") from exc
    stack.enter_context(gpulock.exclusive_gpu(uuid, timeout_s=lock_timeout_s))
    busy = gpu.other_processes(uuid)
    if busy and not allow_shared:
        raise gpu.GpuError(f"GPU {uuid} is in use by process(es) {busy}; energy would "
                           "include their work (or pass --allow-shared-gpu)")
    gpu.check_kind(kind, gpu_kinds)
    if gpu.cuda_uuid(0) != uuid:
        raise gpu.GpuError(f"CUDA device 0 is {gpu.cuda_uuid(0)}, NVML's is {uuid}: "
                           "set CUDA_DEVICE_ORDER=PCI_BUS_ID")
    return uuid


def simulated_selection(gpu_kind: str | None) -> str | None:
    """The simulated GPU's selector (``DIFFUSION_ENERGY_SIMULATED_GPU``, e.g. ``h200``), or None for a
    real GPU; with ``gpu_kind`` (a measure job's), refuses a kind that is not the selection's
    (``check_simulated_kind``): simulated rows never carry a real kind."""
    from ..measurement import bench

    selector = bench.simulated_kind()
    if gpu_kind is not None:
        check_simulated_kind(selector, gpu_kind)
    return selector


class _Labelled(logging.Filter):
    """Starts every log message with the simulated kind."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.label):
            record.msg = f"{self.label}{record.msg}"
        return True


class _LabelledLines:
    """A text stream whose every line starts with the simulated kind."""

    def __init__(self, stream: Any, label: str) -> None:
        self.stream, self.label, self._start = stream, label, True

    def write(self, text: str) -> int:
        out = []
        for piece in text.splitlines(keepends=True):
            out.append((self.label if self._start else "") + piece)
            self._start = piece.endswith("\n")
        self.stream.write("".join(out))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def simulated_output() -> Iterator[None]:
    """While a simulated GPU is selected, every line the command logs or prints starts with
    ``[h200-simulated]``: a simulated run's output can never be read as a real GPU's."""
    from ..measurement import simulated_gpu

    kind = simulated_gpu.simulated_kind()
    if not kind or isinstance(sys.stdout, _LabelledLines):
        yield
        return
    label = f"[{kind}] "
    stdout, stderr = sys.stdout, sys.stderr
    handlers = logging.getLogger().handlers
    tag = _Labelled(label)
    sys.stdout, sys.stderr = _LabelledLines(stdout, label), _LabelledLines(stderr, label)
    for handler in handlers:
        handler.addFilter(tag)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        for handler in handlers:
            handler.removeFilter(tag)


def cmd_measure(args: argparse.Namespace) -> int:
    """Measure a group's points; reuse journaled ones only once this job's GPU is claimed and they
    match it (``measurement.journal``); every point is journaled before it is written as output."""
    _stop_on_sigterm()
    simulated = simulated_selection(args.gpu)
    with simulated_output():
        return _measure(args, simulated)


def _measure(args: argparse.Namespace, simulated: str | None) -> int:
    from .. import atomic, grid
    from ..measurement import journal, measure
    from ..models import zoo
    from ..sources import dataset

    spec = zoo.load_spec(args.model)
    points = job_points(spec, args.points, args.precision)
    for p in points:
        spec.check_resolution(p.resolution)
    precisions = list(dict.fromkeys(p.precision for p in points))
    protocol = measure.Protocol.from_config(grid.protocol_settings(args.protocol), "--protocol")
    kinds = grid.gpu_kinds_settings(args.gpu_kinds)
    outdir = Path(args.outdir)
    journal_dir = Path(args.journal) if args.journal else outdir / ".journal"

    timings = measure.JobTimings()
    reused: list[str] = []
    remeasured: dict[str, str] = {}
    warnings: list[str] = []
    todo = []
    with contextlib.ExitStack() as stack:
        # The GPU first: nothing journaled is copied into the outputs before this job knows it
        # runs on the right GPU (a refused job leaves no output behind).
        uuid = None if args.device == "cpu" or simulated else claim_gpu(
            stack, args.gpu, kinds, args.lock_timeout, args.allow_shared_gpu)
        code = journal.measurement_code(spec.name)
        expected = journal.Expected.of(args.gpu, uuid, protocol, measure.library_versions(), code)
        superseded = set()
        for p in points:
            saved = grid.measurement_path(journal_dir, args.gpu, p)
            if args.fresh:
                if saved.exists():
                    superseded.add(p)
                todo.append(p)
                continue
            verdict = journal.verdict(saved, expected)
            name = f"{p.precision}/{p.slug}"
            if verdict.reuse:
                log.info("%s: reusing the journaled measurement %s", name, saved)
                with atomic.atomic_path(grid.measurement_path(outdir, args.gpu, p)) as tmp:
                    shutil.copyfile(saved, tmp)
                reused.append(name)
                continue
            if saved.exists():
                remeasured[name] = verdict.reason
                if verdict.warning:
                    log.warning("%s: %s", name, verdict.reason)
                    warnings.append(f"{name}: {verdict.reason}")
                else:
                    log.info("%s: measuring the journaled point again: %s", name, verdict.reason)
                if verdict.measured or verdict.warning:
                    superseded.add(p)
            todo.append(p)

        where = _bench(args.device, simulated, uuid, protocol,
                       outdir / args.gpu / spec.name / "_windows.csv") if todo else None
        measured: list[str] = []
        stopped = ""
        spent: list[tuple[float, float]] = []  # the job's time and the next point's need when stopped
        last: list[tuple[Any, float]] = []  # the last measured point and its time per image

        def out_of_time(point: Any) -> bool:
            if args.budget_s is None:
                return False
            need = 0.0
            if last:
                period = getattr(where.meter, "info", None)
                need = measure.point_estimate_s(spec, point, last[-1][0], last[-1][1], protocol,
                                                period.period_s if period else 0.0)
            if where.total_s() + need >= args.budget_s:
                spent.append((where.total_s(), need))
                return True
            return False

        found = measure.measure_group(spec, todo, args.gpu, where.meter, protocol, where.device,
                                      where.context, timings, stop=out_of_time,
                                      **where.run_kwargs) if where else iter(())
        try:
            for point, rows in found:
                frame = dataset.conform(rows.assign(protocol=journal.protocol_text(protocol),
                                                    measurement_code=code))
                dataset.check_measurements(frame, point.slug)
                saved = grid.measurement_path(journal_dir, args.gpu, point)
                with _interrupts_deferred():  # a point is journaled, written and counted, or none of it
                    if point in superseded:
                        journal.supersede(saved)
                    # The journal first: if the output cannot be written (a full disk), the
                    # measurement is kept and a rerun reuses it.
                    journal.write(frame, saved, asdict(protocol))
                    atomic.write_parquet(frame, grid.measurement_path(outdir, args.gpu, point))
                    measured.append(f"{point.precision}/{point.slug}")
                image = frame[(frame["stage"] == "image") & (frame["status"] == "ok")]
                if len(image):
                    last.append((point, float(image["time_s"].median())))
            if spent:
                now, need = spent[0]
                stopped = (f"stopped at its time budget ({now:.0f} of {args.budget_s:g} s spent"
                           + (f", the next point needs about {need:.0f} s" if need else "") + f") after "
                           f"{len(measured)} of {len(todo)} point(s) to measure; "
                           f"{'they are' if measured else 'nothing is'} in the journal {journal_dir}")
        except KeyboardInterrupt:  # SIGINT, or SIGTERM (see _stop_on_sigterm): every measured point is kept
            stopped = (f"stopped after {len(measured)} of {len(todo)} point(s) to measure; "
                       f"{'they are' if measured else 'nothing is'} in the journal {journal_dir} "
                       "(a rerun measures the rest)")
    if args.summary:
        total = where.total_s() if where else process_age_s()
        summary = {"model": spec.name, "precision": ",".join(precisions), "gpu": args.gpu,
                   "points": len(points), "measured": len(measured), "measured_points": measured,
                   "reused": reused,
                   "remeasured": remeasured, "warnings": warnings, "stopped": stopped,
                   "startup_s": where.startup_s() if where else process_age_s(),
                   "total_s": total, **asdict(timings)}
        fixed = timings.fixed_s(total)
        summary["fixed_s"] = fixed
        summary["fixed_share"] = fixed / total if total > 0 else float("nan")
        atomic.write_text(json.dumps(summary, indent=2) + "\n", args.summary)
    if stopped:
        print(f"diffusion-energy measure: {stopped}", file=sys.stderr)
        return 130
    return 0


def job_points(spec: Any, names: str, precision: str | None) -> list[Any]:
    """The points of a measure job, in its order: ``fp16/512px_10steps_cfg1_b1,fp32/...`` (a job
    measures a model in all its precisions), or bare names with ``--precision``."""
    from .. import grid
    from ..errors import UsageError

    points = []
    for name in names.split(","):
        given, sep, slug = name.strip().rpartition("/")
        if not sep and precision is None:
            raise UsageError(f"--points: {name!r} names no precision: write {spec.default_precision}/{name} "
                             "(or pass --precision for every point)")
        chosen = spec.precision(given if sep else precision)
        if sep and precision is not None and chosen != spec.precision(precision):
            raise UsageError(f"--points: {name!r} is {chosen}, but --precision says {precision}")
        points.append(grid.GridPoint.from_slug(spec.name, chosen, slug))
    if len(set(points)) != len(points):
        raise UsageError(f"--points: a point is named twice in {names!r}")
    return points


def check_simulated_kind(setting: str | None, requested: str) -> None:
    """A simulated GPU measures only as its own kind (``h200`` -> ``h200-simulated``): ``--gpu h100``
    (e26a971: rows saying gpu h100 and gpu_name "NVIDIA H200 (simulated)") or ``--gpu h200`` (a real
    kind) is refused, and so is a simulated kind without the simulated GPU."""
    from ..errors import UsageError
    from ..measurement import simulated_gpu

    kind = simulated_gpu.simulated_kind(setting or "")
    if kind and requested != kind:
        cal = simulated_gpu.calibration(setting or "")
        raise UsageError(f"{simulated_gpu.ENV}={setting!r} simulates an {cal.gpu_name}, whose rows are "
                         f"kind {kind}: it cannot measure --gpu {requested} (its rows would stand in for a "
                         f"real GPU's); pass --gpu {kind} (or unset {simulated_gpu.ENV} on a machine "
                         f"with a real {requested} GPU)")
    if not kind and simulated_gpu.is_simulated_kind(requested):
        raise UsageError(f"--gpu {requested} is a simulated GPU's kind: set {simulated_gpu.ENV}="
                         f"{requested.removesuffix(simulated_gpu.KIND_SUFFIX)} to measure it")


@contextlib.contextmanager
def _interrupts_deferred() -> Any:
    """SIGINT and SIGTERM wait until the block is done, then stop the job as usual (KeyboardInterrupt):
    a signal between a point's journal entry and its output left the job's summary a point short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.signal(s, lambda signum, _frame: pending.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    if pending:
        raise KeyboardInterrupt


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's time limit) stops a job as SIGINT does: the points measured so far
    are kept, and the job ends with one line."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def _bench(device: str, simulated: str | None, uuid: str | None, protocol: Any,
           windows_log: Path) -> Any:
    """The meter and host the job measures with: the CPU (time only), a simulated GPU or the GPU."""
    from ..measurement import bench, energy, gpu

    if device == "cpu" and not simulated:
        return bench.Bench(energy.TimeOnlyMeter(), "cpu", lambda: {},  # type: ignore[arg-type]
                           process_age=process_age_s, started_s=process_age_s())
    windows_log.parent.mkdir(parents=True, exist_ok=True)
    if simulated:
        return bench.simulated_bench(simulated, protocol, windows_log)
    return bench.gpu_bench(uuid, lambda: {**gpu.snapshot(uuid), "gpu_index": 0}, protocol, windows_log,
                           process_age_s)


DEFAULT_CHECK_POINTS = "256px_10steps_cfg1_b1,512px_10steps_cfg1_b1,512px_25steps_cfg1_b1"


def cmd_gpu_check(args: argparse.Namespace) -> int:
    """Measure a few small points with the measure job's protocol, within ``--time-cap`` seconds; print
    what a setup check needs and end with one verdict line: ready, or not ready and why (exit status 1).
    On the simulated GPU every line starts with its kind (``[h200-simulated]``)."""
    _stop_on_sigterm()
    simulated = simulated_selection(None)
    with simulated_output():
        return _gpu_check(args, simulated)


def _gpu_check(args: argparse.Namespace, simulated: str | None) -> int:
    import pandas as pd

    from .. import atomic, grid
    from ..measurement import gpu, measure, simulated_gpu
    from ..models import zoo
    from ..sources import dataset

    config = grid.load_config(args.config)
    grid.validate_schema(config)
    kinds = config.get("gpu_kinds", {})
    sim = simulated_gpu.calibration(simulated) if simulated else None
    local = [simulated_gpu.simulated_kind(simulated)] if simulated else gpu.local_kinds(kinds)
    if not local:
        raise gpu.GpuError(f"GPU not present: no configured GPU kind found (NVML names: "
                           f"{gpu.device_names() or 'none'}); to try the check without a GPU, run it on the "
                           f"simulated H200 (calibrated on a real run): {simulated_gpu.ENV}=h200 "
                           "diffusion-energy gpu-check")
    kind = local[0]
    spec = zoo.load_spec(args.model)
    precision = spec.precision(args.precision)
    points = [grid.GridPoint.from_slug(spec.name, precision, s) for s in args.points.split(",")]
    protocol = measure.Protocol.from_config(config.get("protocol"))
    timings = measure.JobTimings()
    frames = []

    def say(line: str) -> str:
        """The verdict, saying so when the GPU was simulated."""
        if not sim:
            return line
        head, _, rest = line.partition(":")
        return (f"{head} on the simulated {sim.gpu_name} ({simulated_gpu.ENV}={simulated}; "
                f"not a real GPU):{rest}")

    with contextlib.ExitStack() as stack:
        try:
            uuid = None if sim else claim_gpu(stack, kind, kinds)
        except gpu.GpuError as exc:
            if "in use by" not in str(exc):
                raise
            print(say(f"not ready: GPU busy: {exc}"))
            return 1
        where = _bench("cuda", simulated, uuid, protocol, Path(args.windows_log))
        marks = [where.total_s()]  # the job's time after its probes, then after each point

        def out_of_time(_point: Any) -> bool:
            """A point would end past the cap (the first always runs: it sizes the others)."""
            if len(marks) < 2:
                return False
            per_point = statistics.median(b - a for a, b in zip(marks, marks[1:], strict=False))
            return where.total_s() + per_point > args.time_cap

        try:
            for _, rows in measure.measure_group(spec, points, kind, where.meter, protocol, where.device,
                                                 where.context, timings, **where.run_kwargs,
                                                 stop=out_of_time):
                frames.append(dataset.conform(rows))
                marks.append(where.total_s())
        except KeyboardInterrupt:
            print(say(f"not ready: stopped after {len(frames)} of {len(points)} point(s)"))
            return 130
    table = pd.concat(frames, ignore_index=True)
    if args.out:
        atomic.write_parquet(table, args.out)
    snap = where.context()
    info, physics = where.meter.info, where.meter.physics
    noise = where.run_kwargs.get("host_noise", math.nan)
    print(f"GPU: {snap['gpu_name']} ({snap['gpu_uuid']}), driver {snap['driver_version']}, power limit "
          f"{snap['power_limit_w']:.0f} W, kind {kind}")
    print(f"energy counter: updates every {info.period_s * 1e3:.1f} ms (+-{info.jitter_s * 1e3:.1f} ms), "
          f"unit {info.resolution_j * 1e3:g} mJ; {physics.describe()}")
    print(f"read through: {where.meter.provenance}")
    print(f"host noise: {noise:.1%} (a repeat more than {table['remeasure_tolerance'].iloc[0]:.1%} off its "
          "stage's median time is measured again)")
    idle_w = table["idle_power_w"].dropna().median()
    print(f"idle power: {idle_w:.1f} W")
    image = table[(table["stage"] == "image") & (table["status"] == "ok")]
    summary = image.groupby(["resolution", "steps", "cfg"]).agg(
        j_per_image=("energy_j", "median"), s_per_image=("time_s", "median"),
        repeat_spread=("repeat_spread", "first"),
        stage_sum_error=("stage_sum_error", lambda v: v.abs().median()),
        flag=("flag", "first")).reset_index()
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    total = where.total_s()
    fixed = timings.fixed_s(total)
    print(f"job wall time {total:.1f} s (cap {args.time_cap:.0f} s): start-up and imports "
          f"{where.startup_s():.1f} s, "
          f"build {timings.build_s:.1f} s, idle {timings.idle_s:.1f} s, "
          f"text/VAE windows {timings.shared_stages_s:.1f} s, warm-up {timings.warmup_s:.1f} s, "
          f"image repeats {timings.repeats_s:.1f} s; fixed cost {fixed:.1f} s ({fixed / total:.0%})")
    failed = table[table["status"] != "ok"].drop_duplicates("resolution")
    measured = table.drop_duplicates(["resolution", "steps", "cfg", "batch"])
    line = verdict(summary, failed, idle_w, float(snap.get("power_limit_w", math.nan)), protocol,
                   physics.problem(), (len(measured), len(points), args.time_cap))
    print(say(line))
    return 0 if line.startswith("ready") else 1


def verdict(summary: pd.DataFrame, failed: pd.DataFrame, idle_w: float, power_limit_w: float,
            protocol: Any, counter_problem: str = "", coverage: tuple[int, int, float] | None = None) -> str:
    """One line: ready, or not ready because of a busy GPU, a counter whose physics cannot be corrected,
    points not measured (or not reached within the time cap), a repeat spread over the protocol's
    ``spread_flag`` or stage sums over its ``stage_sum_tolerance``."""
    if math.isfinite(idle_w) and math.isfinite(power_limit_w) and idle_w > power_limit_w / 3:
        return (f"not ready: GPU busy: idle power {idle_w:.0f} W is over a third of the "
                f"{power_limit_w:.0f} W limit (another workload, or clocks locked high)")
    if counter_problem:
        return f"not ready: {counter_problem}"
    if len(failed):
        first = failed.iloc[0]
        return (f"not ready: {len(failed)} point(s) not measured ({first['status']}: "
                f"{str(first.get('error', ''))[:200]})")
    if coverage is not None and coverage[0] < min(2, coverage[1]):
        return (f"not ready: {coverage[0]} of {coverage[1]} point(s) measured within the {coverage[2]:.0f} s "
                "time cap (too few to judge the repeat spread; raise --time-cap)")
    spreads = summary["repeat_spread"].dropna()
    sums = summary["stage_sum_error"].dropna()
    if spreads.empty:
        return "not ready: no energy measured"
    median, worst = spreads.median(), spreads.max()
    if worst > protocol.spread_flag:
        return (f"not ready: spread median {median:.1%}, worst {worst:.1%} (ready at <= "
                f"{protocol.spread_flag:.0%}, the protocol's spread_flag)")
    if len(sums) and sums.max() > protocol.stage_sum_tolerance:
        return (f"not ready: stage sums off by up to {sums.max():.1%} "
                f"(ready at <= {protocol.stage_sum_tolerance:.0%})")
    within = (f" ({coverage[0]} of {coverage[1]} points within the {coverage[2]:.0f} s time cap)"
              if coverage is not None and coverage[0] < coverage[1] else "")
    return (f"ready: spread median {median:.1%}, worst {worst:.1%}; stage sums within "
            f"{sums.max() if len(sums) else math.nan:.1%}{within}")


def _checkout_commit() -> str:
    """The commit of the checkout that packages (the one that measured, when run right after)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"commit {head}" + (" with uncommitted changes" if dirty else "") + " (the packaging checkout)"


def cmd_package(args: argparse.Namespace) -> int:
    """Check a GPU run's points and write the shipped dataset and its datasheet."""
    import pandas as pd

    from .. import grid
    from ..sources import reference

    config = grid.load_config(args.config)
    grid.validate_schema(config)
    expected = [(p.model, p.precision, p.resolution, p.steps, p.cfg, p.batch)
                for p in grid.grid_points(config)]
    summary = reference.package(reference.point_files(args.measurements, args.gpu), args.gpu,
                                config.get("gpu_kinds", {}), config.get("protocol", {}), Path(args.out),
                                expected, args.code or _checkout_commit(), args.note)
    print(json.dumps(asdict(summary), indent=2))
    frame = pd.read_parquet(Path(args.out) / f"{args.gpu}.parquet")
    ratios = reference.anchor_ratios(reference.point_energies(frame), pd.read_csv(args.anchors))
    print(ratios.to_string(index=False) if len(ratios) else "no published anchor matches these settings")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from ..models import catalog
    from ..sources import dataset

    merged = dataset.write_merged(args.reference, args.local, args.out, args.published,
                                  models=catalog.available_models())
    log.info("%d rows (%d shipped files, %d local files, %d published sources) -> %s", len(merged),
             len(args.reference), len(args.local), len(args.published), args.out)
    return 0


def _read_parquet(path: str, what: str) -> pd.DataFrame:
    import pandas as pd

    from ..sources import dataset

    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise dataset.DatasetError(f"{path}: no such {what}") from None
    except (OSError, ValueError) as exc:
        raise dataset.DatasetError(f"{path}: not a readable {what} ({exc})") from None


def cmd_collect(args: argparse.Namespace) -> int:
    from .. import atomic
    from ..sources import dataset

    measurements = dataset.read_table(args.measurements)
    dataset.refuse_simulated(measurements, args.measurements)
    flops = dataset.check_flops_table(_read_parquet(args.flops, "FLOPs table"), args.flops)
    energy = dataset.collect_energy(measurements, flops)
    atomic.write_parquet(energy, args.out)
    log.info("%d grid points with GPU energy -> %s", len(energy), args.out)
    return 0


def cmd_run_summary(args: argparse.Namespace) -> int:
    """Print (and write) what a run did: measured here, reused, sources, left out, warnings."""
    from .. import run_summary
    from ..errors import json_argument

    text = run_summary.summarize(
        ".", measure_kinds=json_argument(args.measure_gpus, "--measure-gpus", list),
        measure_reason=args.reason, reference_dir=args.reference_dir, since=args.since, part=args.part)
    if args.part == "all":
        run_summary.write_summary(text)
    print(text, end="", flush=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure", help="measure the grid points of one model (all its precisions) on one GPU")
    p.add_argument("--gpu", required=True, help="GPU kind this job measures, e.g. h100")
    p.add_argument("--model", required=True)
    p.add_argument("--precision", help="the precision of every point (or name it in each point)")
    p.add_argument("--points", required=True,
                   help="comma-separated points, in the order to measure them: fp16/512px_50steps_cfg1_b1 "
                        "(or 512px_50steps_cfg1_b1 with --precision)")
    p.add_argument("--outdir", default="results/measurements")
    p.add_argument("--protocol", help="JSON of the config's protocol block")
    p.add_argument("--gpu-kinds", help="JSON of the config's gpu_kinds block")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cpu runs the whole path without energy (tests)")
    p.add_argument("--journal", help="folder of already measured points (default OUTDIR/.journal)")
    p.add_argument("--fresh", action="store_true", help="measure again even if journaled")
    p.add_argument("--summary", help="write the job's timings (fixed cost) as JSON here")
    p.add_argument("--budget-s", type=float,
                   help="start no point once the job has run this long, s (virtual on the simulated GPU); "
                        "the job then ends as if stopped (status 130), every measured point kept")
    p.add_argument("--lock-timeout", type=float, default=0.0, help="seconds to wait for the GPU lock")
    p.add_argument("--allow-shared-gpu", action="store_true",
                   help="measure even if other processes use the GPU (not recommended)")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("gpu-check", help="check this machine's GPU setup in about a minute")
    p.add_argument("--config", default="config/config.yaml", help="for gpu_kinds and the protocol")
    p.add_argument("--model", default="sd15")
    p.add_argument("--precision", default="default")
    p.add_argument("--points", default=DEFAULT_CHECK_POINTS)
    p.add_argument("--out", help="also write the rows here (parquet)")
    p.add_argument("--windows-log", default="logs/gpu_check_windows.csv",
                   help="every energy window (CSV), kept or measured again")
    p.add_argument("--time-cap", type=float, default=80.0,
                   help="seconds the check may take, start-up and probes included: a point that would not "
                        "fit is not started (default 80: the device script stops it at 90)")
    p.set_defaults(func=cmd_gpu_check)

    p = sub.add_parser("package-reference",
                       help="check a GPU run and write resources/measurements/{gpu}.parquet + datasheet")
    p.add_argument("--gpu", required=True)
    p.add_argument("--measurements", default="results/measurements",
                   help="folder of a run's point files ({gpu}/{model}/{precision}/*.parquet), or one "
                        "parquet table of rows (e.g. a dataset packaged before)")
    p.add_argument("--out", default="resources/measurements")
    p.add_argument("--config", default="config/config.yaml",
                   help="gpu_kinds, the protocol and the grid the run set out to measure")
    p.add_argument("--anchors", default="resources/anchors/published.csv")
    p.add_argument("--code", help="the code that measured, for the datasheet "
                                  "(default: this checkout's commit)")
    p.add_argument("--note", action="append", default=[],
                   help="a line the datasheet must carry about the run (repeatable)")
    p.set_defaults(func=cmd_package)

    p = sub.add_parser("merge-measurements",
                       help="merge the shipped reference dataset with local measurements")
    p.add_argument("--reference", nargs="*", default=[], help="shipped parquet files")
    p.add_argument("--local", nargs="*", default=[], help="locally measured point files")
    p.add_argument("--published", nargs="*", default=[], help="imported published sources (import-public)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("collect", help="one row per measured point, joined with FLOPs")
    p.add_argument("--measurements", required=True)
    p.add_argument("--flops", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("run-summary", help="say what a workflow run did (the Snakefile prints it at the end)")
    p.add_argument("--measure-gpus", default="[]", help="JSON list of the GPU kinds measured here")
    p.add_argument("--reason", default="", help="why those kinds (or none) are measured here")
    p.add_argument("--reference-dir", default="resources/measurements")
    p.add_argument("--since", type=float, help="the run's start (epoch seconds): logs and jobs since then")
    p.add_argument("--part", choices=("all", "measurements"), default="all")
    p.set_defaults(func=cmd_run_summary)
