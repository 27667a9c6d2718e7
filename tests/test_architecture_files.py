"""Architecture files that would count or label the wrong model: each is one line naming file and key.

Cases: a copied file whose ``name:`` still names the original, a denoiser that takes other
latent channels than the VAE makes, configs the diffusers/transformers constructors refuse
(a list of the wrong length, heads that do not divide the width), a config that builds but
fails in its first forward pass, and a ``weights:`` folder that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_bad_inputs import one_line, run_cli

from diffusion_energy.counting import flops
from diffusion_energy.models import zoo


def raw_of(model: str) -> dict[str, Any]:
    return yaml.safe_load((zoo.MODELS_DIR / f"{model}.yaml").read_text())


def write(folder: Path, raw: dict[str, Any], stem: str | None = None) -> Path:
    path = folder / f"{stem or raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_copied_file_whose_name_names_another_model_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, raw_of("tiny-sd"), "mymodel")
    with pytest.raises(zoo.ZooError) as err:
        zoo.load_spec(path)
    assert str(err.value) == (f"{path}: name: 'tiny-sd' differs from the file name 'mymodel'; set name: "
                              "mymodel (or rename the file to tiny-sd.yaml)")
    with pytest.raises(zoo.ZooError, match="differs from the file name 'mymodel'"):
        zoo.load_spec("mymodel", tmp_path)  # by zoo name, as a grid lists it


def test_a_file_whose_name_matches_loads(tmp_path: Path) -> None:
    write(tmp_path, raw_of("tiny-sd") | {"name": "mymodel"})
    assert zoo.load_spec("mymodel", tmp_path).name == "mymodel"


@pytest.mark.parametrize(
    ("model", "change", "needle"),
    [
        ("tiny-sd", lambda r: r["components"]["unet"]["config"].update(in_channels=8),
         "the denoiser 'unet' takes 8 latent channels (unet.config.in_channels), but "
         "vae.config.latent_channels is 4: the pipeline's latents do not fit the denoiser"),
        ("tiny-flux", lambda r: r["components"]["transformer"]["config"].update(in_channels=32),
         "the denoiser 'transformer' takes 8 latent channels"),
        ("tiny-sd3", lambda r: r["components"]["transformer"]["config"].update(in_channels=8),
         "takes 8 latent channels (transformer.config.in_channels), but vae.config.latent_channels is 4"),
    ],
    ids=["unet-in-8-vae-4", "flux-packed", "sd3"],
)
def test_latent_channels_are_checked_on_the_denoisers_input_side(
        tmp_path: Path, model: str, change: Callable, needle: str) -> None:
    raw = raw_of(model)
    change(raw)
    path = write(tmp_path, raw)
    with pytest.raises(zoo.ZooError) as err:
        zoo.load_spec(path)
    assert str(err.value).startswith(f"{path}: ") and needle in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("change", "component", "needle"),
    [
        (lambda r: r["components"]["unet"]["config"].update(block_out_channels=[8]), "unet",
         "components.unet.config does not build a UNet2DConditionModel: Must provide the same number of "
         "`block_out_channels` as `down_block_types`"),
        (lambda r: r["components"]["text_encoder"]["config"].update(num_attention_heads=5), "text_encoder",
         "components.text_encoder.config does not build a CLIPTextModel: The hidden size (32) is not a "
         "multiple of the number of attention heads (5)"),
    ],
    ids=["block-out-channels-length", "heads-do-not-divide-width"],
)
def test_constructor_errors_are_one_line_naming_file_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture, change: Callable, component: str, needle: str) -> None:
    raw = raw_of("tiny-sd")
    change(raw)
    path = write(tmp_path, raw)
    spec = zoo.load_spec(path)
    with pytest.raises(zoo.ZooError) as err:
        zoo.build_component(spec, spec.component(component), "meta")
    assert str(err.value).startswith(f"{path}: {needle}"), str(err.value)
    rc, err_text = run_cli(capsys, "flops", "--model", str(path), "--resolutions", "32",
                           "--out", str(tmp_path / "f.parquet"))
    assert rc == 2 and needle in one_line(err_text)


def test_a_config_that_fails_in_its_forward_pass_names_the_component(tmp_path: Path) -> None:
    raw = raw_of("tiny-sd3")
    raw["components"]["transformer"]["config"]["caption_projection_dim"] = 24  # not heads x head_dim
    path = write(tmp_path, raw)
    with pytest.raises(zoo.ZooError) as err:
        flops.count_shapes(zoo.load_spec(path), [(32, True, 1)])
    assert str(err.value).startswith(f"{path}: components.transformer fails in a forward pass (counted on "
                                     "the meta device): "), str(err.value)


def test_a_weights_folder_that_does_not_exist_is_refused_on_load(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = raw_of("tiny-sd") | {"weights": str(tmp_path / "no-such-weights")}
    path = write(tmp_path, raw)
    rc, err = run_cli(capsys, "flops", "--model", str(path), "--resolutions", "32",
                      "--out", str(tmp_path / "f.parquet"))
    assert rc == 2
    absent = tmp_path / "no-such-weights"
    assert one_line(err) == (f"diffusion-energy flops: error: {path}: weights: {absent} is not a folder (no "
                             "such folder; it should hold one subfolder of local weights per component)")


def test_counting_past_int64_tensor_sizes_is_a_usage_error() -> None:
    from diffusion_energy.errors import UsageError

    with pytest.raises(UsageError, match=r"^tiny-sd: text_encoder cannot be counted at 32 px in calls of "
                                         r"batch 1,152,921,504,606,846,976 \(its tensors would pass int64"):
        flops.count_shapes(zoo.load_spec("tiny-sd"), [(32, True, 2**60)])


def test_a_scheduler_config_the_scheduler_refuses_names_the_file_and_key(tmp_path: Path) -> None:
    raw = raw_of("tiny-sd")
    raw["scheduler"]["config"]["beta_schedule"] = "nonsense"
    path = write(tmp_path, raw)
    with pytest.raises(zoo.ZooError) as err:
        zoo.build_scheduler(zoo.load_spec(path))
    assert str(err.value).startswith(f"{path}: scheduler.config does not build a DDIMScheduler: nonsense is "
                                     "not implemented"), str(err.value)
