"""The analysis through the workflow (Snakemake API), always in a temporary working copy.

* With no measurements every analysis target still builds: empty tables with their
  header, a laws JSON saying "no data", figures saying "no measurements yet".
* One figure target schedules only that figure's rule and the rules of its inputs;
  forcing it again reruns only that rule.
* The shipped reference dataset goes end to end in the default run (tests/test_shipped_data.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pytest
from conftest import deterministic_env
from workflow_support import TINY_CONFIG, run_workflow

from diffusion_energy.figures import FIGURE_NAMES
from diffusion_energy.laws import analysis, crossval, modalities, parallelism
from diffusion_energy.sources import anchors

REPO = Path(__file__).resolve().parents[1]
TINY_MODELS = ("tiny-flux", "tiny-sd")
UPSTREAM = {
    "results/flops.parquet",
    "results/flops_ops.parquet",
    "results/measurements.parquet",
    "results/energy.parquet",
}
CROSSVAL = {
    f"results/tables/{n}.csv"
    for n in ("nested_lomo_predictions", "nested_lomo_metrics", "nested_logo_predictions",
              "nested_logo_metrics", "lomo_predictions", "lomo_metrics", "lomo_batch_metrics",
              "logo_predictions", "logo_metrics")
}
FIT = {"results/laws/laws.json", *(f"results/tables/{n}.csv" for n in ("laws", "law_terms", "roofline"))}
ANCHORS = {"results/tables/anchors_energy.csv", "results/tables/anchors_laws.csv"}
MODALITIES = {"results/tables/modality_predictions.csv", "results/tables/modality_metrics.csv",
              "results/laws/modalities.json"}
PARALLEL = {"results/tables/multi_gpu_predictions.csv", "results/tables/multi_gpu_metrics.csv",
            "results/laws/parallel.json"}
FIGURES = {f"results/figures/{n}.{ext}" for n in FIGURE_NAMES for ext in ("pdf", "png")}
TABLE_COLUMNS = {
    "nested_lomo_predictions": [*crossval.PREDICTION_COLUMNS, "chosen"],
    "nested_logo_predictions": [*crossval.PREDICTION_COLUMNS, "chosen"],
    "nested_lomo_metrics": crossval.METRIC_COLUMNS,
    "nested_logo_metrics": crossval.METRIC_COLUMNS,
    "lomo_predictions": crossval.PREDICTION_COLUMNS,
    "logo_predictions": crossval.PREDICTION_COLUMNS,
    "lomo_metrics": crossval.METRIC_COLUMNS,
    "lomo_batch_metrics": crossval.BATCH_METRIC_COLUMNS,
    "logo_metrics": crossval.METRIC_COLUMNS,
    "laws": analysis.LAW_COLUMNS,
    "law_terms": analysis.TERM_COLUMNS,
    "roofline": analysis.ROOFLINE_COLUMNS,
    "anchors_energy": anchors.ENERGY_COLUMNS,
    "anchors_laws": anchors.LAW_COLUMNS,
    "modality_predictions": modalities.PREDICTION_COLUMNS,
    "modality_metrics": modalities.METRIC_COLUMNS,
    "multi_gpu_predictions": parallelism.PREDICTION_COLUMNS,
    "multi_gpu_metrics": parallelism.METRIC_COLUMNS,
}


def run(
    workdir: Path,
    targets: Iterable[str] = (),
    executor: str = "dryrun",
    forcerun: Iterable[str] = (),
    config: dict | None = None,
    configfile: Path | None = TINY_CONFIG,
) -> set[str]:
    """Outputs of the jobs Snakemake planned (dry run) or ran in ``workdir``, on the tiny config."""
    return set(run_workflow(workdir, targets, executor, config, configfile, forcerun=forcerun))


def test_default_target_requests_every_analysis_output(workflow_copy: Path) -> None:
    planned = run(workflow_copy)
    assert FIT | CROSSVAL | ANCHORS | FIGURES | MODALITIES | PARALLEL <= planned


@pytest.mark.parametrize(
    ("figure", "needs"),
    [
        ("stage_shares", set()),
        # The held-out multi-GPU predictions rest on the nested single-GPU ones (images, videos).
        ("multi_gpu", CROSSVAL | MODALITIES | PARALLEL),
        ("energy_vs_flops", CROSSVAL | FIT),
        ("j_per_pflop", CROSSVAL | FIT),
        ("energy_vs_batch", CROSSVAL),
        ("lomo_predicted_vs_measured", CROSSVAL | FIT),
        ("published_anchors", CROSSVAL | FIT | ANCHORS),
        ("video_energy_vs_flops", MODALITIES),
    ],
)
def test_one_figure_schedules_only_what_it_needs(workflow_copy: Path, figure: str, needs: set[str]) -> None:
    planned = run(workflow_copy, [f"results/figures/{figure}.pdf"])
    own = {f"results/figures/{figure}.pdf", f"results/figures/{figure}.png"}
    assert planned == UPSTREAM | needs | own


@pytest.mark.slow
def test_empty_dataset_builds_every_analysis_target(
    tiny_workflow_run: Path, tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny config's default run (conftest's tiny_workflow_run, which also checks that
    nothing was written into the repository's results/), copied here before Snakemake runs again."""
    results_before = sorted((repo_root / "results").rglob("*")) if (repo_root / "results").exists() else []
    workflow_copy = tmp_path / "tiny_run"
    shutil.copytree(tiny_workflow_run, workflow_copy, symlinks=True)
    monkeypatch.setenv("PATH", deterministic_env()["PATH"])  # the rules' python3 is this venv's
    built = {str(p.relative_to(workflow_copy)) for p in (workflow_copy / "results").rglob("*") if p.is_file()}
    assert FIT | CROSSVAL | ANCHORS | FIGURES | MODALITIES | PARALLEL <= built
    assert json.loads((workflow_copy / "results/laws/modalities.json").read_text())["status"] == "no data"
    parallel = json.loads((workflow_copy / "results/laws/parallel.json").read_text())
    assert parallel["image"]["status"] == parallel["video"]["status"] == "not fitted"
    results = workflow_copy / "results"
    laws = json.loads((results / "laws" / "laws.json").read_text())
    assert laws["status"] == "no data" and laws["n_points"] == 0
    for name, columns in TABLE_COLUMNS.items():
        table = pd.read_csv(results / "tables" / f"{name}.csv")
        assert list(table.columns) == list(columns), name
        assert table.empty, name
    for f in FIGURES:
        assert (workflow_copy / f).stat().st_size > 5000, f
    assert "no measured points" in laws["reason"]
    # Up to date afterwards; forcing one figure reruns that figure's rule only.
    assert run(workflow_copy) == set()
    forced = run(
        workflow_copy,
        ["results/figures/j_per_pflop.png"],
        executor="local",
        forcerun=["figure_j_per_pflop"],
    )
    assert forced == {"results/figures/j_per_pflop.pdf", "results/figures/j_per_pflop.png"}
    # The report bundles the figures and tables with their captions.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--configfile",
            str(TINY_CONFIG),
            "--replace-workflow-config",
            "--report",
            "report.html",
        ],
        cwd=workflow_copy,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (workflow_copy / "report.html").read_text(errors="replace")
    assert "energy_vs_flops.png" in html and "lomo_metrics.csv" in html
    after = sorted((repo_root / "results").rglob("*")) if (repo_root / "results").exists() else []
    assert after == results_before
