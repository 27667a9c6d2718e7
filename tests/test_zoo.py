"""The model zoo: architecture files -> components with the published parameter counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from diffusion_energy.models import families, zoo

#: Published parameter counts: ``num_parameters()`` of the released checkpoints
#: (diffusers / transformers), as quoted by their model cards, docs and ports.
#: SD 3.5 Large's transformer is published as 8.1B; 8.057B is its count to 4 digits.
PUBLISHED: dict[tuple[str, str], int] = {
    ("sd15", "text_encoder"): 123_060_480,  # CLIP ViT-L/14 text tower
    ("sd15", "unet"): 859_520_964,  # diffusers' ModelMixin.num_parameters example
    ("sd15", "vae"): 83_653_863,
    ("sd21", "text_encoder"): 340_387_840,  # OpenCLIP ViT-H/14 text tower, 23 layers
    ("sd21", "unet"): 865_910_724,
    ("sd21", "vae"): 83_653_863,
    ("sdxl", "text_encoder"): 123_060_480,
    ("sdxl", "text_encoder_2"): 694_659_840,  # OpenCLIP ViT-bigG/14 with projection
    ("sdxl", "unet"): 2_567_463_684,
    ("sdxl", "vae"): 83_653_863,
    ("sd35-large", "text_encoder"): 123_650_304,  # CLIP ViT-L/14 with projection
    ("sd35-large", "text_encoder_2"): 694_659_840,
    ("sd35-large", "text_encoder_3"): 4_762_310_656,  # T5-v1.1-XXL encoder
    ("sd35-large", "transformer"): 8_057_000_000,
    ("sd35-large", "vae"): 83_819_683,  # 16-channel SD3/FLUX VAE
    ("flux-dev", "text_encoder"): 123_060_480,
    ("flux-dev", "text_encoder_2"): 4_762_310_656,
    ("flux-dev", "transformer"): 11_901_408_320,
    ("flux-dev", "vae"): 83_819_683,
    ("qwen-image", "text_encoder"): 8_292_166_656,  # Qwen2.5-VL-7B-Instruct
    ("qwen-image", "transformer"): 20_430_401_088,
    ("qwen-image", "vae"): 126_892_531,
}
REAL_MODELS = sorted({m for m, _ in PUBLISHED})
TINY_MODELS = ["tiny-flux", "tiny-qwen", "tiny-sd", "tiny-sd3", "tiny-sdxl"]


def all_published() -> dict[tuple[str, str], int]:
    """The published counts of every architecture: this module's and each family's test module's."""
    import importlib

    out = dict(PUBLISHED)
    for path in sorted(Path(__file__).parent.glob("test_zoo_*.py")):
        out.update(importlib.import_module(path.stem).PUBLISHED)
    return out


def test_zoo_lists_every_model() -> None:
    names = zoo.available_models()
    assert set(REAL_MODELS) | set(TINY_MODELS) <= set(names)
    real = [n for n in names if not zoo.load_spec(n).test_only]
    tested = {(m, c) for m, c in all_published()}
    for name in real:
        spec = zoo.load_spec(name)
        missing = [c.name for c in spec.components if (name, c.name) not in tested]
        assert not missing, f"{name}: a real model needs the published counts of {missing} in a test module"


@pytest.mark.parametrize("name", zoo.available_models())
def test_every_zoo_file_loads(name: str) -> None:
    spec = zoo.load_spec(name)
    assert spec.name == name
    assert spec.source == zoo.MODELS_DIR / f"{name}.yaml"
    assert len(spec.stage_components("denoise")) == 1 and len(spec.stage_components("vae")) == 1
    assert spec.text_encoders and all(c.seq_len for c in spec.text_encoders)
    assert spec.denoiser.text_tokens
    assert spec.weights is None and zoo.weights_source(spec) == "random-init"
    zoo.build_scheduler(spec)
    assert spec.precision("default") == spec.default_precision


@pytest.mark.parametrize("name", REAL_MODELS)
def test_parameter_counts_match_published(name: str) -> None:
    spec = zoo.load_spec(name)
    for comp in spec.components:
        module = zoo.build_component(spec, comp, "meta", torch.float16)
        assert all(p.is_meta for p in module.parameters()), "counting must not allocate"
        n = zoo.count_parameters(module)
        published = PUBLISHED[(name, comp.name)]
        assert n == pytest.approx(published, rel=1e-3), f"{name}.{comp.name}: {n:,} vs {published:,}"


def test_sanity_parameter_counts_are_exact() -> None:
    """SD 1.5's and SDXL's published U-Net counts (``PUBLISHED`` above) hold to the parameter."""
    sd15 = zoo.load_spec("sd15")
    assert zoo.count_parameters(zoo.build_component(sd15, sd15.denoiser)) == 859_520_964
    sdxl = zoo.load_spec("sdxl")
    assert zoo.count_parameters(zoo.build_component(sdxl, sdxl.denoiser)) == 2_567_463_684


