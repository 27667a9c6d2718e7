"""Laws across modalities on simulated data (real tiny-model FLOPs): which points each experiment
fits and predicts, the metrics per modality, the joint model's JSON and the video figure.

Two tiny architectures are marked as video models (frames > 1, their own source), all five
follow one law: the image laws should then predict the videos well, and every experiment must
train only on what it claims to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_support import (
    TINY_MODELS,
    TINY_RESOLUTIONS,
    counted_flops,
    energy_table,
    settings,
    shared_truth,
)

from diffusion_energy.figures import FigureInputs, draw
from diffusion_energy.laws import analysis, choice, modalities
from diffusion_energy.laws.crossval import ALL

VIDEO_MODELS = ("tiny-flux", "tiny-qwen")


@pytest.fixture(scope="module")
def joint(request: pytest.FixtureRequest) -> tuple[pd.DataFrame, object, dict[str, pd.DataFrame]]:
    import simulate

    table, ops = counted_flops(getattr(request.config, "cache", None), TINY_MODELS, TINY_RESOLUTIONS)
    grid = simulate.grid(table, [10, 25, 50], gpus=["h100", "h200"])
    measured = simulate.simulate_paper_law(grid, table, shared_truth(TINY_MODELS, sigma_log=0.03),
                                           np.random.default_rng(2))
    energy = energy_table(measured, table)
    video = energy["model"].isin(VIDEO_MODELS)
    energy.loc[video, "frames"] = 17
    energy.loc[video, "source"] = "mlenergy-v3-video"
    energy.loc[energy["model"] == "tiny-sd", "source"] = "mlenergy-v3"
    points, inputs = analysis.prepare(energy, table, ops)
    return points, inputs, modalities.run_modalities(points, inputs, settings())


def test_each_experiment_predicts_what_it_claims(joint: tuple) -> None:
    points, _, tables = joint
    p = tables["modality_predictions"]
    assert set(p["experiment"]) == set(modalities.EXPERIMENTS)
    n_video = int((points["frames"] > 1).sum())
    for exp in ("video_lomo", "image_to_video"):
        part = p[(p["experiment"] == exp) & (p["candidate"] == "flops")]
        assert set(part["model"]) == set(VIDEO_MODELS) and len(part) == n_video
        assert (part["modality"] == "video").all() and (part["frames"] == 17).all()
    lomo = p[(p["experiment"] == "video_lomo")]
    assert set(lomo["held_out"]) == set(VIDEO_MODELS) and (lomo["held_out"] == lomo["model"]).all()
    joint_p = p[(p["experiment"] == "joint_lomo") & (p["candidate"] == "flops")]
    assert len(joint_p) == len(points) and (joint_p["held_out"] == joint_p["model"]).all()
    assert set(joint_p["modality"]) == {"image", "video"}
    assert (p["flops"] > 0).all()


def test_image_laws_predict_videos_of_the_same_law(joint: tuple) -> None:
    m = joint[2]["modality_metrics"]
    row = m[(m["experiment"] == "image_to_video") & (m["candidate"] == "flops") & (m["gpu"] == ALL)
            & (m["held_out"] == ALL)].iloc[0]
    assert row["n_points"] == 24 and row["modality"] == "video"
    assert row["median_ape"] < 0.05 and row["p90_ape"] < 0.10 and row["spearman"] > 0.99
    per = m[(m["experiment"] == "joint_lomo") & (m["candidate"] == "flops") & (m["held_out"] == ALL)
            & (m["gpu"] == ALL)]
    assert set(per["modality"]) == {"image", "video"}
    assert set(m.columns) == set(modalities.METRIC_COLUMNS)


def test_every_experiment_scores_the_blends(joint: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    # The tiny kinds have no datasheets (no roofline across kinds): blend two parts fitted here instead.
    monkeypatch.setattr(choice, "BLENDS", {"blend": ("paper", "flops_kernels")})
    monkeypatch.setitem(analysis.DESCRIPTIONS, "blend", "the paper's law and the FLOPs and kernels law")
    p = modalities.run_modalities(joint[0], joint[1], settings())["modality_predictions"]
    for name, parts in choice.BLENDS.items():
        for exp in modalities.EXPERIMENTS:
            mine = p[(p["experiment"] == exp) & (p["candidate"] == name)].set_index("point_id")
            part = [p[(p["experiment"] == exp) & (p["candidate"] == c)].set_index("point_id") for c in parts]
            assert len(mine) == len(part[0]) > 0, (exp, name)
            lo = np.minimum(*(q.loc[mine.index, "predicted_j"] for q in part))
            hi = np.maximum(*(q.loc[mine.index, "predicted_j"] for q in part))
            # A weighted mean in logs: between its parts, and not one of them alone.
            e = mine["predicted_j"]
            assert (e >= lo * (1 - 1e-9)).all() and (e <= hi * (1 + 1e-9)).all(), (exp, name)
            assert all((e != q.loc[mine.index, "predicted_j"]).any() for q in part), (exp, name)
    payload = modalities.joint_laws(joint[0], joint[1], p, settings())
    for name in choice.BLENDS:
        law = payload["pooled"]["image"]["candidates"][name]
        assert law["law"]["kind"] == "blend" and law["lomo"][ALL]["n_points"] > 0
        assert abs(sum(law["law"]["weights"].values()) - 1) < 1e-9


def test_image_only_fit_never_sees_a_video(joint: tuple) -> None:
    points, inputs, _ = joint
    seen: list[set[str]] = []

    class Spy:
        name, description = "spy", "records its training models"

        def fit(self, train: pd.DataFrame) -> Spy:
            seen.append(set(train["model"]))
            return self

        def predict(self, frame: pd.DataFrame, level: float):  # noqa: ANN201
            from diffusion_energy.laws.targets import Prediction
            e = np.ones(len(frame))
            assert set(frame["source"]) == {"mlenergy-v3"}, "videos are spoken for by the image stack"
            return Prediction(e, e, e, level)

    rows = modalities.modality_points(points)
    modalities.predict_unseen(rows[rows["modality"] == "image"], rows[rows["modality"] == "video"], [Spy()],
                              "image_to_video", 0.9)
    assert seen and not seen[0] & set(VIDEO_MODELS)


def test_joint_model_in_the_laws_layout(joint: tuple) -> None:
    points, inputs, tables = joint
    payload = modalities.joint_laws(points, inputs, tables["modality_predictions"], settings())
    entry = payload["pooled"]["image"]
    assert payload["status"] == "ok" and payload["video_source"] == "mlenergy-v3-video"
    assert entry["selected"] in entry["candidates"] and set(entry["selected_by_gpu"]) == {"h100", "h200"}
    # One interval rule over every GPU kind's held-out video points (12 on each of two kinds).
    lomo = entry["candidates"]["flops"]["lomo"]["h100"]
    assert lomo["n_points"] == 24 and lomo["log_ratio_low"] < lomo["log_ratio_high"]
    assert payload["ranges"][ALL]["frames"] == [17.0, 17.0]
    assert payload["measured_by"]["h100/tiny-flux"] == "mlenergy-v3-video"


def test_no_videos_gives_empty_tables_and_no_joint_model(joint: tuple) -> None:
    points, inputs, _ = joint
    images = points[points["frames"] == 1].reset_index(drop=True)
    tables = modalities.run_modalities(images, inputs, settings())
    assert tables["modality_predictions"].empty and list(tables["modality_metrics"].columns) == \
        modalities.METRIC_COLUMNS
    assert modalities.joint_laws(images, inputs, tables["modality_predictions"], settings())["status"] == \
        "no data"


def test_video_figure_is_drawn_and_says_when_there_are_no_videos(joint: tuple, tmp_path) -> None:  # noqa: ANN001
    points, _, tables = joint
    out = tmp_path / "video.png"
    predictions = tables["modality_predictions"]
    draw("video_energy_vs_flops", FigureInputs(energy=points, modality_predictions=predictions), [out])
    assert out.stat().st_size > 10_000
    empty = tmp_path / "none.png"
    images = points[points["frames"] == 1]
    draw("video_energy_vs_flops", FigureInputs(energy=images, modality_predictions=predictions.iloc[:0]),
         [empty])
    assert empty.is_file()


# --- predict for video models, from the joint model ---------------------------------------------


@pytest.fixture(scope="module")
def joint_payload(joint: tuple) -> dict:
    points, inputs, tables = joint
    return modalities.joint_laws(points, inputs, tables["modality_predictions"], settings())


def test_predict_answers_a_video_model_per_video_with_an_interval(joint_payload: dict) -> None:
    from diffusion_energy.laws import predict_video
    from diffusion_energy.models import zoo

    spec = zoo.load_spec("tiny-wan")
    short = predict_video.predict_video(joint_payload, spec, steps=10, gpu="h100")
    longer = predict_video.predict_video(joint_payload, spec, frames=17, fps=16, steps=10, gpu="h100")
    video = spec.video
    assert (short.frames, short.fps, short.height, short.width) == (video.frames, video.fps, video.height,
                                                                    video.width), "the model's video"
    assert any(f"{video.frames} frames is outside the fitted range [17, 17] frames" in n
               for n in short.energy.notes)
    e = longer.energy
    assert e.low_j < e.energy_j < e.high_j and "held-out errors" in e.interval
    assert longer.energy.flops > short.energy.flops and e.energy_j > short.energy.energy_j
    assert e.stack == "diffusers", "a video answer speaks for the default stack, as an image's does"
    assert any("diffusers stack ran no video model" in n for n in e.notes), e.notes
    on_xdit = predict_video.predict_video(joint_payload, spec, frames=17, fps=16, steps=10, gpu="h100",
                                          stack="xdit")
    assert on_xdit.energy.source == "mlenergy-v3-video", "xdit's answer speaks for its video source"
    d = longer.to_dict()
    assert d["energy_per_frame_j"] == pytest.approx(e.energy_j / 17)
    assert d["energy_per_video_second_j"] == pytest.approx(e.energy_j / (17 / 16))
    text = longer.describe()
    assert f"17 frames of {video.width}x{video.height} px" in text and "J/video" in text
    assert "per second of video" in text


def test_predict_refuses_frames_a_video_model_cannot_make_and_frames_for_images(joint_payload: dict) -> None:
    from diffusion_energy.errors import UsageError
    from diffusion_energy.laws import predict_video
    from diffusion_energy.models import zoo

    with pytest.raises(UsageError, match=r"--frames: frames 10 is not 1 \+ a multiple of 4"):
        predict_video.predict_video(joint_payload, zoo.load_spec("tiny-wan"), frames=10, steps=10, gpu="h100")
    with pytest.raises(UsageError, match=r"makes images"):
        predict_video.predict_video(joint_payload, zoo.load_spec("tiny-sd"), frames=9, steps=10, gpu="h100")
    with pytest.raises(UsageError, match=r"--fps must be a positive"):
        predict_video.predict_video(joint_payload, zoo.load_spec("tiny-wan"), fps=0, steps=10, gpu="h100")


def test_predict_cli_answers_a_video_model_from_the_joint_model(joint_payload: dict, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    from diffusion_energy.cli.main import main
    from diffusion_energy.laws import analysis_io

    laws = tmp_path / "modalities.json"
    analysis_io.write_json(joint_payload, laws)
    assert main(["predict", "--model", "tiny-wan", "--steps", "10", "--gpu", "h100", "--frames", "13",
                 "--video-laws", str(laws)]) == 0
    out = capsys.readouterr().out
    assert "tiny-wan: 13 frames" in out and "J/video" in out and "prediction interval" in out
    assert main(["predict", "--model", "tiny-wan", "--steps", "10", "--gpu", "h100", "--frames", "12",
                 "--video-laws", str(laws)]) == 2
    assert "--frames: frames 12" in capsys.readouterr().err


# --- a video's limits and GPU kinds, checked before any FLOPs are counted ------------------------


@pytest.mark.parametrize(("options", "error"), [
    ({"frames": 100001}, r"--frames: frames 100,001 is more than model 'tiny-wan' makes: at most 4,093 "
                         r"\(1,024 latent frames"),
    ({"resolution": 100000}, r"--resolution: resolution 100,000 makes 150,000 x 100,000 px frames; model "
                             r"'tiny-wan' makes frames of at most 16,384 px a side"),
    ({"batch": 0}, r"--batch must be positive, not 0"),
    ({"images": -1}, r"--images must be positive, not -1"),
], ids=["frames", "resolution", "batch", "images"])
def test_a_video_past_the_models_limits_is_refused_before_counting(
        joint_payload: dict, options: dict, error: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ended in a traceback from the FLOPs count (image models had these limits)."""
    from diffusion_energy.errors import UsageError
    from diffusion_energy.laws import predict_video
    from diffusion_energy.models import zoo

    def no_count(*args: object, **kwargs: object) -> None:
        raise AssertionError("counted FLOPs of a video the model cannot make")

    monkeypatch.setattr(predict_video, "count_video", no_count)
    with pytest.raises(UsageError, match=error):
        predict_video.predict_video(joint_payload, zoo.load_spec("tiny-wan"), steps=10, gpu="h100", **options)


