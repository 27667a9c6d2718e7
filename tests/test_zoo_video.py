"""Text-to-video models in the zoo: published sizes, FLOPs sanity values, frames, the tiny models on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from diffusion_energy import grid
from diffusion_energy.counting import flops
from diffusion_energy.measurement import measure
from diffusion_energy.models import families, zoo

VIDEO_MODELS = ["wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "cogvideox-2b", "cogvideox1.5-5b", "hunyuanvideo"]
TINY_VIDEO = ["tiny-wan", "tiny-cogvideox", "tiny-cogvideox15", "tiny-hunyuanvideo"]

#: Parameters of each component as built from the published configs (meta), and what they are checked
#: against. Figures published exactly:
#: - T5-v1.1-XXL encoder 4,762,310,656 and CLIP ViT-L/14 text 123,060,480: as tests/test_zoo.py
#:   (sd35-large, flux-dev), the same modules;
#: - the Wan VAE 126,892,531: AutoencoderKLWan, the module Qwen-Image's VAE is (tests/test_zoo.py).
#: Figures published rounded (each model's card or report, and ML.ENERGY v3's model_info
#: total_parameters_billion, the denoiser alone, as for the image models), checked in
#: ``test_denoisers_match_the_published_sizes``; the exact value here is the count of the published config:
#: - Wan 2.1 transformers: "1.3B" and "14B" (Wan report arXiv 2503.20314; model_info 1.3, 14);
#: - CogVideoX transformers: "2B" and "5B" (CogVideoX report arXiv 2408.06072; model_info 2, 5);
#: - HunyuanVideo transformer "13B" (arXiv 2412.03603; model_info 13);
#: - UMT5-XXL encoder: 24 layers x 192.95M (4 attention 4096^2 + 3 gated FF 4096 x 10240 + norms and
#:   each layer's own 32 x 64 relative bias) + 1,050.1M embedding (256,384 x 4096) (google/umt5-xxl);
#: - Llama text encoder: Llama-3-8B's 8,030,261,248 (Meta's model card, 128,256 tokens) without the
#:   525,336,576 LM head, + 64 x 4096 for LLaVA's 128,320-token vocabulary: 7,505,186,816;
#: - the CogVideoX and HunyuanVideo VAEs: no figure published that we found; their configs' counts.
PUBLISHED: dict[tuple[str, str], int] = {
    ("wan2.1-t2v-1.3b", "text_encoder"): 5_680_910_336,
    ("wan2.1-t2v-1.3b", "transformer"): 1_418_996_800,
    ("wan2.1-t2v-1.3b", "vae"): 126_892_531,
    ("wan2.1-t2v-14b", "text_encoder"): 5_680_910_336,
    ("wan2.1-t2v-14b", "transformer"): 14_288_491_584,
    ("wan2.1-t2v-14b", "vae"): 126_892_531,
    ("cogvideox-2b", "text_encoder"): 4_762_310_656,
    ("cogvideox-2b", "transformer"): 1_693_783_872,
    ("cogvideox-2b", "vae"): 215_583_907,
    ("cogvideox1.5-5b", "text_encoder"): 4_762_310_656,
    ("cogvideox1.5-5b", "transformer"): 5_570_676_352,
    ("cogvideox1.5-5b", "vae"): 215_583_907,
    ("hunyuanvideo", "text_encoder"): 7_505_186_816,
    ("hunyuanvideo", "text_encoder_2"): 123_060_480,
    ("hunyuanvideo", "transformer"): 12_821_012_544,
    ("hunyuanvideo", "vae"): 246_478_803,
}

#: The denoiser sizes as published, in billions: ML.ENERGY v3 model_info/*.json total_parameters_billion
#: (shipped in resources/public/mlenergy-v3-video/model_info/). They are the models' names
#: rather than counts: the published configs hold 1.419B ("1.3B", +9%), 14.29B (+2%), 1.694B ("2B",
#: -15%), 5.571B ("5B", +11%) and 12.82B ("13B", -1%); the test allows the 20% such names span.
MLENERGY_MODEL_INFO = {
    "wan2.1-t2v-1.3b": ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", 1.3),
    "wan2.1-t2v-14b": ("Wan-AI/Wan2.1-T2V-14B-Diffusers", 14.0),
    "cogvideox-2b": ("zai-org/CogVideoX-2b", 2.0),
    "cogvideox1.5-5b": ("zai-org/CogVideoX1.5-5B", 5.0),
    "hunyuanvideo": ("tencent/HunyuanVideo", 13.0),
}
MODEL_INFO_DIR = Path(__file__).resolve().parents[1] / "resources/public/mlenergy-v3-video/model_info"


@pytest.fixture(scope="module")
def counted() -> dict[tuple[str, str], int]:
    out = {}
    for name in VIDEO_MODELS:
        spec = zoo.load_spec(name)
        for comp in spec.components:
            module = zoo.build_component(spec, comp, "meta", torch.bfloat16)
            assert all(p.is_meta for p in module.parameters()), "counting must not allocate"
            out[(name, comp.name)] = zoo.count_parameters(module)
    return out


@pytest.mark.parametrize(("model", "component"), sorted(PUBLISHED))
def test_parameter_counts_match_published(counted: dict[tuple[str, str], int], model: str,
                                          component: str) -> None:
    assert counted[(model, component)] == PUBLISHED[(model, component)]


@pytest.mark.parametrize("model", VIDEO_MODELS)
def test_denoisers_match_the_published_sizes(counted: dict[tuple[str, str], int], model: str) -> None:
    """Each denoiser is the size its publisher names (to 20%: "2B" is 1.69B)."""
    upstream, billions = MLENERGY_MODEL_INFO[model]
    path = MODEL_INFO_DIR / f"{upstream}.json"
    if path.is_file():
        assert json.loads(path.read_text())["total_parameters_billion"] == billions
    spec = zoo.load_spec(model)
    assert counted[(model, spec.denoiser.name)] / 1e9 == pytest.approx(billions, rel=0.20)


def test_umt5_and_llama_counts_are_their_derivations(counted: dict[tuple[str, str], int]) -> None:
    layer = 4 * 4096 * 4096 + 3 * 4096 * 10240 + 2 * 4096 + 32 * 64
    assert counted[("wan2.1-t2v-1.3b", "text_encoder")] == 24 * layer + 256_384 * 4096 + 4096
    assert counted[("hunyuanvideo", "text_encoder")] == 8_030_261_248 - 128_256 * 4096 + 64 * 4096


@pytest.mark.parametrize("model", VIDEO_MODELS)
def test_the_file_says_how_mlenergy_ran_it(model: str) -> None:
    """Frames, size and fps of ML.ENERGY v3's runs (ml-energy/benchmark workloads.py MODEL_CONFIGS)."""
    ran = {"wan2.1-t2v-1.3b": (81, 15, 480, 832), "wan2.1-t2v-14b": (81, 15, 480, 832),
           "cogvideox-2b": (49, 8, 480, 720), "cogvideox1.5-5b": (81, 8, 768, 1360),
           "hunyuanvideo": (129, 15, 720, 1280)}[model]
    spec = zoo.load_spec(model)
    assert spec.video is not None
    assert (spec.video.frames, spec.video.fps, spec.video.height, spec.video.width) == ran
    assert spec.frame_size(spec.video.height) == (spec.video.height, spec.video.width)
    assert spec.default_frames == ran[0]


