"""A real single-node SLURM for tests, and a Snakemake runner that cannot hang.

``install()`` installs Debian's ``slurmctld slurmd slurm-client munge`` (about 6 s) or raises
``SlurmUnavailable`` with the reason (not root, no apt-get, apt failed). ``SlurmCluster``
writes a private ``slurm.conf`` under a temporary folder, starts munged (as the munge
user), slurmctld and slurmd in the foreground, waits until the node is idle (about a
second), and stops the three daemons by PID. Nothing outside its folder is configured: its
own munge key and socket, free TCP ports, state and spool folders, so a system SLURM or
munge on the same machine is left alone.

The node, 127.0.0.1, is in three partitions: ``main`` (the default), ``cpu`` and
``gpu-h100``. Where ``gpu`` is on, it advertises one generic resource ``gpu:h100:1``. SLURM drops a GPU that
has no device file, so gres.conf points at a placeholder file: jobs can ask for and be
given ``--gpus=h100:1``, and the measurement then fails with the project's own "no GPU"
error on a CPU machine. The node claims 16 CPUs and 128 GB (``config_overrides``) so that
measurement jobs, which ask for 8 CPUs per GPU and 16 GB or more, are accepted as they are.

There is no accounting database: Snakemake's SLURM plugin must be run with
``--slurm-status-command squeue``, and ``MinJobAge`` must stay at least 3 x
``--slurm-init-seconds-before-status-checks``, otherwise the plugin falls back to sacct, which
fails here, and Snakemake waits forever. ``MinJobAge`` is a day here, not SLURM's 300 s: a slow
run on a loaded machine must still find its finished jobs in squeue (SLURM forgot them after 300 s
when a suite took 87 minutes on a loaded 2-core machine).

No wait here is bounded by the clock alone. ``run_snakemake`` stops Snakemake (SIGINT, which it
obeys while it waits for SLURM jobs) only when it has made no progress for ``watched.STALL_S`` (no
job started or finished; for a local run, no CPU used either): a slow machine makes a run slower,
never a failure; a hung run still ends. The daemons' start waits fail at once if a daemon exits.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import watched

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol")
SBIN = ("/usr/sbin", "/sbin", "/usr/bin")

NODE = "denode"
PARTITIONS = ("main", "cpu", "gpu-h100")
GPU_TYPE = "h100"
#: ``MinJobAge`` of the test cluster, seconds: finished jobs stay visible to squeue this long (a day;
#: SLURM's default, 300 s, is shorter than a slow run).
MIN_JOB_AGE_S = 86400
#: Lines Snakemake writes when a job starts, is submitted or finishes (local and SLURM runs).
JOB_EVENT = re.compile(r"^\s*(?:(?:local)?rule \S+:|checkpoint \S+:|Job \d+ has been submitted|"
                       r"Finished jobid|\d+ of \d+ steps|Error in rule|Building DAG|Nothing to be done)")


class SlurmUnavailable(RuntimeError):
    """SLURM is not installed and cannot be installed on this machine."""


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def missing_programs() -> list[str]:
    return [p for p in DAEMONS + CLIENTS if _which(p) is None]


def install(timeout_s: float = 600) -> float:
    """Make sure SLURM and munge are installed; return the seconds spent installing.

    Raises SlurmUnavailable (with the reason) where they are missing and cannot be
    installed: not root, no apt-get, or apt-get failed.
    """
    if not missing_programs():
        return 0.0
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        missing = ", ".join(missing_programs())
        raise SlurmUnavailable(f"{missing} missing and not root: cannot apt-get install")
    apt = shutil.which("apt-get")
    if apt is None:
        raise SlurmUnavailable(f"{', '.join(missing_programs())} missing and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = [apt, "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    start = time.monotonic()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:  # maybe no package lists yet
        subprocess.run([apt, "update", "-q"], env=env, capture_output=True, text=True, timeout=timeout_s)
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0 or missing_programs():
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: {' | '.join(tail)}")
    return time.monotonic() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlurmCluster:
    """One slurmctld + one slurmd on 127.0.0.1, configured under ``root``."""

    root: Path
    gpu: bool = True
    min_job_age_s: int = MIN_JOB_AGE_S
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    # -- paths and environment -------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def jobcomp(self) -> Path:
        """Job-completion log (``jobcomp/filetxt``): one line per job that ran through SLURM."""
        return self.root / "jobcomp.txt"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for SLURM clients (and Snakemake) that talk to this cluster.

        Why a ``bin/srun`` shim: the SLURM plugin's job step (``--executor slurm-jobstep``)
        runs ``srun`` with every ``SLURM_*`` variable removed, SLURM_CONF included, so srun
        inside a job would look for /etc/slurm/slurm.conf. The shim puts SLURM_CONF back and
        runs the real srun; sbatch, squeue and scontrol are called as they are.
        """
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", ""), *SBIN])
        return env

    # -- lifecycle -------------------------------------------------------------------------
    def write_config(self) -> None:
        hostname = socket.gethostname().split(".")[0]
        ctld_port, slurmd_port = free_port(), free_port()
        munge = self.root / "munge"
        for sub in ("etc", "state", "spool", "log", "bin"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # munged (user munge) must reach its socket folder
        munge.mkdir(exist_ok=True)
        munge.chmod(0o755)
        user = pwd.getpwnam("munge")
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        for path in (munge, key):
            os.chown(path, user.pw_uid, user.pw_gid)
        fake_gpu = self.root / "fake-gpu0"  # a placeholder, not a device: see module docstring
        fake_gpu.touch()
        gres = f"Gres=gpu:{GPU_TYPE}:1" if self.gpu else ""
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=detest",
                    f"SlurmctldHost={hostname}(127.0.0.1)",
                    f"SlurmctldPort={ctld_port}",
                    f"SlurmdPort={slurmd_port}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={munge / 'munge.socket.2'}",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "MpiDefault=none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "SchedulerType=sched/backfill",
                    "ReturnToService=2",
                    "MailProg=/bin/true",
                    f"MinJobAge={self.min_job_age_s}",
                    "KillWait=5",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/filetxt",
                    f"JobCompLoc={self.jobcomp}",
                    "GresTypes=gpu",
                    "SlurmdParameters=config_overrides",
                    f"NodeName={NODE} NodeHostname={hostname} NodeAddr=127.0.0.1 CPUs=16"
                    f" RealMemory=128000 {gres} State=UNKNOWN",
                    *(f"PartitionName={name} Nodes={NODE} Default={'YES' if name == PARTITIONS[0] else 'NO'}"
                      " MaxTime=INFINITE State=UP" for name in PARTITIONS),
                    "",
                ]
            )
        )
        gres_conf = "AutoDetect=off\n"
        if self.gpu:
            gres_conf += f"Name=gpu Type={GPU_TYPE} File={fake_gpu}\n"
        (self.conf.parent / "gres.conf").write_text(gres_conf)
        (self.conf.parent / "plugstack.conf").write_text("")
        srun = _which("srun")
        shim = self.bin / "srun"
        shim.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {srun} "$@"\n')
        shim.chmod(0o755)

    def _spawn(self, name: str, cmd: Sequence[str], **kwargs) -> None:
        out = (self.root / "log" / f"{name}.out").open("w")
        self._procs[name] = subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env(), **kwargs,
        )
        out.close()

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs()}")

    def _wait(self, what: str, ready, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"SLURM test cluster: {what} not ready after {timeout_s:.0f} s:\n{self.logs()}")

    def start(self, timeout_s: float = 600) -> float:
        """Start munged, slurmctld and slurmd; return seconds until the node was idle."""
        start = time.monotonic()
        self.write_config()
        munge = self.root / "munge"
        user = pwd.getpwnam("munge")
        self._spawn(
            "munged",
            [_which("munged"), "--foreground", f"--socket={munge / 'munge.socket.2'}",
             f"--key-file={munge / 'munge.key'}", f"--pid-file={munge / 'munged.pid'}",
             f"--seed-file={munge / 'munged.seed'}", f"--log-file={munge / 'munged.log'}"],
            user=user.pw_uid, group=user.pw_gid, extra_groups=[],
        )
        self._wait("munged", lambda: (munge / "munge.socket.2").exists(), timeout_s)
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: "UP" in self.run("scontrol", "ping", check=False).stdout, timeout_s)
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)])
        self._wait("node", lambda: self.node_state() == "idle", timeout_s)
        return time.monotonic() - start

    def stop(self, timeout_s: float = 15) -> None:
        """Stop the daemons this object started, by PID, slurmd first."""
        for name in reversed(list(self._procs)):
            proc = self._procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()

    @classmethod
    @contextlib.contextmanager
    def running(cls, gpu: bool = True, keep: bool = False) -> Iterator[SlurmCluster]:
        """A started cluster in a fresh folder under the system temp dir (removed afterwards)."""
        # Not under pytest's tmp_path: its parents are private to root, and munged runs as munge.
        root = Path(tempfile.mkdtemp(prefix="de-slurm-"))
        cluster = cls(root, gpu=gpu)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
            if not keep:
                shutil.rmtree(root, ignore_errors=True)

    # -- queries ---------------------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True, timeout_s: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env(), capture_output=True, text=True,
                              timeout=timeout_s, check=check)

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-n", NODE, "-o", "%t", check=False).stdout.strip().split("\n")[0]

    def jobs(self, name: str | None = None) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones for MinJobAge seconds), by squeue."""
        fmt = "%i|%j|%T|%P|%k|%b"
        out = self.run("squeue", "-h", "--states=all", "-o", fmt).stdout
        rows = [dict(zip(("id", "name", "state", "partition", "comment", "tres_per_node"),
                         line.split("|"), strict=True))
                for line in out.splitlines() if line.strip()]
        return [r for r in rows if name is None or r["name"] == name]

    def show_job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (TresPerJob, Partition, JobState, Command, ...)."""
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def completed_jobs(self) -> list[dict[str, str]]:
        """Records of the job-completion log: what really ran through sbatch."""
        if not self.jobcomp.exists():
            return []
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in self.jobcomp.read_text().splitlines()]

    def logs(self, lines: int = 15) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]:
            if path.is_file():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)


