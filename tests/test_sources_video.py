"""The ML.ENERGY v3 text-to-video source: shipped as published, imported with its frames, and bad
files refused with the file and the entry named.

The tests map the upstream ids to the zoo's video models as the config does: the importer checks
each video's frame count and frame size against the model that makes it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from diffusion_energy.sources import importing, provenance, schema

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
FOLDER = REPO / "resources" / "public" / "mlenergy-v3-video"
FILE = "text-to-video.json"
#: Upstream ids -> the zoo's video models (the importer checks each video's frames and size against
#: the model that makes it).
MODELS = CONFIG["upstream_models"]


def raw() -> list[dict]:
    return json.loads((FOLDER / FILE).read_text())["configurations"]


@pytest.fixture
def video(tmp_path: Path) -> Path:
    dest = tmp_path / "video"
    shutil.copytree(FOLDER, dest)
    return dest


def edit(folder: Path, change) -> None:  # noqa: ANN001
    path = folder / FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def refused(folder: Path, needle: str, kinds: dict | None = None) -> str:
    with pytest.raises((importing.SourceError, schema.DatasetError)) as err:
        importing.import_source(folder, MODELS, kinds or CONFIG["gpu_kinds"])
    assert needle in str(err.value), str(err.value)
    return str(err.value)


def test_shipped_with_licence_datasheet_and_provenance() -> None:
    info = provenance.read_source_info(FOLDER)
    assert info.name == "mlenergy-v3-video" and info.format == "mlenergy-v3-video"
    assert info.upstream_commit == "0cd52dab897c5d91a45f4d413038f3b8b4251b0f" and info.window_batches == 2
    assert "Apache License" in (FOLDER / "LICENSE").read_text() and (FOLDER / "DATASHEET.md").is_file()
    assert sorted(p.name for p in FOLDER.glob("model_info/*/*.json")) == [
        "CogVideoX-2b.json", "CogVideoX1.5-5B.json", "HunyuanVideo.json", "Wan2.1-T2V-1.3B-Diffusers.json",
        "Wan2.1-T2V-14B-Diffusers.json"]


def test_every_point_imports_as_one_video_with_its_frames() -> None:
    frame = importing.import_source(FOLDER, MODELS, CONFIG["gpu_kinds"])
    entries = raw()
    assert len(frame) == len(entries) == 296 and (frame["source"] == "mlenergy-v3-video").all()
    assert (frame["stage"] == "image").all() and set(frame["gpu"]) == {"h100", "b200"}
    wan = frame[(frame["upstream_model"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers") & (frame["gpu"] == "b200")
                & (frame["batch"] == 1) & (frame["num_gpus"] == 1)].iloc[0]
    video = (wan["frames"], wan["fps"], wan["height"], wan["width"], wan["resolution"])
    assert video == (81, 15, 480, 832, 480)
    assert wan["energy_j"] == pytest.approx(61491.4115) and wan["time_s"] == pytest.approx(74.02369)
    assert wan["window_calls"] == 2 and wan["power_limit_w"] == 1000 and wan["steps"] == 50
    cog = frame[frame["upstream_model"] == "zai-org/CogVideoX-2b"]
    assert set(zip(cog["frames"], cog["fps"], cog["width"], strict=True)) == {(49, 8.0, 720)}
    # nothing a source did not measure is filled in
    for col in ("dynamic_energy_j", "idle_power_w", "repeat_spread"):
        assert frame[col].isna().all(), col
    assert (frame["num_gpus"] == frame["ulysses_degree"] * frame["ring_degree"]).all()
    assert (frame["num_gpus"] == 1).sum() == 35


def test_the_config_imports_the_shipped_file_under_zoo_names() -> None:
    """The default run's import: every upstream id of the file has a zoo architecture."""
    assert CONFIG["public_sources"]["mlenergy-v3-video"] == "resources/public/mlenergy-v3-video"
    frame = importing.import_source(FOLDER, CONFIG["upstream_models"], CONFIG["gpu_kinds"])
    assert len(frame) == 296
    assert {"wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "cogvideox-2b", "hunyuanvideo"} <= set(frame["model"])


def test_image_rows_keep_one_frame_and_no_video_columns() -> None:
    frame = importing.import_source(REPO / "resources/public/mlenergy-v3", CONFIG["upstream_models"],
                                    CONFIG["gpu_kinds"])
    assert (frame["frames"] == 1).all() and frame[["fps", "height", "width"]].isna().all().all()
    old = schema.conform(frame.drop(columns=["frames"]))
    assert (old["frames"] == 1).all(), "a table written before the video columns holds images"


def test_missing_energy_names_the_entry(video: Path) -> None:
    edit(video, lambda d: d["configurations"][7].pop("energy_per_video_joules"))
    refused(video, f"{FILE} configurations[7]: missing key 'energy_per_video_joules'")


@pytest.mark.parametrize("energy", [0.0, -3.5])
def test_non_positive_energy_per_video_names_the_entry(video: Path, energy: float) -> None:
    edit(video, lambda d: d["configurations"][3].update({"energy_per_video_joules": energy}))
    refused(video, f"{FILE} configurations[3]: energy per video {energy!r} J is not positive")


@pytest.mark.parametrize(("key", "value"), [("num_frames", 0), ("fps", -15), ("video_width", 0)])
def test_non_positive_frames_fps_or_size_names_the_entry(video: Path, key: str, value: int) -> None:
    edit(video, lambda d: d["configurations"][2].update({key: value}))
    refused(video, f"{FILE} configurations[2]: key {key!r} should be positive, not {value}")


def test_frames_stored_as_text_are_refused(video: Path) -> None:
    edit(video, lambda d: d["configurations"][4].update({"num_frames": "81"}))
    refused(video, f"{FILE} configurations[4]: key 'num_frames' should be int, not '81'")


def test_duplicate_video_names_both_entries(video: Path) -> None:
    edit(video, lambda d: d["configurations"].append(dict(d["configurations"][0])))
    msg = refused(video, "the same point as")
    assert "configurations[296]" in msg and "configurations[0]" in msg and "81 frames" in msg


def test_the_same_model_at_another_frame_count_is_another_point(video: Path) -> None:
    edit(video, lambda d: d["configurations"].append(dict(d["configurations"][0], num_frames=33)))
    frame = importing.import_source(video, MODELS, CONFIG["gpu_kinds"])
    assert len(frame) == 297 and sorted(frame["frames"].unique()) == [33, 49, 81, 129]


def test_parallel_degrees_must_multiply_to_the_gpu_count(video: Path) -> None:
    edit(video, lambda d: d["configurations"][1].update({"num_gpus": 4}))
    refused(video, f"{FILE} configurations[1]: ulysses_degree 1 x ring_degree 1 != num_gpus 4")


def test_gpu_that_maps_to_no_kind(video: Path) -> None:
    kinds = {k: v for k, v in CONFIG["gpu_kinds"].items() if k != "h100"}
    refused(video, "GPU 'H100' maps to no GPU kind", kinds)


def test_unknown_upstream_model_names_the_entry(video: Path) -> None:
    edit(video, lambda d: d["configurations"][0].update({"model_id": "zai-org/CogVideoX-5b"}))
    msg = refused(video, f"{FILE} configurations[0]: upstream model 'zai-org/CogVideoX-5b' maps to no zoo")
    assert "upstream_models" in msg


def test_an_image_file_is_not_a_video_file(video: Path) -> None:
    edit(video, lambda d: d.update({"task": "text-to-image"}))
    refused(video, f"{FILE}: task 'text-to-image', not text-to-video")


def test_file_of_the_wrong_format(video: Path) -> None:
    (video / FILE).write_text(json.dumps([{"model_id": "x"}]))
    refused(video, "expected an object with a 'configurations' list")


def test_missing_file_names_it(video: Path) -> None:
    (video / FILE).unlink()
    refused(video, f"{FILE}: missing; is")


def test_image_folder_read_as_video(tmp_path: Path) -> None:
    dest = tmp_path / "v3"
    shutil.copytree(REPO / "resources/public/mlenergy-v3", dest)
    with pytest.raises(importing.SourceError, match=r"text-to-video\.json: missing"):
        importing.import_source(dest, MODELS, CONFIG["gpu_kinds"], fmt="mlenergy-v3-video")


def test_schema_refuses_a_non_positive_frame_count_naming_the_row() -> None:
    frame = importing.import_source(FOLDER, MODELS, CONFIG["gpu_kinds"]).head(3).copy()
    frame.loc[1, "frames"] = 0
    with pytest.raises(schema.DatasetError, match=r"column 'frames' must be a positive integer.*row 1 \("):
        schema.validate_measurements(frame, "video.parquet")
    frame.loc[1, "frames"] = 81
    frame.loc[2, "fps"] = 0.0
    with pytest.raises(schema.DatasetError, match=r"video.parquet: column 'fps' must be positive.*row 2"):
        schema.validate_measurements(frame, "video.parquet")


# --- what the model cannot make is refused, naming the entry --------------------------------------


def test_a_frame_count_the_model_cannot_make_is_refused(video: Path) -> None:
    """Wan's causal VAE makes 1 + 4k frames: 80 is not one of them."""
    edit(video, lambda d: d["configurations"][0].update({"num_frames": 80}))
    msg = refused(video, f"{FILE} configurations[0]: Wan-AI/Wan2.1-T2V-1.3B-Diffusers (zoo wan2.1-t2v-1.3b) "
                         "cannot make this video: frames 80 is not 1 + a multiple of 4")
    assert "temporal stride" in msg


def test_a_width_that_is_not_the_models_is_refused(video: Path) -> None:
    """Its FLOPs are counted at the model's own width for that height (832 for Wan at 480)."""
    edit(video, lambda d: d["configurations"][1].update({"video_width": 640}))
    refused(video, f"{FILE} configurations[1]: a 640x480 px video, but wan2.1-t2v-1.3b makes 832x480 px at a "
                   "height of 480")


def test_an_image_model_in_the_video_file_is_refused(video: Path) -> None:
    models = {**MODELS, "black-forest-labs/FLUX.1-dev": "flux-dev"}
    edit(video, lambda d: d["configurations"][2].update({"model_id": "black-forest-labs/FLUX.1-dev"}))
    with pytest.raises(importing.SourceError, match=r"configurations\[2\]: black-forest-labs/FLUX.1-dev "
                       r"\(zoo flux-dev\) makes images, not videos; its rows belong in the source's image "
                       r"file"):
        importing.import_source(video, models, CONFIG["gpu_kinds"])
