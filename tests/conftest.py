"""Shared fixtures, and how the suite runs.

* ``pytest`` runs every test except those marked ``slurm`` (they need a real single-node
  SLURM, which tests/slurm_cluster.py installs with apt-get as root); ``pytest --slurm``
  runs them too, and CI does. Nothing is installed on the machine without ``--slurm``.
* Test files run in parallel (pytest-xdist; ``addopts`` in pyproject.toml), one file on one
  worker, so a module fixture is built once. Files holding ``slurm`` or ``slow`` tests are
  handed out first: the longest work does not start last.
* ``tiny_workflow_run`` and ``tiny_reference_run``: the tiny config's whole workflow without and
  with reference rows, each run once per session (shared by the xdist workers through a file lock)
  for every test that only reads its outputs.
* torch runs one thread per process (``OMP_NUM_THREADS=1`` unless set): the workers and the
  Snakemake jobs already use every core.
* No test depends on wall time: commands run as long as they make progress (tests/watched.py).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

REPO_ROOT = Path(__file__).resolve().parents[1]

# One thread per torch process (before torch is imported; Snakemake jobs and the CLI inherit it).
# xdist runs one file per core and the workflow tests run Snakemake jobs beside them: torch's default,
# a thread per core in every process, oversubscribes the cores, and its OpenMP threads spin waiting
# for each other. A tiny model's measurement path on the CPU took 46-67 s with 2 threads and 4.6 s
# with 1 on a loaded 2-core machine. A value already set is kept.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

#: What a Snakemake run needs from the repository (results, logs and caches aside).
WORKFLOW_PATHS = (
    "Snakefile", "workflow", "config", "envs", "profiles", "resources", "tests/configs", "tests/data",
)
_SKIP = shutil.ignore_patterns("__pycache__", "*.egg-info", ".snakemake", "results", "logs", "benchmarks")
TINY_RUN_ARGS = ("--workflow-profile", "profiles/local", "--configfile", "tests/configs/tiny.yaml",
                 "--replace-workflow-config")
#: Most xdist workers ``-n auto`` starts: the workflow tests run Snakemake on every core themselves.
MAX_WORKERS = 4
SLURM_HINT = ("tests marked slurm were not run (they need a real SLURM): `pytest --slurm` runs them, "
              "installing slurmctld, slurmd, slurm-client and munge with apt-get (as root) where missing")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slurm", action="store_true", default=False,
                     help="also run the tests marked slurm: a real single-node SLURM, installed with "
                          "apt-get (as root) where missing")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the SLURM tests unless ``--slurm``; hand out the files with slurm or slow tests first."""
    if not config.getoption("slurm"):
        skipped = [item for item in items if item.get_closest_marker("slurm")]
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = [item for item in items if not item.get_closest_marker("slurm")]
            config.stash[_SLURM_DESELECTED] = len(skipped)

    # Files with slurm tests, then files by their number of slow tests, then the rest; within a
    # file the order stays.
    slurm: dict[Path, int] = {}
    slow: dict[Path, int] = {}
    for item in items:
        slurm[item.path] = slurm.get(item.path, 0) + bool(item.get_closest_marker("slurm"))
        slow[item.path] = slow.get(item.path, 0) + bool(item.get_closest_marker("slow"))
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (-slurm[item.path], -slow[item.path], order[id(item)]))


_SLURM_DESELECTED = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker tells the controller how many SLURM tests it left out."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["slurm_deselected"] = session.config.stash.get(_SLURM_DESELECTED, 0)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # noqa: ANN001 - xdist's WorkerController
    count = getattr(node, "workeroutput", {}).get("slurm_deselected", 0)
    node.config.stash[_SLURM_DESELECTED] = max(count, node.config.stash.get(_SLURM_DESELECTED, 0))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for ``-n auto``: one per core, at most MAX_WORKERS and, where the command line
    names files, at most one per file; none (one process) for a single file."""
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    paths = [config.invocation_params.dir / str(arg).split("::")[0] for arg in config.args]
    if paths and all(path.is_file() for path in paths):
        workers = min(workers, len(set(paths)))
    return workers if workers > 1 else 0


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # noqa: ANN001
    count = config.stash.get(_SLURM_DESELECTED, 0)
    if count and not hasattr(config, "workerinput"):
        terminalreporter.write_line(f"{count} {SLURM_HINT}", yellow=True)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository checkout the tests run from."""
    return REPO_ROOT


