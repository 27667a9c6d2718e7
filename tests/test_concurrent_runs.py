"""Runs sharing a folder: which other runs a failed run names (times are given, never read from a clock)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from diffusion_energy import concurrent_runs

T0 = 1_800_000_000.0


def _record(root: Path, name: str, **fields: object) -> Path:
    record = {"host": socket.gethostname(), "pid": 999_999_999, "process_start": "1", "started": T0,
              "argv": ["snakemake", "--nolock"], "ended": None, **fields}
    path = root / concurrent_runs.FOLDER / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def test_runs_that_overlapped_are_named_and_others_not(tmp_path: Path) -> None:
    me = concurrent_runs.register(tmp_path, argv=["snakemake"], now=T0)
    _record(tmp_path, "ended-during", started=T0 + 10, ended=T0 + 50)
    _record(tmp_path, "ended-before", started=T0 - 500, ended=T0 - 100)
    _record(tmp_path, "other-host", host="elsewhere", started=T0 + 5)
    _record(tmp_path, "killed-during", started=T0 + 20)
    started = concurrent_runs._process_start(os.getpid())
    alive = _record(tmp_path, "alive", pid=os.getpid(), process_start=started, started=T0 - 1000)
    named = {r["state"] for r in concurrent_runs.overlapping(me, now=T0 + 60)}
    assert named == {f"ended at {concurrent_runs._clock(T0 + 50)}", "possibly still running (another host)",
                     "stopped without ending (killed?)", "still running"}
    lines = concurrent_runs.report(me, now=T0 + 60)
    assert lines[0].startswith("Another run of the workflow worked in this folder at the same time (4; ")
    assert "Snakemake's hint of file system latency above is not the cause" in lines[-1]
    assert alive.is_file()


def test_a_reused_process_id_is_not_taken_for_the_run(tmp_path: Path) -> None:
    me = concurrent_runs.register(tmp_path, argv=["snakemake"], now=T0)
    _record(tmp_path, "reused", pid=os.getpid(), process_start="0", started=T0 - 1000)
    assert concurrent_runs.overlapping(me, now=T0 + 60) == []


def test_stale_records_are_removed_at_start_and_the_end_is_recorded(tmp_path: Path) -> None:
    old = _record(tmp_path, "ended-long-ago", started=T0 - 30 * 86400, ended=T0 - 20 * 86400)
    dead = _record(tmp_path, "died-before", started=T0 - 100)
    me = concurrent_runs.register(tmp_path, argv=["snakemake"], now=T0)
    assert not old.exists() and not dead.exists()
    assert concurrent_runs.report(me, now=T0 + 1) == []
    concurrent_runs.finish(me, now=T0 + 2)
    assert json.loads(me.read_text())["ended"] == T0 + 2
