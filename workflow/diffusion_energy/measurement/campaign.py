"""A measurement campaign: the grid measured across short GPU runs, each going on where the shipped
data ends.

Why: a lent GPU machine gives one run of about 15 minutes (a fresh machine, no network, at most
10 minutes per command, results back as at most 8 files), and the default grid needs several.
Every run counts: a run measures the points not yet shipped, returns all it measured as one
tarball, and the next run, on another machine and another card, goes on from there.

* ``plan``: the grid's points in ``measure_order`` (one job per model, its usual precision
  first), less those the shipped table already holds as this measurement would make them now: the
  same GPU kind, protocol, measuring code and library versions (``journal.reusable_rows``; not the
  same card: the UUID stays in the rows). An out-of-memory point of the same code is a result too.
* ``run_jobs``: one ``diffusion-energy measure`` process per model, each with the time the run has
  left (``--budget-s``: it starts no point once that is spent), until the run's budget is spent.
  On the simulated GPU the budget is virtual time (the jobs' own clocks), never the host's.
* ``pack``: one tarball: ``manifest.json`` (the run: kind, plan, jobs, timings), the measured
  points as the journal holds them (``journal/<model>/<precision>/<slug>.parquet``) and the logs.
  Written atomically after every job, so a run cut short still returns what it measured.

The CPU side (``sources.campaign_merge``) checks a run's tarball and merges it into the shipped
table and its datasheet.
"""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .. import atomic, grid
from ..sources.schema import GRID_KEYS, THIS_WORKFLOW, validate_measurements
from . import journal

log = logging.getLogger(__name__)

#: A run starts no job with less time left than this, s: start-up, probe, build and idle alone
#: take 8-10 s, one point's warm-up and windows several more.
MIN_JOB_S = 20.0
#: How long past its budget a job may run before it is stopped (SIGINT), s: the point in progress
#: may end (a large model's 1024 px / 50 step point takes minutes).
GRACE_S = 60.0
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Plan:
    """What a run measures: per model (in ``measure_order``), the points not yet shipped."""

    kind: str
    todo: dict[str, list[grid.GridPoint]]
    done: list[grid.GridPoint]
    #: shipped points measured again, and why (another protocol, code or library version)
    redo: dict[str, str] = field(default_factory=dict)

    def points(self) -> int:
        return sum(len(v) for v in self.todo.values())


def point_name(p: grid.GridPoint) -> str:
    return f"{p.model} {p.precision}/{p.slug}"


def _point_rows(shipped: pd.DataFrame, kind: str) -> dict[tuple, pd.DataFrame]:
    """The shipped rows of this workflow on ``kind``, per point (grid keys and frames)."""
    if shipped.empty:
        return {}
    rows = shipped[(shipped["gpu"].astype(str) == kind) & (shipped["source"] == THIS_WORKFLOW)]
    keys = [*GRID_KEYS, "frames"]
    return {tuple(k): g for k, g in rows.groupby(keys, dropna=False)}


def _key(kind: str, p: grid.GridPoint) -> tuple:
    return (kind, p.model, p.precision, p.resolution, p.steps, p.cfg, p.batch, p.frames)


def shipped_verdict(rows: pd.DataFrame, expected: journal.Expected) -> journal.Verdict:
    """Whether a shipped point is what this run would measure; an out-of-memory point of the same
    kind, protocol and code is a result (it would run out of memory again)."""
    if (rows["status"] == "oom").all():
        codes = {str(c) for c in rows.get("measurement_code", pd.Series(dtype=str)).dropna()}
        protocols = {str(c) for c in rows.get("protocol", pd.Series(dtype=str)).dropna()}
        if codes == {expected.code} and protocols == {journal.protocol_text(expected.protocol)}:
            return journal.Verdict(True)
        return journal.Verdict(False, "out of memory with other code or protocol")
    return journal.reusable_rows(rows, expected)