def copy_workflow(dest: Path) -> Path:
    """Copy what a Snakemake run needs into ``dest`` (no results, logs or caches)."""
    for rel in WORKFLOW_PATHS:
        src = REPO_ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=_SKIP)
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def deterministic_env() -> dict[str, str]:
    """This process's environment for a Snakemake run: the venv's scripts on PATH, no SLURM
    variables, and a fixed SOURCE_DATE_EPOCH (matplotlib writes it as the PDF/SVG date)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFUSION_ENERGY_SLURM_", "SLURM_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["SOURCE_DATE_EPOCH"] = "1700000000"
    return env


@pytest.fixture
def workflow_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working copy of the workflow in ``tmp_path``: Snakemake writes there, never
    into the repository's ``results/``. The rules' ``diffusion-energy`` CLI is put on PATH."""
    dest = copy_workflow(tmp_path / "workflow_copy")
    scripts = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}")
    return dest


def _shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this session sees (pytest's own base temp without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _run_once(tmp_path_factory: pytest.TempPathFactory, name: str, args: tuple[str, ...],
              prepare: Callable[[Path], None] = lambda work: None) -> Path:
    """A working copy in which Snakemake ran ``args`` once per session, whichever xdist worker asks
    first (the others wait for it, through a file lock); fails every test that uses it if the run
    fails or writes into the repository's ``results/``."""
    from slurm_cluster import run_snakemake

    shared = _shared_folder(tmp_path_factory)
    work, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.is_file():
            shutil.rmtree(work, ignore_errors=True)
            repo_results = REPO_ROOT / "results"
            before = sorted(repo_results.rglob("*")) if repo_results.exists() else []
            copy_workflow(work)
            prepare(work)
            run = run_snakemake(list(args), work, deterministic_env())
            (work / "run.log").write_text(run.log)
            assert run.returncode == 0, f"the {name} run failed:\n{run.log[-4000:]}"
            after = sorted(repo_results.rglob("*")) if repo_results.exists() else []
            assert after == before, f"the {name} run wrote into the repository's results/"
            done.write_text(f"{run.seconds:.1f} s\n")
    return work


@pytest.fixture(scope="session")
def tiny_workflow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working copy in which ``snakemake --workflow-profile profiles/local`` ran the tiny
    config's default target (tests/configs/tiny.yaml: nothing measured, no reference rows).

    Run once per session (``_run_once``). Read only: a test that runs Snakemake again copies it first
    (``shutil.copytree`` keeps the mtimes and ``.snakemake``, so the copy is up to date)."""
    return _run_once(tmp_path_factory, "tiny_workflow_run", TINY_RUN_ARGS)


#: Where ``tiny_reference_run`` puts its reference rows, and the config that reads them.
TINY_REFERENCE_DIR = "tests/data/reference"


@pytest.fixture(scope="session")
def tiny_reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config's default run as a newcomer without a GPU makes it, on shipped reference rows:
    two tiny-sd points on the H100 (32 and 64 px, 100 J and 250 J; tests/test_dataset.py's ``rows``)
    in ``TINY_REFERENCE_DIR/h100.parquet``. Run once per session for every test that reads it (the
    merge rule's, the run summary's); its terminal output is ``run.log``. Read only."""
    import pandas as pd
    from test_dataset import rows

    def shipped(work: Path) -> None:
        ref = work / TINY_REFERENCE_DIR
        ref.mkdir(parents=True)
        pd.concat([rows(energy=100.0), rows(energy=250.0, resolution=64)]).to_parquet(ref / "h100.parquet")

    args = (*TINY_RUN_ARGS, "--config", f"reference_dir={TINY_REFERENCE_DIR}")
    return _run_once(tmp_path_factory, "tiny_reference_run", args, shipped)