def test_frames_are_checked() -> None:
    wan, sd = zoo.load_spec("wan2.1-t2v-1.3b"), zoo.load_spec("sd15")
    with pytest.raises(zoo.ZooError, match="makes images: frames must be 1"):
        families.calls(sd, 512, True, 1, frames=5)
    with pytest.raises(zoo.ZooError, match="not 1 \\+ a multiple of 4"):
        families.calls(wan, 480, True, 1, frames=80)
    def plain(calls: list[families.Call]) -> list[tuple]:
        return [(c.component, c.shape, c.call_batch, c.calls, c.tokens) for c in calls]

    assert plain(families.calls(sd, 512, True, 1, frames=1)) == plain(families.calls(sd, 512, True, 1))


# --- FLOPs per video: sanity values, counted on meta at each model's published video ---------------

#: One forward of the denoiser at batch 1 and one VAE decode of one video, at the model's default video
#: (ML.ENERGY's frames and size), counted on meta (FLOPs: 2 per multiply-add, attention included).
#: Wan 2.1 1.3B: 32,760 video tokens (21 latent frames x 30 x 52) + 512 text keys; its attention,
#: 4 N^2 d per layer, is 198 of the 283 TFLOP. HunyuanVideo: 118,800 video tokens (33 x 45 x 80) + 256 text.
FLOPS_SANITY = {
    "wan2.1-t2v-1.3b": {"transformer": 283_001_787_777_024, "vae": 275_352_205_639_680},
    "cogvideox-2b": {"transformer": 119_997_311_418_368, "vae": 315_027_947_520_000},
    "hunyuanvideo": {"transformer": 12_068_592_207_003_648, "vae": 2_999_972_184_883_200},
}