def test_a_video_model_on_a_datasheet_only_kind_is_refused_with_the_reason(joint_payload: dict) -> None:
    from diffusion_energy.laws import analysis_io, predict_video
    from diffusion_energy.models import zoo
    from diffusion_energy.sources.gpu_datasheets import parse_datasheet

    spec = zoo.load_spec("tiny-wan")
    with pytest.raises(analysis_io.NoLawError) as err:
        predict_video.predict_video(joint_payload, spec, steps=10, gpu="a6000")
    msg = str(err.value)
    assert msg.startswith("tiny-wan is a video model, and GPU kind 'a6000' is not in the fitted data: videos "
                          "are answered only on the GPU kinds the joint image + video model was fitted on "
                          "(h100, h200); it has no form for a GPU kind nobody measured"), msg
    assert "cross-validated across GPU kinds" not in msg
    sheet = parse_datasheet("half_tflop_s=100,fp32_tflop_s=20,bandwidth_gb_s=500,power_limit_w=200")
    with pytest.raises(analysis_io.NoLawError, match="GPU kind 'mine' is given by its datasheet"):
        predict_video.predict_video(joint_payload, spec, steps=10, gpu="mine", datasheet=sheet)


def test_law_architecture_on_a_video_model_answers_with_a_note(joint_payload: dict) -> None:
    from diffusion_energy.laws import predict_video
    from diffusion_energy.models import zoo

    spec = zoo.load_spec("tiny-wan")
    asked = predict_video.predict_video(joint_payload, spec, frames=17, steps=10, gpu="h100",
                                        law="architecture")
    plain = predict_video.predict_video(joint_payload, spec, frames=17, steps=10, gpu="h100")
    assert asked.energy.energy_j == plain.energy.energy_j
    assert ("--law architecture does not apply to video models: no video model has a law of its own (this "
            "workflow measures no videos), so the joint image + video model answers") in asked.energy.notes
    assert not any("--law" in n for n in plain.energy.notes)