def plan(config: Mapping[str, Any], kind: str, shipped: pd.DataFrame, versions: Mapping[str, str],
         protocol: Any) -> Plan:
    """The points of the config's grid still to measure on ``kind`` (module docstring)."""
    jobs = grid.measurement_jobs(grid.grid_points(config))
    priority = grid.measure_priorities(config, jobs)
    by_point = _point_rows(shipped, kind)
    todo: dict[str, list[grid.GridPoint]] = {}
    done: list[grid.GridPoint] = []
    redo: dict[str, str] = {}
    for model in sorted(jobs, key=lambda m: -priority[m]):
        expected = journal.Expected.of(kind, None, protocol, versions, journal.measurement_code(model))
        for p in jobs[model]:
            rows = by_point.get(_key(kind, p))
            if rows is not None:
                verdict = shipped_verdict(rows, expected)
                if verdict.reuse:
                    done.append(p)
                    continue
                redo[point_name(p)] = verdict.reason
            todo.setdefault(model, []).append(p)
    return Plan(kind, todo, done, redo)


def read_shipped(folder: Path, kind: str, journal_dir: Path | None = None) -> pd.DataFrame:
    """The shipped table of ``kind`` (``folder/<kind>.parquet``) and, with ``journal_dir``, the
    points this machine journaled in an earlier run not yet merged (they are in its tarball)."""
    frames = []
    table = folder / f"{kind}.parquet"
    if table.is_file():
        frames.append(validate_measurements(pd.read_parquet(table), str(table)))
    if journal_dir is not None:
        for path in sorted((journal_dir / kind).glob("*/*/*.parquet")):
            try:
                frames.append(validate_measurements(pd.read_parquet(path), str(path)))
            except Exception as exc:  # noqa: BLE001 - a damaged entry is measured again
                log.warning("journal entry %s is unreadable (%s): measured again", path, exc)
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=[*GRID_KEYS, "frames", "source"])
    both = pd.concat(frames, ignore_index=True)
    return both.drop_duplicates([*GRID_KEYS, "frames", "source", "stage", "repeat"], keep="last")


@dataclass
class JobRecord:
    """One measure process of a run."""

    model: str
    points: list[str]
    budget_s: float
    returncode: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


@dataclass
class RunRecord:
    """What a run did (the manifest's body)."""

    kind: str
    run_id: str
    budget_s: float
    simulated: bool
    started_at: str
    plan_points: int
    shipped_points: int
    redo: dict[str, str]
    jobs: list[JobRecord] = field(default_factory=list)
    stopped: str = ""
    spent_s: float = 0.0
    wall_s: float = 0.0

    def measured(self) -> list[str]:
        return [f"{j.model} {n}" for j in self.jobs for n in j.summary.get("measured_points", [])]


def measure_command(kind: str, model: str, points: Sequence[grid.GridPoint], budget_s: float,
                    protocol_json: str, gpu_kinds_json: str, outdir: Path, summary: Path) -> list[str]:
    return [sys.executable, "-m", "diffusion_energy.cli", "measure", "--gpu", kind, "--model", model,
            "--points", grid.job_point_names(points), "--outdir", str(outdir), "--summary", str(summary),
            "--protocol", protocol_json, "--gpu-kinds", gpu_kinds_json, "--budget-s", f"{budget_s:.1f}"]