def test_components_are_built_in_the_asked_dtype() -> None:
    spec = zoo.load_spec("flux-dev")
    module = zoo.build_component(spec, spec.denoiser, "meta", torch.bfloat16)
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in module.parameters())
    assert not module.training


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_models_build_on_cpu_and_run(name: str) -> None:
    """Text encoders, one denoiser forward and one VAE decode, with the shapes the pipeline uses."""
    torch.manual_seed(0)
    spec = zoo.load_spec(name)
    res = 2 * spec.resolution_multiple * 4
    modules = zoo.build_components(spec, "cpu", torch.float32)
    assert all(p.device.type == "cpu" for m in modules.values() for p in m.parameters())
    with torch.no_grad():
        embeds = families.encode_prompts(spec, modules, 1, "cpu")
        assert embeds["prompt_embeds"].ndim == 3
        assert all(torch.isfinite(t.float()).all() for t in embeds.values())

        den = spec.denoiser
        kwargs = families.denoiser_inputs(spec, res, spec.denoiser_call_batch(1, spec.cfg), "cpu",
                                          torch.float32)
        out = modules[den.name](**kwargs)
        sample = out[0] if isinstance(out, tuple) else out.sample
        latents_in = kwargs.get("sample", kwargs.get("hidden_states"))
        assert sample.shape == latents_in.shape  # the prediction has the latents' shape
        assert torch.isfinite(sample).all()

        latents = families.vae_latents(spec, res, 1, "cpu", torch.float32)
        image = modules[spec.vae.name].decode(latents).sample
        assert image.shape[0] == 1 and image.shape[1] == 3
        assert image.shape[-2:] == (res, res)
        assert torch.isfinite(image).all()


# --- bad architecture files -------------------------------------------------------------------


def tiny_sd_raw() -> dict[str, Any]:
    return yaml.safe_load((zoo.MODELS_DIR / "tiny-sd.yaml").read_text())


