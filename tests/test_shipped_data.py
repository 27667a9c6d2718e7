"""The default run on the shipped data, as a newcomer without a GPU runs it.

One run of the whole default workflow (``snakemake --cores 2``, nothing measured
locally) in a temporary copy, after a simulated H200 measured one job there;
then: every published point imported (counted from the upstream files
themselves) and this workflow's own H200 points
(``resources/measurements/h200.parquet``) collected with their flags, the
summary and the resolution, steps and stage-share figures drawing them, the
law, cross-validation and prediction tables non-empty, the chosen models within
the error bounds they reach on these data, ``predict`` answering from the
shipped data alone, and the README's figure the one the workflow draws.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import watched
import yaml
from conftest import REPO_ROOT, WORKFLOW_PATHS
from workflow_support import run_workflow

from diffusion_energy import package_data
from diffusion_energy.measurement.simulated_gpu import ENV as SIMULATED_ENV
from diffusion_energy.sources import dataset

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
#: The multi-GPU law held out by architecture (ML.ENERGY v3's 473 image and 261 video rows on 2-8 GPUs):
#: images 15.3% median with the one-GPU energy measured, 20.3% median / 57.6% P90 end to end, 93.0%
#: of the 90% intervals; videos 3.7%, 15.9% / 24.1%, 100%. Held to it with a little slack.
MULTI_GPU = {"image": {"ratio": 0.17, "median": 0.22, "p90": 0.62, "coverage": 0.88, "points": 454},
             "video": {"ratio": 0.05, "median": 0.18, "p90": 0.27, "coverage": 0.90, "points": 226}}


#: One point of the simulated H200 (its kind keeps it apart: h200-simulated).
SIMULATED_POINT = "results/measurements/h200-simulated/sd15/fp16/256px_10steps_cfg1_b1.parquet"


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy's default run, after a simulated measure run in it (issue 25: simulated rows must
    never shadow the real shipped ones), with the simulated GPU still selected."""
    work = tmp_path_factory.mktemp("default_run")
    for rel in WORKFLOW_PATHS:
        src = REPO_ROOT / rel
        if src.is_dir():
            shutil.copytree(src, work / rel, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / rel)
    simulated = {**os.environ, SIMULATED_ENV: "h200"}
    measured = watched.run([sys.executable, "-m", "snakemake", "--cores", "2", SIMULATED_POINT], cwd=work,
                           env=simulated)
    assert measured.returncode == 0, measured.stderr[-4000:]
    run = watched.run([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=work, env=simulated)
    assert run.returncode == 0, run.stderr[-4000:]
    (work / "run.log").write_text(run.stdout + run.stderr)
    return work


def test_a_simulated_measure_run_leaves_the_real_h200_points_alone(
        default_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated job wrote under its own kind, said so in every line, and neither the merge nor
    the collection took its rows; a later real H200 run still has its jobs to do."""
    rows = pd.read_parquet(default_run / SIMULATED_POINT)
    assert (rows["gpu"] == "h200-simulated").all() and rows["energy_status"].str.startswith("simulated").all()
    assert not (default_run / "results" / "measurements" / "h200").exists()
    job_log = (default_run / "logs" / "measure" / "h200-simulated" / "sd15.log").read_text().splitlines()
    assert job_log and all("[h200-simulated]" in line for line in job_log)
    merged = pd.read_parquet(default_run / "results" / "measurements.parquet")
    assert not dataset.simulated_rows(merged).any()
    shipped = pd.read_parquet(SHIPPED_H200)
    ours = merged[merged["source"] == "this-workflow"]
    assert len(ours) == len(shipped) == 132 and (ours["energy_status"] == "measured").all()
    assert "h200-simulated" in (default_run / "results" / "summary.txt").read_text()
    monkeypatch.delenv(SIMULATED_ENV, raising=False)
    planned = run_workflow(default_run, targets=["measurements"], config={"measure_gpus": ["h200"]})
    assert "results/measurements/h200/sd15/fp16/256px_10steps_cfg1_b1.parquet" in planned


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
    roofline = pd.read_csv(tables / "roofline.csv")
    assert set(roofline["target"]) == {"image", "image_dynamic"} and (roofline["gpu"] == "all").all()
    assert (roofline[["efficiency_matmul", "efficiency_attention", "efficiency_conv"]] <= 1).all().all()
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
                       "--batch", "4", "--stack", "xdit")
    assert measured["source"] == "mlenergy-v3" and measured["stack"] == "xdit"
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


def test_the_multi_gpu_law_is_held_out_by_architecture_and_answers_its_points(default_run: Path) -> None:
    energy = pd.read_parquet(default_run / "results" / "energy.parquet")
    multi = energy[energy["num_gpus"] > 1]
    laws = json.loads((default_run / "results" / "laws" / "parallel.json").read_text())
    metrics = pd.read_csv(default_run / "results" / "tables" / "multi_gpu_metrics.csv")
    for modality, bound in MULTI_GPU.items():
        rows = multi[(multi["frames"] > 1) == (modality == "video")]
        law = laws[modality]
        # Every multi-GPU row is fitted on or listed as lacking its one-GPU point: none dropped silently.
        listed = len(law["unpaired"]) + len(law["no_nvlink"])
        assert law["n_points"] + listed == len(rows) and law["n_points"] == bound["points"]
        assert 0 <= law["replicated_share"] <= 1 and law["ulysses_exposure"] >= 0 <= law["ring_exposure"]
        row = metrics[(metrics["modality"] == modality) & (metrics["held_out"] == "all")
                      & (metrics["gpu"] == "all")].iloc[0]
        assert row["n_points"] == bound["points"]
        assert row["ratio_median_ape"] <= bound["ratio"] and row["median_ape"] <= bound["median"]
        assert row["p90_ape"] <= bound["p90"] and row["coverage"] >= bound["coverage"], row
    # A measured 8-GPU point (FLUX.1-dev on H100s, Ulysses 8) lies inside the answer's interval.
    point = multi.query("model == 'flux-dev' and gpu == 'h100' and batch == 1 and ulysses_degree == 8")
    point = point.iloc[0]
    out = subprocess.run([sys.executable, "-m", "diffusion_energy.cli", "predict", "--model", "flux-dev",
                          "--resolution", str(int(point["resolution"])), "--steps", str(int(point["steps"])),
                          "--gpu", "h100", "--gpus", "8", "--json"], cwd=default_run, capture_output=True,
                         text=True, check=True).stdout
    answer = json.loads(out)
    assert answer["num_gpus"] == 8 and answer["stack"] == "xdit"
    assert answer["low_j"] < point["energy_j"] < answer["high_j"], (answer, point["energy_j"])


def test_laws_across_modalities_and_predict_for_a_video_model_nobody_measured(default_run: Path) -> None:
    """The video rows enter the three experiments; predict answers CogVideoX 1.5 5B (rows kept back)."""
    energy = pd.read_parquet(default_run / "results" / "energy.parquet")
    video = energy[(energy["frames"] > 1) & (energy["num_gpus"] == 1)]
    assert len(video) == 35 and video["flops"].gt(0).all()
    assert (video["energy_per_frame_j"] * video["frames"]).round(6).equals(video["energy_j"].round(6))
    m = pd.read_csv(default_run / "results" / "tables" / "modality_metrics.csv")
    overall = m[(m["gpu"] == "all") & (m["held_out"] == "all") & (m["modality"] == "video")]
    assert set(overall["experiment"]) == {"video_lomo", "image_to_video", "joint_lomo", "joint_lomo_nested"}
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


#: The figures the shipped data leave empty (with the reason they give).
EMPTY_ON_SHIPPED_DATA = {"precision_ratio": "no fp32 measurements yet"}


def test_every_caption_says_what_its_figure_draws(default_run: Path, tmp_path: Path) -> None:
    """Each caption's checkable claims (tests/caption_checks.py: line styles, units, the series drawn,
    flagged points marked, labels and legends off the data) hold for the figure the default run draws."""
    from caption_checks import check_caption

    from diffusion_energy import figures
    from diffusion_energy.cli.analysis import figure_inputs

    results = default_run / "results"
    tables = results / "tables"
    inputs = figure_inputs(str(results / "energy.parquet"), str(results / "laws" / "laws.json"),
                           str(tables / "lomo_predictions.csv"), str(tables / "lomo_metrics.csv"),
                           str(tables / "anchors_energy.csv"), str(tables / "anchors_laws.csv"),
                           str(tables / "modality_predictions.csv"),
                           str(tables / "multi_gpu_predictions.csv"))
    for name in figures.FIGURES:
        fig = figures.draw(name, inputs, [tmp_path / f"{name}.png"])
        assert check_caption(name, fig, inputs) == (name not in EMPTY_ON_SHIPPED_DATA), name


def test_readme_figure_is_what_the_workflow_draws(default_run: Path) -> None:
    from matplotlib.image import imread

    drawn = imread(default_run / "results" / "figures" / "energy_vs_flops.png")
    committed = imread(README_FIGURE)
    assert drawn.shape == committed.shape, "regenerate: snakemake readme_figures"
    differs = np.abs(drawn - committed).max(axis=-1) > 0.05
    assert differs.mean() < 0.002, f"{differs.mean():.2%} of the pixels differ: snakemake readme_figures"


def _same(shipped: object, fresh: object, where: str = "") -> list[str]:
    """Where two laws files differ (numbers to 1e-6 relative: another machine's floating point)."""
    if isinstance(shipped, dict) and isinstance(fresh, dict):
        if set(shipped) != set(fresh):
            return [f"{where}: keys {sorted(set(shipped) ^ set(fresh))}"]
        return [d for k in shipped for d in _same(shipped[k], fresh[k], f"{where}.{k}")]
    if isinstance(shipped, list) and isinstance(fresh, list):
        if len(shipped) != len(fresh):
            return [f"{where}: {len(shipped)} entries, {len(fresh)} fresh"]
        return [d for i, (a, b) in enumerate(zip(shipped, fresh, strict=True))
                for d in _same(a, b, f"{where}[{i}]")]
    if isinstance(shipped, float) and isinstance(fresh, float | int):
        return [] if np.isclose(shipped, fresh, rtol=1e-6, atol=1e-12, equal_nan=True) else \
            [f"{where}: {shipped} shipped, {fresh} fresh"]
    return [] if shipped == fresh else [f"{where}: {shipped!r} shipped, {fresh!r} fresh"]


@pytest.mark.parametrize("name", [package_data.LAWS, package_data.VIDEO_LAWS, package_data.PARALLEL_LAWS])
def test_the_laws_shipped_with_the_package_are_the_runs(default_run: Path, name: str) -> None:
    shipped = json.loads(package_data.path(name).read_text())
    fresh = json.loads((default_run / "results" / "laws" / name).read_text())
    differ = _same(shipped, fresh)
    assert not differ, f"{len(differ)} differences, e.g. {differ[:3]}: regenerate with snakemake package_data"


@pytest.mark.parametrize("name", [package_data.FLOPS, package_data.OPS])
def test_the_counts_shipped_with_the_package_are_the_runs(default_run: Path, name: str) -> None:
    fresh = pd.read_parquet(default_run / "results" / name)
    shipped = pd.read_parquet(package_data.path(name))
    shipped = shipped[shipped["model"].isin(set(fresh["model"]))]
    keys = list(fresh.columns)
    pd.testing.assert_frame_equal(shipped.sort_values(keys).reset_index(drop=True),
                                  fresh.sort_values(keys).reset_index(drop=True), check_dtype=False)


def test_config_of_the_run_is_the_shipped_one(default_run: Path) -> None:
    shipped = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    assert set(shipped["public_sources"]) == set(_upstream_counts())
