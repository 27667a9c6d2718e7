"""Every figure: one function, PDF and PNG, on simulated data and on no data ("no measurements yet")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import simulate
import yaml
from analysis_support import TINY_MODELS, TINY_RESOLUTIONS, counted_flops, energy_table, paper_truth, settings
from caption_checks import check_caption
from matplotlib.figure import Figure

from diffusion_energy import cli, figures
from diffusion_energy.figures import style
from diffusion_energy.laws import analysis, analysis_io, crossval, modalities, parallelism
from diffusion_energy.sources import anchors, dataset, importing

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "resources" / "anchors" / "published.csv"


def _check(paths: list[Path]) -> None:
    for p in paths:
        data = p.read_bytes()
        assert data[:4] == (b"%PDF" if p.suffix == ".pdf" else b"\x89PNG"), p
        assert len(data) > 5000, p


def _outs(tmp_path: Path, name: str) -> list[Path]:
    return [tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"]


@pytest.fixture(scope="module")
def analysed(request: pytest.FixtureRequest) -> dict:
    """Simulated energies (fp32 points included) and everything the figures draw from them."""
    table, ops = counted_flops(getattr(request.config, "cache", None), TINY_MODELS, TINY_RESOLUTIONS)
    points = simulate.grid(table, [5, 20], gpus=["h100", "h200"], fp32_models=[])
    # The tiny models run in fp32: add half-precision twins so the precision ratio has pairs.
    points += [p.__class__(**{**p.__dict__, "precision": "fp16"}) for p in points if p.model == "tiny-sd"]
    energy = energy_table(simulate.simulate_paper_law(points, table, paper_truth(TINY_MODELS),
                                                      np.random.default_rng(3)), table)
    pts, inputs = analysis.prepare(energy, table, ops)
    cv = analysis.run_crossval(pts, inputs, settings(bootstrap=50))
    payload, _ = analysis.run_fit(pts, inputs, cv["lomo_predictions"], cv["lomo_metrics"], settings(50))
    published = anchors.read_published(PUBLISHED)
    return {"energy": energy, "payload": payload, **cv,
            "anchor_energy": anchors.compare_energy(published, energy),
            "anchor_laws": anchors.compare_laws(published, payload)}


def _inputs(d: dict) -> figures.FigureInputs:
    no_videos = pd.DataFrame(columns=modalities.PREDICTION_COLUMNS)
    return figures.FigureInputs(
        energy=d["energy"], laws=d["payload"], predictions=d["lomo_predictions"], metrics=d["lomo_metrics"],
        anchor_energy=d["anchor_energy"], anchor_laws=d["anchor_laws"],
        modality_predictions=d.get("modality_predictions", no_videos),
        multi_gpu_predictions=pd.DataFrame(columns=parallelism.PREDICTION_COLUMNS))


def _draw(name: str, d: dict, outs: list[Path]) -> Figure:
    return figures.draw(name, _inputs(d), outs)


#: Figures whose data the simulated set (tiny models, batch 1, one GPU) does not hold, and what they say.
NEEDS_PUBLISHED = {"energy_vs_batch": ["no batch sweeps measured"], "multi_gpu": ["no multi-GPU points"],
                   "published_anchors": ["no other source at the published settings", "no fitted law yet"],
                   "video_energy_vs_flops": ["no video points"]}


def test_one_function_per_figure() -> None:
    assert list(figures.FIGURES) == list(figures.FIGURE_NAMES)
    for name in figures.FIGURE_NAMES:
        assert callable(figures.FIGURES[name][0]), name
        assert (REPO / "workflow" / "report" / f"{name}.rst").is_file(), f"{name} has no caption"


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    said: list[str] = []
    original = style.no_data

    def record(ax, *args, **kwargs) -> None:  # noqa: ANN001
        said.append(kwargs.get("message", args[2] if len(args) > 2 else style.NO_DATA))
        original(ax, *args, **kwargs)

    monkeypatch.setattr(style, "no_data", record)
    return said


@pytest.mark.parametrize("name", figures.FIGURE_NAMES)
def test_figure_on_simulated_data(name: str, analysed: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                  ) -> None:
    """Every figure draws the simulated data, and what it draws is what its caption says."""
    said = _recording(monkeypatch)
    outs = _outs(tmp_path, name)
    fig = _draw(name, analysed, outs)
    _check(outs)
    if name in NEEDS_PUBLISHED:
        assert said == NEEDS_PUBLISHED[name], said
    else:
        assert not said, f"{name} said there was no data: {said}"
        assert check_caption(name, fig, _inputs(analysed))


@pytest.fixture(scope="module")
def published_points() -> pd.DataFrame:
    """ML.ENERGY v3's rows, imported from the shipped files (batch sweeps and multi-GPU runs)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    rows = importing.import_source(REPO / config["public_sources"]["mlenergy-v3"], config["upstream_models"],
                                   config["gpu_kinds"])
    return rows[[c for c in rows.columns if c in dataset.ENERGY_COLUMNS]].assign(status="ok")