@dataclass
class SnakemakeRun:
    args: list[str]
    returncode: int
    log: str
    seconds: float


def run_snakemake(
    args: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, stall_s: float = watched.STALL_S,
    cpu: bool = True,
) -> SnakemakeRun:
    """Run the Snakemake CLI in ``cwd`` for as long as it makes progress: a job starts or finishes
    (``JOB_EVENT`` in its log) or, with ``cpu``, it or its local jobs use CPU. A SLURM run passes
    ``cpu=False``: its jobs run under slurmd, and a Snakemake that polls a status command in vain uses
    CPU too. After ``stall_s`` without progress it is interrupted (SIGINT) and the run fails loudly."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    log_path = Path(cwd) / ".snakemake-test.log"
    start = time.monotonic()
    with log_path.open("w") as log, log_path.open("rb") as reader:
        proc = subprocess.Popen(cmd, cwd=cwd, env=dict(env or os.environ), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=watched.default_sigint)
        partial = [b""]

        def job_event() -> bool:
            *lines, partial[0] = (partial[0] + reader.read()).split(b"\n")
            return any(JOB_EVENT.match(line.decode(errors="replace")) for line in lines)

        try:
            watched.wait(proc, job_event, f"snakemake {' '.join(args)}", stall_s, cpu=cpu)
        except watched.Stalled as exc:
            text = log_path.read_text(errors="replace")
            raise watched.Stalled(f"{exc}; log tail:\n{text[-4000:]}") from None
    return SnakemakeRun(list(args), proc.returncode, log_path.read_text(errors="replace"),
                        time.monotonic() - start)
