"""How the suite runs (tests/conftest.py): CI runs the README's test command, which runs every
test; a plain ``pytest`` leaves the SLURM tests out, says how to run them and installs nothing;
files with slow tests are handed out first."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import watched
from conftest import REPO_ROOT

TESTS = {
    "test_plain.py": "def test_plain():\n    pass\n",
    "test_waits.py": "import pytest\n\n@pytest.mark.slow\ndef test_waits():\n    pass\n",
    "test_cluster.py": "import pytest\n\npytestmark = pytest.mark.slurm\n\ndef test_on_slurm():\n    pass\n",
}


def readme_test_command() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"Install and run the tests.*?```bash\n(.*?)\n```", text, re.DOTALL)
    assert match, "README.md: no bash block after 'Install and run the tests'"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command_verbatim_and_it_runs_every_test() -> None:
    command = readme_test_command()
    assert command in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert command.endswith("pytest --slurm"), command


def run_pytest(folder: Path, *args: str) -> str:
    proc = watched.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *args], cwd=folder)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_slurm_tests_run_only_with_the_option_and_slow_files_go_first(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "tests" / "conftest.py", tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: s\n    slurm: s\n")
    for name, text in TESTS.items():
        (tmp_path / name).write_text(text)

    plain = run_pytest(tmp_path, "-p", "no:xdist")
    assert "2 passed, 1 deselected" in plain
    assert "1 tests marked slurm were not run" in plain and "`pytest --slurm` runs them" in plain
    ran = re.findall(r"^(test_\w+)\.py::\w+ PASSED", plain, re.MULTILINE)
    assert ran == ["test_waits", "test_plain"], "the file with a slow test starts first"

    every = run_pytest(tmp_path, "-p", "no:xdist", "--slurm")
    assert "3 passed" in every and "not run" not in every
    assert re.findall(r"^(test_\w+)\.py::\w+ PASSED", every, re.MULTILINE)[0] == "test_cluster"

    parallel = run_pytest(tmp_path, "-n", "2", "--dist", "loadfile")  # the hint comes back from the workers
    assert "2 passed" in parallel and "test_on_slurm" not in parallel
    assert "1 tests marked slurm were not run" in parallel
