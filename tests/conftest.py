"""Shared fixtures: the repository root and a temporary working copy of the workflow."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: What a Snakemake run needs from the repository (results, logs and caches aside).
WORKFLOW_PATHS = (
    "Snakefile", "workflow", "config", "envs", "profiles", "resources", "tests/configs", "tests/data",
)
_SKIP = shutil.ignore_patterns("__pycache__", "*.egg-info", ".snakemake", "results", "logs", "benchmarks")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository checkout the tests run from."""
    return REPO_ROOT


@pytest.fixture
def workflow_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working copy of the workflow in ``tmp_path``: Snakemake writes there, never
    into the repository's ``results/``. The rules' ``diffusion-energy`` CLI is put on PATH."""
    dest = tmp_path / "workflow_copy"
    for rel in WORKFLOW_PATHS:
        src = REPO_ROOT / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=_SKIP)
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    scripts = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}")
    return dest
