"""Published sources: the shipped upstream files import as measurement rows, and bad files are refused.

Every import check gets a bad file: an upstream model with no zoo name, two
entries for one point, a missing or non-positive energy, a GPU name that maps to
no kind, a file of the wrong format, a file contradicting its path. Each error
names the file (and the entry) so a user can find it.
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
PUBLIC = REPO / "resources" / "public"


def load(name: str) -> object:
    return importing.import_source(PUBLIC / name, CONFIG["upstream_models"], CONFIG["gpu_kinds"])


# --- the shipped sources -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONFIG["public_sources"]))
def test_every_configured_source_is_shipped_with_licence_datasheet_and_provenance(name: str) -> None:
    folder = REPO / CONFIG["public_sources"][name]
    info = provenance.read_source_info(folder)
    assert info.name == name and info.upstream_commit and info.citation
    if info.format.startswith("mlenergy"):
        assert (folder / "LICENSE").read_text().startswith(" " * 10) and "Apache License" in (
            folder / "LICENSE").read_text()
        assert (folder / "DATASHEET.md").is_file()


def test_v2_imports_every_point_with_its_provenance() -> None:
    frame = load("mlenergy-v2")
    files = sorted((PUBLIC / "mlenergy-v2" / "text-to-image").glob("*/*/*/*.json"))
    assert len(frame) == len(files) > 0
    assert set(frame["gpu"]) == {"a100", "h100"} and (frame["source"] == "mlenergy-v2").all()
    assert (frame["stage"] == "image").all() and frame["dynamic_energy_j"].isna().all()
    assert frame["idle_power_w"].isna().all(), "nothing a source did not measure is filled in"
    assert (frame["precision"] == "fp16").all() and (frame["steps"] == 25).all()
    assert (frame["upstream_commit"] == "c3af7f31e231a2a7021c5f8e2a54dd712d02e6e2").all()
    sd21 = frame[(frame["model"] == "sd21") & (frame["gpu"] == "h100") & (frame["batch"] == 1)].iloc[0]
    assert sd21["resolution"] == 768 and sd21["energy_j"] == pytest.approx(386.461, abs=1e-3)
    assert sd21["time_s"] == pytest.approx(0.94108, abs=1e-5) and sd21["power_limit_w"] == 700
    kwargs = PUBLIC / "mlenergy-v2/pipeline-kwargs/stabilityai/stable-diffusion-2-1"
    revision = (kwargs / "revision.txt").read_text()
    assert sd21["weights_source"] == f"real:stabilityai/stable-diffusion-2-1@{revision.strip()}"
    assert sd21["cfg"] and sd21["upstream_file"].endswith("stable-diffusion-2-1/bs1+steps25.json")


def test_v3_imports_single_and_multi_gpu_rows() -> None:
    frame = load("mlenergy-v3")
    raw = json.loads((PUBLIC / "mlenergy-v3" / "text-to-image.json").read_text())["configurations"]
    assert len(frame) == len(raw)
    assert set(frame["gpu"]) == {"h100", "b200"} and (frame["resolution"] == 1024).all()
    assert (frame["num_gpus"] == frame["ulysses_degree"] * frame["ring_degree"]).all()
    flux = frame[(frame["model"] == "flux-dev") & (frame["gpu"] == "h100") & (frame["batch"] == 1)]
    one = flux[flux["num_gpus"] == 1].iloc[0]
    assert one["energy_j"] == pytest.approx(7948.585) and not one["cfg"] and one["steps"] == 50
    assert one["window_calls"] == 4 and one["avg_power_w"] == pytest.approx(682.915054)
    assert (flux["num_gpus"] > 1).any()


def test_the_papers_figures_are_marked_quoted() -> None:
    frame = load("paper-2511.17031")
    assert len(frame) == 12 and frame["quoted"].all() and (frame["gpu"] == "a100").all()
    assert sorted(frame["model"].unique()) == ["flux-dev", "qwen-image", "sd21", "sd35-large"]
    sd21 = frame[(frame["model"] == "sd21") & (frame["resolution"] == 512)].iloc[0]
    assert sd21["energy_j"] == pytest.approx(0.040 * 3600) and sd21["steps"] == 20


# --- bad files -----------------------------------------------------------------------------------


@pytest.fixture
def v2(tmp_path: Path) -> Path:
    dest = tmp_path / "v2"
    shutil.copytree(PUBLIC / "mlenergy-v2", dest)
    return dest


@pytest.fixture
def v3(tmp_path: Path) -> Path:
    dest = tmp_path / "v3"
    shutil.copytree(PUBLIC / "mlenergy-v3", dest)
    return dest


def v2_point(folder: Path) -> Path:
    return folder / "text-to-image/H100 80GB HBM3/stabilityai/stable-diffusion-2-1/bs1+steps25.json"


def edit_json(path: Path, change) -> None:  # noqa: ANN001
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def refused(folder: Path, needle: str, models: dict | None = None, kinds: dict | None = None) -> str:
    with pytest.raises((importing.SourceError, schema.DatasetError)) as err:
        importing.import_source(folder, models or CONFIG["upstream_models"], kinds or CONFIG["gpu_kinds"])
    assert needle in str(err.value), str(err.value)
    return str(err.value)


def test_unknown_upstream_model_says_which_zoo_name_to_add(v2: Path) -> None:
    models = {k: v for k, v in CONFIG["upstream_models"].items() if k != "segmind/SSD-1B"}
    msg = refused(v2, "upstream model 'segmind/SSD-1B' maps to no zoo architecture", models)
    assert "SSD-1B" in msg and "upstream_models" in msg and "config/models/" in msg


def test_upstream_model_mapped_to_a_name_outside_the_zoo(v2: Path) -> None:
    models = {**CONFIG["upstream_models"], "segmind/SSD-1B": "ssd-2b"}
    refused(v2, "'ssd-2b', which is not in the zoo", models)


def test_duplicate_point_names_both_entries(v3: Path) -> None:
    path = v3 / "text-to-image.json"
    edit_json(path, lambda d: d["configurations"].append(dict(d["configurations"][0])))
    msg = refused(v3, "the same point as")
    assert "configurations[0]" in msg and "text-to-image.json" in msg


@pytest.mark.parametrize("energy", [0.0, -5.0])
def test_non_positive_energy_is_refused(v2: Path, energy: float) -> None:
    edit_json(v2_point(v2), lambda d: d.update({"Energy/image (J)": energy}))
    refused(v2, f"bs1+steps25.json: energy per image {energy!r} J is not positive")


def test_missing_energy_is_refused(v3: Path) -> None:
    edit_json(v3 / "text-to-image.json", lambda d: d["configurations"][5].pop("energy_per_image_joules"))
    refused(v3, "configurations[5]: missing key 'energy_per_image_joules'")


def test_energy_stored_as_text_is_refused(v2: Path) -> None:
    edit_json(v2_point(v2), lambda d: d.update({"Energy/image (J)": "386.4"}))
    refused(v2, "key 'Energy/image (J)' should be int or float, not '386.4'")


def test_gpu_that_maps_to_no_kind(v3: Path) -> None:
    kinds = {k: v for k, v in CONFIG["gpu_kinds"].items() if k != "b200"}
    msg = refused(v3, "GPU 'B200' maps to no GPU kind", kinds=kinds)
    assert "name_pattern" in msg and "gpu_kinds" in msg


def test_file_of_the_wrong_format(v3: Path) -> None:
    (v3 / "text-to-image.json").write_text(json.dumps([{"model": "x"}]))
    refused(v3, "expected an object with a 'configurations' list")


def test_file_that_is_not_json(v2: Path) -> None:
    v2_point(v2).write_text("Energy/image (J): 386\n")
    refused(v2, "bs1+steps25.json: not a readable JSON file")


def test_v3_folder_read_as_v2(v3: Path) -> None:
    with pytest.raises(importing.SourceError, match=r"models\.json: missing; is .* an ML\.ENERGY v2"):
        importing.import_source(v3, CONFIG["upstream_models"], CONFIG["gpu_kinds"], fmt="mlenergy-v2")


def test_unknown_format_is_named(v2: Path) -> None:
    with pytest.raises(importing.SourceError, match=r"unknown source format 'mlenergy-v9'"):
        importing.import_source(v2, CONFIG["upstream_models"], CONFIG["gpu_kinds"], fmt="mlenergy-v9")


def test_file_that_contradicts_its_path(v2: Path) -> None:
    edit_json(v2_point(v2), lambda d: d.update({"Batch size": 4}))
    refused(v2, "the file says batch size 4, its path says 1")


def test_gpu_name_that_contradicts_its_folder(v2: Path) -> None:
    edit_json(v2_point(v2), lambda d: d.update({"GPU": "NVIDIA A100-SXM4-40GB"}))
    refused(v2, "its folder says 'H100 80GB HBM3'")


def test_non_square_image_is_refused(v3: Path) -> None:
    edit_json(v3 / "text-to-image.json", lambda d: d["configurations"][0].update({"image_width": 768}))
    refused(v3, "configurations[0]: image 768x1024 is not square; a point of this project has one resolution")


def test_parallel_degrees_must_multiply_to_the_gpu_count(v3: Path) -> None:
    edit_json(v3 / "text-to-image.json", lambda d: d["configurations"][0].update({"num_gpus": 2}))
    refused(v3, "ulysses_degree 1 x ring_degree 1 != num_gpus 2")


def test_missing_provenance_is_refused(v2: Path) -> None:
    (v2 / "source.yaml").unlink()
    refused(v2, "source.yaml: missing")


def test_provenance_missing_a_key(v2: Path) -> None:
    info = yaml.safe_load((v2 / "source.yaml").read_text())
    del info["upstream_commit"]
    (v2 / "source.yaml").write_text(yaml.safe_dump(info))
    refused(v2, "missing key(s) ['upstream_commit']")


def test_unknown_precision_is_named(v2: Path) -> None:
    kwargs = v2 / "pipeline-kwargs" / "stabilityai" / "stable-diffusion-2-1" / "kwargs.json"
    edit_json(kwargs, lambda d: d.update({"torch_dtype": "torch.float8"}))
    refused(v2, "unknown precision 'torch.float8'")


def test_a_newer_release_in_the_same_format_imports_the_same_way(v3: Path) -> None:
    """A user's newer download: new batch sizes of a known model enter as new points."""
    def add(d: dict) -> None:
        # 64 images of 300 J at 500 W: a time the GPU's power limit allows (plausibility is checked).
        new = dict(d["configurations"][0], batch_size=64, energy_per_image_joules=300.0,
                   batch_latency_s=64 * 300.0 / 500.0)
        d["configurations"].append(new)
    edit_json(v3 / "text-to-image.json", add)
    frame = importing.import_source(v3, CONFIG["upstream_models"], CONFIG["gpu_kinds"])
    assert (frame["batch"] == 64).sum() == 1


def test_a_video_row_in_an_image_file_is_refused_not_taken_for_a_one_frame_image(v3: Path) -> None:
    wan = {"model_id": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "image_height": 480, "image_width": 480}
    edit_json(v3 / "text-to-image.json", lambda d: d["configurations"][4].update(wan))
    refused(v3, "text-to-image.json configurations[4]: Wan-AI/Wan2.1-T2V-1.3B-Diffusers (zoo "
                "wan2.1-t2v-1.3b) is a text-to-video model; its rows belong in the source's video file")
