"""Running a command in a test without a clock: for as long as it makes progress, however slow the machine.

A test that kills a command after a fixed number of seconds fails on a loaded machine (the suite once
took 87 minutes on a loaded 2-core machine). Here a command runs as long as it makes progress: it, or a
process it started, uses CPU or writes output (``progress`` adds what else counts, e.g. Snakemake's job
events). It is stopped only after ``STALL_S`` without any progress: a hang, not a slow machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

#: Seconds without progress after which a command is taken for hung. Every command the tests run
#: needs at most a minute or two of CPU; only a hung one makes no progress for this long.
STALL_S = 1800.0
_POLL_S = 1.0


class Stalled(TimeoutError):
    """A command made no progress for ``STALL_S``: it was interrupted."""


def _stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, CPU ticks of the process and of its reaped children) from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    # After the command name: state, ppid, ...; utime, stime, cutime, cstime are the 12th to 15th.
    return int(fields[1]), sum(int(f) for f in fields[11:15])


def tree_cpu_ticks(root: int) -> int:
    """CPU ticks used by ``root`` and every process below it (finished children included, once reaped).
    Zero where /proc cannot tell (not Linux): then only output and ``progress`` count."""
    stats = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit() and (s := _stat(entry.name)) is not None:
            stats[int(entry.name)] = s
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo += children.get(pid, [])
    return total


def default_sigint() -> None:
    """In the child, before it runs: SIGINT as by default. A pytest-xdist worker ignores SIGINT and its
    children inherit that, so ``interrupt`` waited its full minute for a command that never saw it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(proc: subprocess.Popen) -> None:
    """SIGINT (Snakemake cancels its SLURM jobs on it and ignores SIGTERM while it waits for them),
    then SIGKILL if the command does not end."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait(proc: subprocess.Popen, progress: Callable[[], bool], what: str, stall_s: float = STALL_S,
         cpu: bool = True) -> None:
    """Wait for ``proc`` while it makes progress: ``progress()`` says so, or (``cpu``) its process tree
    used CPU since the last look. After ``stall_s`` without progress interrupt it and raise Stalled."""
    last, ticks = time.monotonic(), -1
    while True:
        try:
            proc.wait(_POLL_S)
            return
        except subprocess.TimeoutExpired:
            pass
        now = tree_cpu_ticks(proc.pid) if cpu else 0
        if progress() or (cpu and now != ticks):
            last, ticks = time.monotonic(), now
        elif time.monotonic() - last > stall_s:
            interrupt(proc)
            raise Stalled(f"{what}: no progress for {stall_s:.0f} s (no CPU used, no output); interrupted")


def run(cmd: Sequence[str], *, cwd: str | Path | None = None, env: Mapping[str, str] | None = None,
        check: bool = False, stall_s: float = STALL_S) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(cmd, capture_output=True, text=True)`` for as long as it makes progress."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=None if env is None else dict(env), stdout=out,
                                stderr=err, stdin=subprocess.DEVNULL, text=True, preexec_fn=default_sigint)
        sizes = [0, 0]

        def grew() -> bool:
            now = [os.fstat(out.fileno()).st_size, os.fstat(err.fileno()).st_size]
            changed = now != sizes
            sizes[:] = now
            return changed

        try:
            wait(proc, grew, " ".join(map(str, cmd[:4])), stall_s)
        except BaseException:
            if proc.poll() is None:
                interrupt(proc)
            raise
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(list(cmd), proc.returncode, out.read(), err.read())
    if check:
        done.check_returncode()
    return done
