"""The default run on the shipped data, as a newcomer without a GPU runs it.

One run of the whole default workflow (``snakemake --cores 2``, nothing measured
locally) in a temporary copy; then: every published point imported (counted
from the upstream files themselves) and this workflow's own H200 points
(``resources/measurements/h200.parquet``) collected with their flags, the
summary and the resolution, steps and stage-share figures drawing them, the
law, cross-validation and prediction tables non-empty, the chosen models within
the error bounds they reach on these data, ``predict`` answering from the
shipped data alone, and the README's figure the one the workflow draws.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO_ROOT, WORKFLOW_PATHS

pytestmark = pytest.mark.slow

PUBLIC = REPO_ROOT / "resources" / "public"
SHIPPED_H200 = REPO_ROOT / "resources" / "measurements" / "h200.parquet"
README_FIGURE = REPO_ROOT / "docs" / "figures" / "energy_vs_flops.png"
#: What the procedure's answer reaches on the shipped data, nested (the law, its blend weights and its
#: intervals chosen without the architecture predicted): H100 architectures left out (5.0% / 12.6%), every
#: kind (6.2% median, worst 27.2%, 90% intervals holding 94.7%); the test holds them to it, with a little
#: slack.
H100_MEDIAN_APE, H100_P90_APE, H100_SPEARMAN = 0.06, 0.14, 0.99
ALL_MEDIAN_APE, ALL_MAX_APE, ALL_COVERAGE = 0.07, 0.30, (0.85, 1.0)
#: Median error per GPU kind left out (nested; the kind by its datasheet only): a100 7.4%, b200 11.7%,
#: h100 7.1%, h200 7.1% (the H200's points are SD 1.5 alone, launch-bound below 768 px).
LOGO_MEDIAN_APE = {"a100": 0.085, "h100": 0.08, "b200": 0.13, "h200": 0.08}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("default_run")
    for rel in WORKFLOW_PATHS:
        src = REPO_ROOT / rel
        if src.is_dir():
            shutil.copytree(src, work / rel, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--config", "measure_gpus=[]"],
                         cwd=work, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-4000:]
    (work / "run.log").write_text(run.stdout + run.stderr)
    return work


def _upstream_counts() -> dict[str, int]:
    """Points per published source, counted from the upstream files (not from our import)."""
    v2 = len(list((PUBLIC / "mlenergy-v2" / "text-to-image").glob("*/*/*/*.json")))
    v3 = len(json.loads((PUBLIC / "mlenergy-v3" / "text-to-image.json").read_text())["configurations"])
    video_file = PUBLIC / "mlenergy-v3-video" / "text-to-video.json"
    video = len(json.loads(video_file.read_text())["configurations"])
    quoted = pd.read_csv(REPO_ROOT / "resources" / "anchors" / "published.csv")
    own = quoted["source"].str.startswith("arXiv:2511.17031") & (quoted["metric"] == "energy_per_image")
    paper = int(own.sum())
    return {"mlenergy-v2": v2, "mlenergy-v3": v3, "mlenergy-v3-video": video, "paper-2511.17031": paper}


def test_every_published_point_is_collected(default_run: Path) -> None:
    energy = pd.read_parquet(default_run / "results" / "energy.parquet")
    counts = energy.groupby("source").size().to_dict()
    shipped = pd.read_parquet(SHIPPED_H200)
    assert counts == {**_upstream_counts(), "this-workflow": len(shipped.drop_duplicates(
        ["resolution", "steps", "cfg", "batch"]))}
    assert energy["flops"].gt(0).all(), "every imported point has its FLOPs, kernels and bytes"
    assert energy["kernels"].gt(0).all() and energy["bytes"].gt(0).all()
    published = energy[energy["source"] != "this-workflow"]
    assert published["dynamic_energy_j"].isna().all(), "nothing a source did not measure is filled in"


def test_the_shipped_h200_points_are_in_the_results_with_their_flags(default_run: Path) -> None:
    """132 rows, 11 SD 1.5 points on the H200, labelled this-workflow; the 4 flagged points kept with
    their flag; the 1024 px / 50 steps point absent (never measured, not filled in)."""
    rows = pd.read_parquet(default_run / "results" / "measurements.parquet")
    ours = rows[rows["source"] == "this-workflow"]
    assert len(ours) == 132 and set(ours["gpu"]) == {"h200"} and set(ours["model"]) == {"sd15"}
    energy = pd.read_parquet(default_run / "results" / "energy.parquet")
    points = energy[energy["source"] == "this-workflow"].set_index(["resolution", "steps"])
    assert len(points) == 11 and (1024, 50) not in points.index
    assert points["text_energy_j"].gt(0).all() and points["vae_energy_j"].gt(0).all()
    assert points["dynamic_energy_j"].gt(0).all()
    shipped = pd.read_parquet(SHIPPED_H200).drop_duplicates(["resolution", "steps"])
    flags = shipped.set_index(["resolution", "steps"])["flag"].fillna("")
    assert (flags != "").sum() == 4
    assert points["flag"].fillna("").to_dict() == flags.to_dict(), "flags travel with their points"
    assert points.loc[(512, 10), "energy_j"] == pytest.approx(93.741875)
    summary = (default_run / "results" / "summary.txt").read_text()
    assert ("this-workflow, shipped reference (resources/measurements/h200.parquet)  h200     11 points, "
            "1 models (4 flagged, kept with their flag)") in summary
    assert "Shipped reference files in resources/measurements: h200.parquet" in summary


def test_resolution_steps_and_stage_figures_draw_our_data(default_run: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """No "no measurements yet" panel: the H200 series is drawn, and its 1024 px / 50 steps gap named."""
    from matplotlib.axes import Axes

    from diffusion_energy import figures
    from diffusion_energy.figures import style

    said, texts = [], []
    monkeypatch.setattr(style, "no_data", lambda *a, **k: said.append(k.get("message", style.NO_DATA)))
    original = Axes.text

    def text(self, x, y, s, *args, **kwargs):  # noqa: ANN001, ANN202
        texts.append(str(s))
        return original(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(Axes, "text", text)
    energy = pd.read_parquet(default_run / "results" / "energy.parquet")
    for name in ("energy_vs_resolution", "energy_vs_steps", "stage_shares"):
        figures.draw(name, figures.FigureInputs(energy=energy), [default_run / f"{name}_check.png"])
        assert (default_run / f"{name}_check.png").stat().st_size > 5000
    assert not said, said
    gaps = [t for t in texts if "not measured" in t]
    assert gaps == ["sd15 (h200, this workflow): 1024 px not measured",
                    "sd15 (h200, this workflow): 50 steps not measured"], gaps


def test_tables_are_written_from_real_data(default_run: Path) -> None:
    tables = default_run / "results" / "tables"
    energy = pd.read_parquet(default_run / "results" / "energy.parquet")
    single = energy[(energy["num_gpus"] == 1) & ~energy["quoted"].astype(bool) & (energy["frames"] == 1)]
    lomo = pd.read_csv(tables / "lomo_predictions.csv")
    image = lomo[lomo["target"] == "image"]
    assert image.groupby("candidate").size().max() == len(single), "every single-GPU point is held out once"
    assert set(image["held_out"]) == set(single["model"])
    logo = pd.read_csv(tables / "logo_predictions.csv")
    assert set(logo["held_out"]) == set(single["gpu"]) == {"a100", "h100", "h200", "b200"}
    laws = pd.read_csv(tables / "laws.csv")
    paper = laws[(laws["source"] == "paper-2511.17031") & (laws["status"] == "fitted")]
    assert set(paper["model"]) == {"sd21", "sd35-large", "flux-dev", "qwen-image"}
    assert (paper["n_points"] == 3).all()
    ours = laws[(laws["source"] == "this-workflow") & (laws["status"] == "fitted")]
    assert set(ours["model"]) == {"sd15"}
    assert set(ours["target"]) >= {"image", "denoise_step", "vae"}, "our own stage laws from the H200 rows"
    assert (ours["n_points"] == 11).all()
    assert len(pd.read_csv(tables / "roofline.csv")) >= 3
    assert len(pd.read_csv(tables / "lomo_batch_metrics.csv")) > 0


def test_the_chosen_models_meet_their_error_bounds(default_run: Path) -> None:
    tables = default_run / "results" / "tables"
    metrics = pd.read_csv(tables / "nested_lomo_metrics.csv")
    image = metrics[(metrics["target"] == "image") & (metrics["held_out"] == "all")]

    def row(candidate: str, gpu: str) -> pd.Series:
        return image[(image["candidate"] == candidate) & (image["gpu"] == gpu)].iloc[0]

    h100 = row("selected", "h100")
    assert h100["median_ape"] <= H100_MEDIAN_APE and h100["p90_ape"] <= H100_P90_APE
    assert h100["spearman"] >= H100_SPEARMAN
    every = row("selected", "all")
    assert every["median_ape"] <= ALL_MEDIAN_APE and every["max_ape"] <= ALL_MAX_APE
    assert ALL_COVERAGE[0] <= every["coverage"] <= ALL_COVERAGE[1]
    assert every["p90_ape"] < row("flops", "all")["p90_ape"], "the procedure beats the FLOPs-only law"
    assert every["p90_ape"] < row("jpf", "all")["p90_ape"], "and one energy per FLOP per GPU kind"
    logo = pd.read_csv(tables / "nested_logo_metrics.csv")
    per_kind = logo[(logo["target"] == "image") & (logo["candidate"] == "selected")
                    & (logo["held_out"] != "all") & (logo["gpu"] != "all")]
    assert len(per_kind) == 4, per_kind
    assert all(r.median_ape <= LOGO_MEDIAN_APE[r.held_out] for r in per_kind.itertuples()), per_kind


def test_predict_answers_from_the_shipped_data(default_run: Path) -> None:
    def predict(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "diffusion_energy.cli", "predict", *args, "--json"],
                             cwd=default_run, capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    measured = predict("--model", "sd35-medium", "--resolution", "1024", "--steps", "28", "--gpu", "h100",
                       "--batch", "4")
    assert measured["source"] == "mlenergy-v3"
    assert measured["low_j"] < measured["energy_j"] < measured["high_j"]
    v3 = pd.read_parquet(default_run / "results" / "energy.parquet").query(
        "model == 'sd35-medium' and gpu == 'h100' and batch == 4 and num_gpus == 1").iloc[0]
    assert measured["low_j"] < v3["energy_j"] < measured["high_j"]
    # A GPU kind nobody measured (the H200 has this workflow's SD 1.5 points now) enters by its datasheet.
    unseen = predict("--model", "hunyuandit-v1.2", "--resolution", "1024", "--steps", "50", "--gpu", "l40s",
                     "--grid-intensity", "400", "--images", "1000")
    assert unseen["co2e_g_per_image"] == pytest.approx(unseen["energy_j"] / 3.6e6 * 400)
    assert any("l40s has no points in the fitted data" in n for n in unseen["notes"])
    # The H200 run's missing point (SD 1.5, 1024 px, 50 steps) is predicted by our own law, never filled in.
    gap = predict("--model", "sd15", "--resolution", "1024", "--steps", "50", "--gpu", "h200")
    assert gap["source"] == "this-workflow" and "measured by this workflow" in gap["law"]
    at_25 = pd.read_parquet(default_run / "results" / "energy.parquet").query(
        "source == 'this-workflow' and resolution == 1024 and steps == 25")["energy_j"].iloc[0]
    assert gap["low_j"] < gap["energy_j"] < gap["high_j"] and gap["energy_j"] > at_25


def test_laws_across_modalities_and_predict_for_a_video_model_nobody_measured(default_run: Path) -> None:
    """The video rows enter the three experiments; predict answers CogVideoX 1.5 5B (rows kept back)."""
    energy = pd.read_parquet(default_run / "results" / "energy.parquet")
    video = energy[(energy["frames"] > 1) & (energy["num_gpus"] == 1)]
    assert len(video) == 35 and video["flops"].gt(0).all()
    assert (video["energy_per_frame_j"] * video["frames"]).round(6).equals(video["energy_j"].round(6))
    m = pd.read_csv(default_run / "results" / "tables" / "modality_metrics.csv")
    overall = m[(m["gpu"] == "all") & (m["held_out"] == "all") & (m["modality"] == "video")]
    assert set(overall["experiment"]) == {"video_lomo", "image_to_video", "joint_lomo"}
    assert (overall.groupby("experiment")["n_points"].max() == 35).all()
    joint = json.loads((default_run / "results" / "laws" / "modalities.json").read_text())
    chosen = joint["pooled"]["image"]["selected"]
    best = overall[(overall["experiment"] == "joint_lomo") & (overall["candidate"] == chosen)].iloc[0]
    assert best["median_ape"] <= 0.12 and best["p90_ape"] <= 0.25, best
    args = ["predict", "--model", "cogvideox1.5-5b", "--steps", "50", "--gpu", "h100", "--json"]
    out = subprocess.run([sys.executable, "-m", "diffusion_energy.cli", *args], cwd=default_run,
                         capture_output=True, text=True, check=True).stdout
    answer = json.loads(out)
    assert answer["frames"] == 81 and (answer["height"], answer["width"]) == (768, 1360)
    assert answer["low_j"] < answer["energy_j"] < answer["high_j"]
    h100 = video[(video["gpu"] == "h100") & (video["batch"] == 1)].set_index("model")["energy_j"]
    assert h100["cogvideox-2b"] < answer["energy_j"] < h100["hunyuanvideo"], "between the smaller and larger"


def test_readme_figure_is_what_the_workflow_draws(default_run: Path) -> None:
    from matplotlib.image import imread

    drawn = imread(default_run / "results" / "figures" / "energy_vs_flops.png")
    committed = imread(README_FIGURE)
    assert drawn.shape == committed.shape, "regenerate: snakemake readme_figures"
    differs = np.abs(drawn - committed).max(axis=-1) > 0.05
    assert differs.mean() < 0.002, f"{differs.mean():.2%} of the pixels differ: snakemake readme_figures"


def test_config_of_the_run_is_the_shipped_one(default_run: Path) -> None:
    shipped = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    assert set(shipped["public_sources"]) == set(_upstream_counts())
