"""SSD-1B, SDXL-Turbo and Openjourney v4 (sd / sdxl families): sizes, settings, FLOPs, load checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from tiny_support import assert_batch_three_derived, assert_runs_on_cpu

from diffusion_energy.counting import flops
from diffusion_energy.models import families, zoo

MODELS = ["openjourney-v4", "sdxl-turbo", "ssd-1b"]

#: Published parameter counts (``num_parameters()`` of the released components).
#: - CLIP ViT-L/14 text tower 123,060,480, OpenCLIP ViT-bigG/14 with projection 694,659,840, SD U-Net
#:   859,520,964, SDXL U-Net 2,567,463,684, SD/SDXL VAE 83,653,863: the sd15 / sdxl figures of
#:   tests/test_zoo.py (Openjourney v4 is an SD 1.5 fine-tune, SDXL-Turbo an SDXL distillation,
#:   SSD-1B keeps SDXL's text encoders and VAE).
#: - SSD-1B U-Net: published only as "1.3B" (model card; Gupta et al., arXiv 2401.02677; ML.ENERGY
#:   v2 denoising_params 1.3). 1,331,334,404 is the count of the config (see ssd-1b.yaml), pinned
#:   exactly below and checked against 1.3B within its rounding.
PUBLISHED: dict[tuple[str, str], int] = {
    ("openjourney-v4", "text_encoder"): 123_060_480,
    ("openjourney-v4", "unet"): 859_520_964,
    ("openjourney-v4", "vae"): 83_653_863,
    ("sdxl-turbo", "text_encoder"): 123_060_480,
    ("sdxl-turbo", "text_encoder_2"): 694_659_840,
    ("sdxl-turbo", "unet"): 2_567_463_684,
    ("sdxl-turbo", "vae"): 83_653_863,
    ("ssd-1b", "text_encoder"): 123_060_480,
    ("ssd-1b", "text_encoder_2"): 694_659_840,
    ("ssd-1b", "unet"): 1_331_334_404,
    ("ssd-1b", "vae"): 83_653_863,
}
SSD1B_UNET_PUBLISHED_B = 1.3

#: ML.ENERGY v2 models.json, billions to one decimal (its aggregate_leaderboard_models.py:
#: f"{params/1e9:.1f}B"). total_params = the sum over every module of the pipeline (text encoders,
#: U-Net, VAE; safety_checker=None), denoising_params = the U-Net; resolution = the pipeline default.
MLENERGY_V2 = {
    "openjourney-v4": {"total_params": 1.1, "denoising_params": 0.9, "resolution": "512x512"},
    "sdxl-turbo": {"total_params": 3.5, "denoising_params": 2.6, "resolution": "512x512"},
    "ssd-1b": {"total_params": 2.2, "denoising_params": 1.3, "resolution": "1024x1024"},
}
V2_IDS = {"openjourney-v4": "prompthero/openjourney-v4", "sdxl-turbo": "stabilityai/sdxl-turbo",
          "ssd-1b": "segmind/SSD-1B"}
#: The published sources as shipped (resources/public/<source>/, the upstream layout).
PUBLIC_DATA = Path(__file__).resolve().parents[1] / "resources" / "public"

#: How ML.ENERGY v2 ran them (benchmark_one_datapoint.py passes only prompts, generator, steps and
#: output_type, so the pipeline defaults ran): precision, default resolution, guidance.
RUN = {
    "openjourney-v4": ("fp16", 512, 7.5, "diffusers.StableDiffusionPipeline"),
    "sdxl-turbo": ("fp16", 512, 5.0, "diffusers.StableDiffusionXLPipeline"),
    "ssd-1b": ("fp16", 1024, 5.0, "diffusers.StableDiffusionXLPipeline"),
}

#: U-Net TFLOP of one batch-1 forward at the benchmark's resolution, counted on meta.
SANITY_TFLOP = {"openjourney-v4": 0.8033, "sdxl-turbo": 1.5888, "ssd-1b": 4.2078}


@pytest.fixture(scope="module")
def counted() -> dict[str, Any]:
    """Each distinct component built once on meta (fp16): its parameters; each U-Net's FLOPs of one
    batch-1 forward at the benchmark's resolution."""
    params: dict[tuple[str, str], int] = {}
    unet_flops: dict[str, int] = {}
    seen: dict[str, int] = {}
    for name in MODELS:
        spec = zoo.load_spec(name)
        res = RUN[name][1]
        for comp in spec.components:
            key = json.dumps([comp.class_path, comp.config], sort_keys=True)
            if key in seen and comp.stage != "denoise":
                params[(name, comp.name)] = seen[key]
                continue
            module = zoo.build_component(spec, comp, "meta", torch.float16)
            assert all(p.is_meta for p in module.parameters()), "counting must not allocate"
            params[(name, comp.name)] = seen[key] = zoo.count_parameters(module)
            if comp.stage == "denoise":
                (den,) = [c for c in families.calls(spec, res, False, 1) if c.stage == "denoise"]
                unet_flops[name] = flops.count_call(den.prepare(module, 1, "meta", torch.float16)).flops
            del module
    return {"params": params, "flops": unet_flops}