def write_spec(tmp_path: Path, raw: dict[str, Any], name: str = "broken.yaml") -> Path:
    """The architecture file ``name``, its ``name:`` key (where it has one) set to match the file name."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**raw, "name": path.stem} if "name" in raw else raw))
    return path


def test_denoiser_evaluations_are_the_schedulers_timesteps() -> None:
    # PNDM (SD 1.5, Openjourney) repeats a timestep in its PLMS warm-up: steps + 1 U-Net calls from 2 steps.
    sd15 = zoo.load_spec("sd15")
    assert [sd15.denoiser_evaluations(n) for n in (1, 2, 10, 25, 50)] == [1, 3, 11, 26, 51]
    assert zoo.load_spec("openjourney-v4").denoiser_evaluations(25) == 26
    for name in ("flux-dev", "sdxl", "sd35-large", "wan2.1-t2v-1.3b"):  # flow-match with dynamic shift too
        spec = zoo.load_spec(name)
        assert [spec.denoiser_evaluations(n) for n in (1, 10, 25, 50)] == [1, 10, 25, 50], name
    with pytest.raises(zoo.ZooError, match="steps must be a positive integer"):
        sd15.denoiser_evaluations(0)


def test_every_zoo_model_answers_its_denoiser_evaluations() -> None:
    for name in zoo.available_models():
        assert zoo.load_spec(name).denoiser_evaluations(4) in (4, 5), name


def test_unknown_model_lists_known_models() -> None:
    with pytest.raises(zoo.ZooError, match=r"unknown model 'sd16'.*sd15"):
        zoo.load_spec("sd16")


def test_missing_architecture_file(tmp_path: Path) -> None:
    with pytest.raises(zoo.ZooError, match="does not exist"):
        zoo.load_spec(tmp_path / "nope.yaml")


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    raw = tiny_sd_raw()
    raw["schedular"] = raw["scheduler"]
    with pytest.raises(zoo.ZooError, match=r"broken\.yaml.*'schedular'.*allowed.*'scheduler'"):
        zoo.load_spec(write_spec(tmp_path, raw))


def test_unknown_component_key_is_named(tmp_path: Path) -> None:
    raw = tiny_sd_raw()
    raw["components"]["unet"]["text_token"] = 16
    with pytest.raises(zoo.ZooError, match=r"component 'unet'.*'text_token'.*allowed.*'text_tokens'"):
        zoo.load_spec(write_spec(tmp_path, raw))


def test_unknown_component_config_key_is_named(tmp_path: Path) -> None:
    raw = tiny_sd_raw()
    raw["components"]["unet"]["config"]["cross_attn_dim"] = 32
    spec = zoo.load_spec(write_spec(tmp_path, raw))
    with pytest.raises(zoo.ZooError, match=r"component 'unet'.*UNet2DConditionModel.*'cross_attn_dim'"):
        zoo.build_component(spec, spec.denoiser, "meta")


@pytest.mark.parametrize(
    ("model", "path", "needle"),
    [
        ("tiny-sd", ["text_encoder", "config", "num_hiden_layers"], "'num_hiden_layers'"),
        ("tiny-qwen", ["text_encoder", "config", "text_config", "hiden_size"], "'text_config.hiden_size'"),
    ],
)
def test_unknown_text_encoder_config_key_is_named(
    tmp_path: Path, model: str, path: list[str], needle: str
) -> None:
    raw = yaml.safe_load((zoo.MODELS_DIR / f"{model}.yaml").read_text())
    node = raw["components"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = 5  # a typo: without the check, the default architecture is built silently
    spec = zoo.load_spec(write_spec(tmp_path, raw))
    with pytest.raises(zoo.ZooError, match=needle):
        zoo.build_component(spec, spec.text_encoders[0], "meta")


def test_missing_stage_is_named(tmp_path: Path) -> None:
    raw = tiny_sd_raw()
    del raw["components"]["vae"]["stage"]
    with pytest.raises(zoo.ZooError, match=r"component 'vae' needs stage one of .*got None"):
        zoo.load_spec(write_spec(tmp_path, raw))


def test_missing_vae_component(tmp_path: Path) -> None:
    raw = tiny_sd_raw()
    del raw["components"]["vae"]
    with pytest.raises(zoo.ZooError, match=r"exactly one component must have stage 'vae'"):
        zoo.load_spec(write_spec(tmp_path, raw))


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("family", "dit", r"family 'dit' unknown"),
        ("cfg_mode", "parallel", r"cfg_mode 'parallel' unknown"),
        ("default_precision", "fp8", r"default_precision 'fp8' unknown"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, key: str, value: str, needle: str) -> None:
    raw = tiny_sd_raw()
    raw[key] = value
    with pytest.raises(zoo.ZooError, match=needle):
        zoo.load_spec(write_spec(tmp_path, raw))


def test_missing_required_key(tmp_path: Path) -> None:
    raw = tiny_sd_raw()
    del raw["latent_stride"]
    with pytest.raises(zoo.ZooError, match=r"missing required key 'latent_stride'"):
        zoo.load_spec(write_spec(tmp_path, raw))


def test_unknown_class_is_reported(tmp_path: Path) -> None:
    raw = tiny_sd_raw()
    raw["components"]["unet"]["class"] = "diffusers.UNet3DConditionModelX"
    # Caught when the file is loaded (config validation), not in the first FLOPs job.
    with pytest.raises(zoo.ZooError, match=r"broken\.yaml: components\.unet\.class: diffusers has no class "
                       r"'UNet3DConditionModelX'; similar: UNet3DConditionModel"):
        zoo.load_spec(write_spec(tmp_path, raw))


def test_resolution_checks() -> None:
    spec = zoo.load_spec("sd35-large")
    spec.check_resolution(1024)
    with pytest.raises(zoo.ZooError, match=r"1000 is not a positive multiple of 16 px"):
        spec.check_resolution(1000)
    with pytest.raises(zoo.ZooError, match=r"exceeds 3072 px"):
        spec.check_resolution(4096)
    with pytest.raises(zoo.ZooError, match=r"unknown precision 'fp8'"):
        spec.precision("fp8")


# --- local weights ------------------------------------------------------------------------------


def test_local_weights_are_used_instead_of_random_init(tmp_path: Path) -> None:
    torch.manual_seed(1)
    spec = zoo.load_spec("tiny-sd")
    saved = zoo.build_components(spec, "cpu", torch.float32)
    weights = tmp_path / "tiny-sd-weights"
    for name, module in saved.items():
        module.save_pretrained(weights / name)
    raw = tiny_sd_raw()
    raw["weights"] = str(weights)
    local = zoo.load_spec(write_spec(tmp_path, raw, "tiny-sd-local.yaml"))
    assert local.weights == weights
    assert zoo.weights_source(local) == f"local:{weights}"

    torch.manual_seed(2)  # a random init would now differ from what was saved
    loaded = zoo.build_components(local, "cpu", torch.float32)
    random = zoo.build_components(spec, "cpu", torch.float32)
    for name, module in saved.items():
        expected = module.state_dict()
        got = loaded[name].state_dict()
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected), f"{name} not loaded"
        assert not loaded[name].training
        fresh = random[name].state_dict()
        assert not all(torch.equal(fresh[k], expected[k]) for k in expected if expected[k].numel() > 1)


def test_missing_local_weights_fail_without_download(tmp_path: Path) -> None:
    raw = tiny_sd_raw()
    raw["weights"] = str(tmp_path / "absent")
    with pytest.raises(zoo.ZooError, match=r"broken.yaml: weights: .*absent is not a folder"):
        zoo.load_spec(write_spec(tmp_path, raw))
    (tmp_path / "absent").mkdir()  # a folder without the components' weights: no download either
    spec = zoo.load_spec(write_spec(tmp_path, raw))
    with pytest.raises((OSError, ValueError)):
        zoo.build_component(spec, spec.denoiser, "cpu")