@pytest.fixture(scope="module")
def counted_flops() -> dict[str, pd.DataFrame]:
    out = {}
    for model in FLOPS_SANITY:
        spec = zoo.load_spec(model)
        assert spec.video is not None
        out[model], _ = flops.count_shapes(spec, [(spec.video.height, False, 1)])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(FLOPS_SANITY))
def test_flops_sanity_values(counted_flops: dict[str, pd.DataFrame], model: str) -> None:
    table = counted_flops[model].set_index("component")
    for component, value in FLOPS_SANITY[model].items():
        assert table.loc[component, "flops"] == value, component
    assert (table["frames"] == zoo.load_spec(model).default_frames).all()


@pytest.mark.slow
def test_wan_flops_match_an_analytic_estimate(counted_flops: dict[str, pd.DataFrame]) -> None:
    """Self-attention 4 N^2 d per layer, cross-attention 4 N T d, and 2 FLOPs per weight per token
    for the blocks' linear layers (attention 4 d^2 x 2, FFN 2 d f): within 2% of the count."""
    n, t, d, f, layers = 21 * 30 * 52, 512, 1536, 8960, 30
    per_layer = 4 * n * n * d + 4 * n * t * d + 2 * n * (4 * d * d + 2 * d * f) + 2 * (n + t) * 2 * d * d
    counted = counted_flops["wan2.1-t2v-1.3b"].set_index("component").loc["transformer", "flops"]
    assert counted == pytest.approx(layers * per_layer, rel=0.02)


def test_frames_scale_the_tokens_and_the_decode() -> None:
    """More frames: more latent frames for the denoiser and the VAE; the text stage is unchanged."""
    spec = zoo.load_spec("tiny-wan")
    table, _ = flops.count_shapes(spec, [(32, True, 1, 5), (32, True, 1, 17)])
    by = {(r.component, r.frames): r for r in table.itertuples()}
    assert by[("transformer", 17)].tokens - 8 == 5 * 2 * 3 and by[("transformer", 5)].tokens - 8 == 2 * 2 * 3
    assert by[("vae", 17)].tokens == 5 * 4 * 6
    assert by[("text_encoder", 5)].flops == by[("text_encoder", 17)].flops
    assert by[("vae", 17)].flops > 2 * by[("vae", 5)].flops


def test_cogvideox15_pads_latent_frames_to_its_temporal_patch() -> None:
    spec = zoo.load_spec("cogvideox1.5-5b")
    fam = families.family_of(spec)
    assert fam.latent_frames(spec, 81) == 21 and fam.denoiser_frames(spec, 81) == 22
    assert fam.video_tokens(spec, 768, 81) == 11 * 48 * 85
    den = next(c for c in families.calls(spec, 768, True, 1) if c.stage == "denoise")
    assert (den.call_batch, den.calls, den.tokens) == (2, 1, 11 * 48 * 85 + 226)