# --- parameter counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "component"), sorted(PUBLISHED))
def test_parameter_counts_match_published(counted: dict[str, Any], model: str, component: str) -> None:
    n, published = counted["params"][(model, component)], PUBLISHED[(model, component)]
    assert n == pytest.approx(published, rel=1e-3), f"{model}.{component}: {n:,} vs {published:,}"
    assert n == published


def test_every_component_is_published() -> None:
    for name in MODELS:
        assert {c.name for c in zoo.load_spec(name).components} == {c for m, c in PUBLISHED if m == name}


def test_ssd1b_unet_is_the_published_1_3b(counted: dict[str, Any]) -> None:
    """The paper's and model card's "1.3B parameter UNet"; about half of SDXL's (the "50% smaller")."""
    n = counted["params"][("ssd-1b", "unet")]
    assert round(n / 1e9, 1) == SSD1B_UNET_PUBLISHED_B
    assert 0.5 < n / counted["params"][("sdxl-turbo", "unet")] < 0.53


@pytest.mark.parametrize("model", MODELS)
def test_mlenergy_v2_sizes(counted: dict[str, Any], model: str) -> None:
    """v2's total is the whole pipeline (text encoders + U-Net + VAE), its denoising the U-Net."""
    spec = zoo.load_spec(model)
    p = {c.name: counted["params"][(model, c.name)] for c in spec.components}
    assert round(sum(p.values()) / 1e9, 1) == MLENERGY_V2[model]["total_params"]
    assert round(p["unet"] / 1e9, 1) == MLENERGY_V2[model]["denoising_params"]


def test_pinned_sizes_are_mlenergys() -> None:
    v2 = json.loads((PUBLIC_DATA / "mlenergy-v2/text-to-image/models.json").read_text())
    for name, sizes in MLENERGY_V2.items():
        entry = v2[V2_IDS[name]]
        assert {k: entry[k] for k in sizes} == sizes, name
        kwargs = json.loads((PUBLIC_DATA / f"mlenergy-v2/pipeline-kwargs/{V2_IDS[name]}/kwargs.json")
                            .read_text())
        assert kwargs["torch_dtype"] == "torch.float16"


# --- how the benchmark ran them -----------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_run_settings_are_the_benchmarks(model: str) -> None:
    precision, res, guidance, pipeline = RUN[model]
    spec = zoo.load_spec(model)
    assert spec.default_precision == precision and spec.pipeline == pipeline
    assert spec.cfg and spec.cfg_mode == "batch" and spec.guidance_scale == guidance
    # the pipeline's default image is the U-Net's sample_size x the VAE's stride
    assert spec.denoiser.config["sample_size"] * spec.latent_stride == res
    assert "time_cond_proj_dim" not in spec.denoiser.config  # so guidance > 1 means CFG on
    assert all(c.seq_len == 77 for c in spec.text_encoders) and spec.denoiser.text_tokens == 77
    spec.check_resolution(res)
    assert spec.reference == f"https://huggingface.co/{V2_IDS[model]}"


def test_turbo_and_openjourney_are_their_base_architectures() -> None:
    """Same components as SDXL / SD 1.5 but for the U-Net's default size (and the schedulers)."""
    for name, base, sample_size in (("sdxl-turbo", "sdxl", 64), ("openjourney-v4", "sd15", 64)):
        spec, ref = zoo.load_spec(name), zoo.load_spec(base)
        assert spec.family == ref.family and spec.pipeline == ref.pipeline
        for comp, other in zip(spec.components, ref.components, strict=True):
            assert (comp.name, comp.class_path) == (other.name, other.class_path)
            mine = {k: v for k, v in comp.config.items() if k != "sample_size"}
            theirs = {k: v for k, v in other.config.items() if k != "sample_size"}
            assert mine == theirs, (name, comp.name)
        assert spec.denoiser.config["sample_size"] == sample_size


def test_ssd1b_unet_structure() -> None:
    """SDXL's blocks with 2/4 transformer layers down, [4, 4, 10] and [2, 1, 1] up, no mid attention."""
    spec = zoo.load_spec("ssd-1b")
    unet = zoo.build_component(spec, spec.denoiser, "meta", torch.float16)
    depth = [[len(a.transformer_blocks) for a in getattr(b, "attentions", [])] for b in unet.down_blocks]
    assert depth == [[], [2, 2], [4, 4]]
    depth = [[len(a.transformer_blocks) for a in getattr(b, "attentions", [])] for b in unet.up_blocks]
    assert depth == [[4, 4, 10], [2, 1, 1], []]
    assert type(unet.mid_block).__name__ == "UNetMidBlock2D"
    assert len(unet.mid_block.resnets) == 1 and not any(unet.mid_block.attentions)