@pytest.mark.parametrize("name", ["energy_vs_batch", "multi_gpu"])
def test_figures_of_the_published_batch_sweeps_and_multi_gpu_runs(
        name: str, published_points: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    said = _recording(monkeypatch)
    outs = _outs(tmp_path, name)
    inputs = figures.FigureInputs(
        energy=published_points, predictions=pd.DataFrame(columns=crossval.PREDICTION_COLUMNS),
        metrics=pd.DataFrame(columns=crossval.METRIC_COLUMNS),
        multi_gpu_predictions=pd.DataFrame(columns=parallelism.PREDICTION_COLUMNS))
    fig = figures.draw(name, inputs, outs)
    _check(outs)
    assert not said, said
    assert check_caption(name, fig, inputs)


@pytest.mark.parametrize("name", figures.FIGURE_NAMES)
def test_figure_says_no_measurements_yet(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    said = _recording(monkeypatch)
    empty = analysis_io.usable_points(dataset.collect_energy(pd.DataFrame(), pd.DataFrame()))
    points, inputs = analysis.prepare(empty, None, None)
    payload, _ = analysis.run_fit(points, inputs, pd.DataFrame(), pd.DataFrame(), settings())
    d = {"energy": empty, "payload": payload,
         "lomo_predictions": pd.DataFrame(columns=crossval.PREDICTION_COLUMNS),
         "lomo_metrics": pd.DataFrame(columns=crossval.METRIC_COLUMNS),
         "anchor_energy": pd.DataFrame(columns=anchors.ENERGY_COLUMNS),
         "anchor_laws": pd.DataFrame(columns=anchors.LAW_COLUMNS)}
    outs = _outs(tmp_path, name)
    _draw(name, d, outs)
    _check(outs)
    assert said and all(s.startswith("no ") for s in said), said


def test_figure_command_writes_both_formats(analysed: dict, tmp_path: Path) -> None:
    energy = tmp_path / "energy.parquet"
    analysed["energy"].to_parquet(energy)
    outs = _outs(tmp_path, "stage_shares")
    assert cli.main(["figure", "stage_shares", "--energy", str(energy), "--out", *map(str, outs)]) == 0
    _check(outs)
    # A figure that needs the laws says so when they are not given.
    assert cli.main(["figure", "energy_vs_flops", "--energy", str(energy), "--out", str(outs[0])]) == 2


def test_anchor_matching_maps_names_units_and_settings(analysed: dict) -> None:
    published = anchors.read_published(PUBLISHED)
    assert published.loc[published["model"] == "sd2", "zoo_model"].unique().tolist() == ["sd21"]
    assert published.loc[published["model"] == "sd3.5-large", "zoo_model"].unique().tolist() == ["sd35-large"]
    measured = pd.DataFrame([
        {"gpu": "h100", "model": "sd21", "precision": "fp16", "resolution": 768.0, "steps": 25.0, "cfg": True,
         "batch": 1.0, "energy_j": 380.0},
        {"gpu": "h100", "model": "sd21", "precision": "fp16", "resolution": 768.0, "steps": 50.0, "cfg": True,
         "batch": 1.0, "energy_j": 700.0},
        {"gpu": "h100", "model": "flux-dev", "precision": "bf16", "resolution": 1024.0, "steps": 50.0,
         "cfg": False, "batch": 1.0, "energy_j": 6000.0},
    ])
    table = anchors.compare_energy(published, measured)
    sd21 = table[table["model"] == "sd21"]
    assert set(sd21["steps"]) == {25}  # 50 steps at 768 px was never published
    h100 = sd21[sd21["published_gpu"] == "h100"].iloc[0]
    assert h100["same_gpu"] and h100["published_j"] == 387.0
    flux = table[table["model"] == "flux-dev"].iloc[0]
    assert flux["published_j"] == pytest.approx(4.278 * 3600)
    assert "distilled" in flux["note"] and not flux["same_gpu"]


@pytest.mark.parametrize(("name", "gap"), [
    ("energy_vs_resolution", "tiny-sd (h200, this workflow): 96 px not measured"),
    ("energy_vs_steps", "tiny-sd (h200, this workflow): 20 steps not measured")])
def test_a_point_a_series_lacks_is_named_in_its_panel(name: str, gap: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A grid point that was never measured (the H200 run's 1024 px / 50 steps) is a visible gap, named,
    not a line that silently stops short; the legend gives each source's GPU kinds."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    points = [{"source": "this-workflow", "gpu": "h200", "model": "tiny-sd", "precision": "fp16",
               "resolution": r, "steps": s, "cfg": True, "batch": 1, "num_gpus": 1, "status": "ok",
               "energy_j": float(r * s)} for r in (32, 64, 96) for s in (5, 10, 20) if (r, s) != (96, 20)]
    texts: list[str] = []
    legends: list[list[str]] = []
    text, legend = Axes.text, Figure.legend

    def record_text(self, x, y, s, *args, **kwargs):  # noqa: ANN001, ANN202
        texts.append(str(s))
        return text(self, x, y, s, *args, **kwargs)

    def record_legend(self, *args, **kwargs):  # noqa: ANN001, ANN202
        legends.append([h.get_label() for h in kwargs.get("handles", [])])
        return legend(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "text", record_text)
    monkeypatch.setattr(Figure, "legend", record_legend)
    outs = _outs(tmp_path, name)
    figures.draw(name, figures.FigureInputs(energy=pd.DataFrame(points)), outs)
    _check(outs)
    assert [t for t in texts if "not measured" in t] == [gap]
    assert "this workflow: h200" in legends[0]