# --- the measurement path runs a video pipeline's stages ------------------------------------------

@pytest.mark.parametrize("model", TINY_VIDEO)
def test_tiny_pipeline_runs_the_shapes_the_family_counts(model: str) -> None:
    """The diffusers pipeline, called as the measure job calls it (num_frames, the video's height and
    width), runs the denoiser on the latents the family counts, as often as counted, and the VAE
    decodes a video of the asked frames and size."""
    spec = zoo.load_spec(model)
    assert spec.video is not None
    # Not the default (num_frames must reach the pipeline), and an odd count of latent frames: the
    # CogVideoX VAE decodes an even count into 4 frames per latent frame (13 -> 16), as the pipeline does.
    frames = spec.video.frames + 2 * spec.video.temporal_stride
    workload = measure.Workload(spec, "fp32", "cpu")
    seen: list[tuple[int, ...]] = []
    den = workload.modules[spec.denoiser.name]
    den.register_forward_pre_hook(lambda _m, _a, kw: seen.append(tuple(kw["hidden_states"].shape)),
                                  with_kwargs=True)
    for cfg in (False, True):
        seen.clear()
        point = grid.GridPoint(model, "fp32", 32, 2, cfg, 1, frames)
        with torch.inference_mode():
            workload.denoise_fn(point)()
        (expected,) = [c for c in families.calls(spec, 32, cfg, 1, frames) if c.stage == "denoise"]
        counted = families.denoiser_inputs(spec, 32, expected.call_batch, "meta", torch.float32, frames)
        assert seen == [tuple(counted["hidden_states"].shape)] * (expected.calls * point.steps), cfg
    with torch.inference_mode():
        (video,) = workload.vae_fn(32, 1, frames)()
    sample = video.sample if hasattr(video, "sample") else video[0]
    assert tuple(sample.shape[-3:]) == (frames, *spec.frame_size(32))


def test_measured_rows_say_frames_and_size() -> None:
    spec = zoo.load_spec("tiny-wan")
    point = grid.GridPoint("tiny-wan", "fp32", 32, 2, True, 1, 9)
    keys = measure.point_keys(point, "cpu", spec)
    assert (keys["frames"], keys["height"], keys["width"], keys["fps"]) == (9, 32, 48, 8.0)
    assert point.slug == "32px_9frames_2steps_cfg1_b1"
    assert grid.GridPoint.from_slug("tiny-wan", "fp32", point.slug) == point
    image = grid.GridPoint("sd15", "fp16", 512, 50, True, 1)
    assert image.slug == "512px_50steps_cfg1_b1" and measure.point_keys(image, "h100", zoo.load_spec("sd15"))[
        "frames"] == 1


def test_a_grid_may_list_frames() -> None:
    """A subgrid's frames (default: each model's usual); an image model refuses frames other than 1."""
    sub = {"models": ["tiny-wan", "tiny-sd"], "resolutions": [32], "steps": [2], "precisions": ["fp32"]}
    grid.validate_schema({"grids": {"v": {**sub, "frames": [5, 9]}}, "protocol": {}})
    points = grid.grid_points({"grids": {"v": {**sub, "models": ["tiny-wan"], "frames": [5, 9]},
                                         "i": sub}})
    assert sorted((p.model, p.frames) for p in points) == [("tiny-sd", 1), ("tiny-wan", 5), ("tiny-wan", 9)]
    assert grid.flops_requests(points)["tiny-wan"]["frames"] == [5, 9]
    with pytest.raises(grid.ConfigError, match=r"grids\.v\.frames: .*makes images"):
        grid.grid_points({"grids": {"v": {**sub, "frames": [5]}}})