# --- FLOPs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_unet_flops_sanity_value(counted: dict[str, Any], model: str) -> None:
    assert counted["flops"][model] == pytest.approx(SANITY_TFLOP[model] * 1e12, rel=1e-3)


def test_openjourney_unet_flops_are_sd15s(counted: dict[str, Any]) -> None:
    """The SD 1.5 U-Net: tests/test_flops.py's sd15 value at 512 px (the configs are equal, above)."""
    assert counted["flops"]["openjourney-v4"] == pytest.approx(0.803e12, rel=0.01)


def test_ssd1b_saves_what_its_removed_blocks_cost(counted: dict[str, Any]) -> None:
    """SDXL (6.761 TFLOP at 1024 px, tests/test_flops.py) less 36 transformer blocks and a ResNet.

    Removed, 1280 wide at 32x32 latents: 10 - 4 in each of the 2 down and the first 2 up layers,
    and the mid block's whole 10-block transformer (with its in/out projections) and second
    ResNet; 640 wide at 64x64: 2 - 1 in the last 2 up layers. A block costs its self- and
    cross-attention projections and GEGLU MLP (2 x (4 + 2 + 12) d^2 per token), its attention
    (4 n^2 d + 4 n 77 d) and the text keys and values (2 x 2 x 2048 d per text token).
    """

    def block(d: int, n: int) -> float:
        return 2 * 18 * d * d * n + 4 * n * n * d + 4 * n * 77 * d + 2 * 2 * d * 2048 * 77

    n32 = 32 * 32
    mid_extra = 2 * 2 * 1280 * 1280 * n32 + 2 * 2 * 9 * 1280 * 1280 * n32  # proj_in/out, two 3x3 convs
    removed = (6 * 2 + 6 * 2 + 10) * block(1280, n32) + 2 * block(640, 64 * 64) + mid_extra
    assert 6.761e12 - counted["flops"]["ssd-1b"] == pytest.approx(removed, rel=0.01)


# --- the asymmetric U-Net on the CPU path -------------------------------------------------------



def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((zoo.MODELS_DIR / f"{name}.yaml").read_text())


def _write(tmp_path: Path, raw: dict[str, Any], name: str = "broken.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def tiny_ssd(tmp_path: Path) -> zoo.ModelSpec:
    """tiny-sdxl made asymmetric the way SSD-1B is: per-layer depths, a one-ResNet mid block."""
    raw = _raw("tiny-sdxl")
    raw["name"] = "tiny-ssd"
    unet = raw["components"]["unet"]["config"]
    unet["transformer_layers_per_block"] = [1, [2, 1]]
    unet["reverse_transformer_layers_per_block"] = [[1, 2, 1], 1]
    unet["mid_block_type"] = "UNetMidBlock2D"
    return zoo.load_spec(_write(tmp_path, raw, "tiny-ssd.yaml"))


# --- consistency checks on load -----------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_text_width_mismatch_fails_on_load(tmp_path: Path, name: str) -> None:
    raw = _raw(name)
    raw["components"]["unet"]["config"]["cross_attention_dim"] += 64
    with pytest.raises(zoo.ZooError, match=r"hidden width.*unet\.config\.cross_attention_dim"):
        zoo.load_spec(_write(tmp_path, raw))


def test_pooled_width_mismatch_fails_on_load(tmp_path: Path) -> None:
    raw = _raw("ssd-1b")
    raw["components"]["text_encoder_2"]["config"]["projection_dim"] = 1024
    with pytest.raises(zoo.ZooError, match=r"text_encoder_2\.config\.projection_dim.*"
                                           r"unet\.config\.projection_class_embeddings_input_dim"):
        zoo.load_spec(_write(tmp_path, raw))


@pytest.mark.parametrize("name", MODELS)
def test_latent_channel_mismatch_fails_on_load(tmp_path: Path, name: str) -> None:
    raw = _raw(name)
    raw["components"]["vae"]["config"]["latent_channels"] = 16
    with pytest.raises(zoo.ZooError, match=r"'unet' predicts 4 .*vae\.config\.latent_channels is 16"):
        zoo.load_spec(_write(tmp_path, raw))


def test_tiny_asymmetric_unet_runs_on_cpu_and_counts_every_batch(tiny_ssd: zoo.ModelSpec) -> None:
    assert_runs_on_cpu(tiny_ssd, 32)
    assert_batch_three_derived(tiny_ssd, 32)
