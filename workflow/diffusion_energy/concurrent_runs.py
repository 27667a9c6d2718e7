"""Workflow runs sharing one folder: each run records itself, so a failed run can name another one.

Why: ``snakemake --nolock`` lets a second run work in a folder a first run is working in. The
second re-runs jobs (the profile's ``rerun-incomplete`` takes the first run's running jobs for
incomplete ones), deleting and rewriting their outputs under the first, which then fails with
Snakemake's "MissingOutputException ... might be due to filesystem latency": a hint that points
away from the cause. Each real run of the workflow (the main process; not a dry run, which runs
no hook) records itself at start in ``.snakemake/diffusion_energy_runs/``: host, process id,
the process's start time, wall-clock start and command line; it adds its end time when it ends.
A failed run then names every other run whose time overlapped its own.

Whether a run without an end time still runs is known on this host only (its process id is
alive and started when the record says: a reused id is not taken for it); a record of another
host (a shared file system) overlaps when it started or ended within this run, and one that
never ended is named as possibly running. Records of runs that ended over a week ago, or died
on this host before this run started, are removed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import atomic

FOLDER = Path(".snakemake") / "diffusion_energy_runs"
#: Records of runs that ended longer ago than this are removed, s.
KEEP_S = 7 * 24 * 3600.0

_current: Path | None = None


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(record: Mapping[str, Any]) -> bool | None:
    """Whether the run's process still runs: True/False on this host, None on another."""
    if record.get("host") != socket.gethostname():
        return None
    pid = int(record.get("pid", -1))
    started = _process_start(pid) if pid > 0 else None
    return started is not None and started == record.get("process_start")


def _records(root: Path) -> dict[Path, dict[str, Any]]:
    out = {}
    for path in sorted((root / FOLDER).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            out[path] = record
    return out


def register(root: str | Path = ".", argv: list[str] | None = None, now: float | None = None) -> Path:
    """Record this process as a run working in ``root`` (and remove stale records)."""
    global _current
    root, now = Path(root), time.time() if now is None else now
    for path, record in _records(root).items():
        ended = record.get("ended")
        stale = (ended is not None and now - float(ended) > KEEP_S) or (
            ended is None and _alive(record) is False and float(record.get("started", now)) < now)
        if stale:
            path.unlink(missing_ok=True)
    host, pid = socket.gethostname(), os.getpid()
    record = {"host": host, "pid": pid, "process_start": _process_start(pid), "started": now,
              "argv": list(sys.argv if argv is None else argv), "ended": None}
    path = root / FOLDER / f"{host}-{pid}-{int(now * 1000)}.json"
    atomic.write_text(json.dumps(record), path)
    _current = path
    return path


def finish(path: Path | None = None, now: float | None = None) -> None:
    """Add this run's end time to its record."""
    path = path or _current
    if path is None or not path.is_file():
        return
    record = json.loads(path.read_text())
    record["ended"] = time.time() if now is None else now
    atomic.write_text(json.dumps(record), path)


def overlapping(path: Path | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """Other runs in the same folder whose time overlapped this run's, each with ``state``."""
    path = path or _current
    if path is None or not path.is_file():
        return []
    me = json.loads(path.read_text())
    start, now = float(me["started"]), time.time() if now is None else now
    root = path.parents[len(FOLDER.parts)]
    out = []
    for other_path, other in _records(root).items():
        if other_path == path:
            continue
        ended, alive = other.get("ended"), _alive(other)
        if ended is not None:
            state = f"ended at {_clock(float(ended))}"
            overlaps = float(ended) >= start and float(other.get("started", now)) <= now
        elif alive:
            state, overlaps = "still running", True
        elif alive is None:
            state, overlaps = "possibly still running (another host)", True
        else:
            state = "stopped without ending (killed?)"
            overlaps = float(other.get("started", 0)) >= start
        if overlaps:
            out.append({**other, "state": state})
    return out


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def report(path: Path | None = None, now: float | None = None) -> list[str]:
    """Lines for a failed run's summary: the runs that worked in its folder at the same time."""
    others = overlapping(path, now)
    if not others:
        return []
    lines = [f"Another run of the workflow worked in this folder at the same time ({len(others)}; "
             "--nolock lets two runs share a folder):"]
    lines += [f"  pid {o.get('pid')} on {o.get('host')}, started {_clock(float(o.get('started', 0)))}, "
              f"{o['state']}: {' '.join(map(str, o.get('argv', [])))[:160]}" for o in others]
    lines.append("It re-ran jobs of this run and deleted or rewrote their outputs under it: that is why "
                 "outputs went missing (Snakemake's hint of file system latency above is not the cause). "
                 "Run one Snakemake at a time in a folder (without --nolock), then run this again.")
    return lines