def _run_job(command: list[str], log_path: Path, hard_s: float | None) -> int:
    """One measure process, its stderr to ``log_path``; SIGINT after ``hard_s`` (it then keeps every
    measured point), SIGKILL if it does not end within 30 s of that."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as err:
        proc = subprocess.Popen(command, stdout=err, stderr=subprocess.STDOUT)
        try:
            return proc.wait(timeout=hard_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                return proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()
        except KeyboardInterrupt:  # the run itself is stopped: its job keeps what it measured
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
            raise


def run_jobs(the_plan: Plan, record: RunRecord, protocol_json: str, gpu_kinds_json: str, root: Path,
             after_job: Callable[[], None] = lambda: None,
             clock: Callable[[], float] = time.monotonic) -> None:
    """Measure the plan's jobs in order until the run's budget is spent (module docstring)."""
    start = clock()
    for model, points in the_plan.todo.items():
        jobs_s = sum(float(j.summary.get("total_s", 0.0) or 0.0) for j in record.jobs)
        spent = jobs_s if record.simulated else max(clock() - start, jobs_s)
        left = record.budget_s - spent
        if left < MIN_JOB_S:
            record.stopped = (f"budget spent: {spent:.0f} of {record.budget_s:.0f} s, {left:.0f} s left "
                              f"(a job needs at least {MIN_JOB_S:.0f} s)")
            break
        summary = root / "logs" / "measure" / the_plan.kind / f"{model}.job.json"
        summary.unlink(missing_ok=True)
        job = JobRecord(model, [f"{p.precision}/{p.slug}" for p in points], left)
        record.jobs.append(job)
        log.info("%s: %d point(s), %.0f s left in this run", model, len(points), left)
        t0 = clock()
        try:
            job.returncode = _run_job(
                measure_command(the_plan.kind, model, points, left, protocol_json, gpu_kinds_json,
                                root / "results" / "measurements", summary),
                root / "logs" / "measure" / the_plan.kind / f"{model}.log",
                None if record.simulated else left + GRACE_S)
        finally:
            job.wall_s = clock() - t0
            if summary.is_file():
                job.summary = json.loads(summary.read_text())
            after_job()
        log.info("%s: %s measured, job %s", model, job.summary.get("measured", 0),
                 job.summary.get("stopped") or f"ended with status {job.returncode}")
        if str(job.summary.get("stopped", "")).startswith("stopped at its time budget"):
            # what is left would pay another job's fixed cost for a point or two: the next run
            # starts with this job's remaining points instead
            record.stopped = f"budget spent: {model} stopped before its next point"
            break
    jobs_s = sum(float(j.summary.get("total_s", 0.0) or 0.0) for j in record.jobs)
    record.wall_s = clock() - start
    record.spent_s = jobs_s if record.simulated else max(record.wall_s, jobs_s)


def tarball_name(record: RunRecord) -> str:
    return f"campaign-{record.kind}-{record.run_id}.tar"


def pack(record: RunRecord, root: Path, out: Path, extra_logs: Sequence[Path] = ()) -> Path:
    """Write the run's tarball (module docstring), atomically: what is at ``out`` is always whole."""
    kind = record.kind
    journal_dir = root / "results" / "measurements" / ".journal" / kind
    members: list[tuple[Path, str]] = []
    for path in sorted(journal_dir.glob("*/*/*")):
        if path.is_file() and path.suffix in (".parquet", ".json"):
            members.append((path, f"journal/{path.relative_to(journal_dir)}"))
    for path in sorted((root / "logs" / "measure" / kind).glob("*")):
        if path.is_file():
            members.append((path, f"logs/measure/{path.name}"))
    for path in sorted((root / "results" / "measurements" / kind).glob("*/_windows.csv")):
        members.append((path, f"logs/windows/{path.parent.name}.csv"))
    members += [(p, f"logs/{p.name}") for p in extra_logs if p.is_file()]
    manifest = json.dumps({**asdict(record), "measured": record.measured()}, indent=2, default=str) + "\n"
    with atomic.atomic_path(out) as tmp, tarfile.open(tmp, "w") as tar:
        info = tarfile.TarInfo(MANIFEST)
        data = manifest.encode()
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
        for path, name in members:
            tar.add(path, arcname=name, recursive=False)
    return out


def new_record(kind: str, budget_s: float, simulated: bool, the_plan: Plan) -> RunRecord:
    started = datetime.now(UTC)
    return RunRecord(kind=kind, run_id=f"{started.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}",
                     budget_s=budget_s, simulated=simulated,
                     started_at=started.isoformat(timespec="seconds"), plan_points=the_plan.points(),
                     shipped_points=len(the_plan.done), redo=dict(the_plan.redo))
