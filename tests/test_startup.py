"""Commands answer at once: what the command line, ``predict`` and the Snakefile import, and what they log.

No timing here (benchmarks/cli_latency.py times them): the checks read which
modules a run imported (``python -X importtime`` lists every one), so they hold
on any machine. torch, diffusers and transformers (seconds), matplotlib and
scipy.stats are imported only by the commands that use them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: Libraries that take seconds to import, and that none of the checked commands needs.
HEAVY = ("torch", "diffusers", "transformers", "matplotlib", "scipy.stats", "statsmodels")


def imported(args: list[str], cwd: Path, expect: int = 0) -> tuple[set[str], str]:
    """(every module ``python -X importtime ARGS`` imported, the rest of its stderr)."""
    run = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600)
    lines = run.stderr.splitlines()
    assert run.returncode == expect, "\n".join(line for line in lines if not line.startswith("import time:"))
    names = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    return names, "\n".join(line for line in lines if not line.startswith("import time:"))


def heavy(names: set[str]) -> list[str]:
    return sorted(h for h in HEAVY if h in names)


CLI = ["-m", "diffusion_energy.cli"]


@pytest.mark.parametrize("args, expect", [
    (["--help"], 0),
    (["predict", "--help"], 0),
    (["predict", "--model", "sd15"], 2),  # --steps missing: argparse's error
    (["flops", "--model", "sd15", "--resolutions", "0", "--out", "x"], 2),
])
def test_help_and_argument_errors_import_no_library(tmp_path: Path, args: list[str], expect: int) -> None:
    names, _ = imported([*CLI, *args], tmp_path, expect)
    assert not heavy(names) and "pandas" not in names and "numpy" not in names
    assert "yaml" not in names


def test_import_of_the_command_line_and_the_package_imports_nothing_heavy(tmp_path: Path) -> None:
    names, _ = imported(["-c", "import diffusion_energy, diffusion_energy.cli"], tmp_path)
    assert not heavy(names) and "pandas" not in names


@pytest.mark.parametrize("args", [
    ["--model", "sd35-medium", "--resolution", "1024", "--steps", "28", "--gpu", "h100", "--batch", "4"],
    ["--model", "cogvideox1.5-5b", "--steps", "50", "--gpu", "h100"],
    ["--model", "hunyuandit-v1.2", "--resolution", "1024", "--steps", "50", "--gpu", "l40s"],
])
def test_predict_in_any_folder_answers_from_the_shipped_counts_without_torch(tmp_path: Path,
                                                                            args: list[str]) -> None:
    names, err = imported([*CLI, "predict", *args], tmp_path)
    assert heavy(names) == [], "predict counted on the meta device: the shipped counts should answer"
    assert err == "", "predict logs nothing at the default level (WARNING): INFO lines are -v's"


def test_logging_is_at_warning_by_default_and_v_gives_info(tmp_path: Path, repo_root: Path) -> None:
    shipped = str(repo_root / "resources" / "measurements" / "h200.parquet")
    args = [*CLI, "merge-measurements", "--reference", shipped, "--out", str(tmp_path / "m.parquet")]
    quiet = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True)
    loud = subprocess.run([sys.executable, *args[:2], "-v", *args[2:]], capture_output=True, text=True,
                          check=True)
    assert " INFO " not in quiet.stderr
    assert "INFO diffusion_energy.cli.measurement" in loud.stderr


def test_every_rule_passes_v_so_the_logs_keep_their_info_lines(repo_root: Path) -> None:
    files = [repo_root / "Snakefile", *sorted((repo_root / "workflow" / "rules").glob("*.smk"))]
    calls = [line.strip() for f in files for line in f.read_text().splitlines()
             if line.strip().startswith('"python3 -m diffusion_energy.cli')]
    assert calls and all("diffusion_energy.cli -v " in c for c in calls), calls


@pytest.mark.slow
def test_parsing_the_snakefile_imports_no_torch_nor_the_drawing(workflow_copy: Path) -> None:
    names, _ = imported(["-m", "snakemake", "-n", "--cores", "1", "results/flops.parquet"], workflow_copy)
    assert heavy(names) == []
