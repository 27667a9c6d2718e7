"""Kandinsky 2.2 and Kandinsky 3 in the zoo: published sizes, FLOPs sanity, the tiny models end to end,
measurement matching the counted calls, load checks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from diffusion_energy import grid
from diffusion_energy.counting import flops
from diffusion_energy.measurement import measure
from diffusion_energy.models import families, zoo

K22, K3 = "kandinsky-2.2", "kandinsky-3"
TINY = {K22: "tiny-kandinsky22", K3: "tiny-kandinsky3"}
#: The tiny models' test resolution: Kandinsky3Pipeline makes latents of 1/8 the side in 64 px steps.
TINY_RES = {"tiny-kandinsky22": 32, "tiny-kandinsky3": 64}

#: Parameters of each component as built from the published configs (meta, fp16), with what they are
#: checked against:
#: - prior_text_encoder: OpenCLIP ViT-bigG/14 text tower with projection, 694.66M
#:   (mlfoundations/open_clip/docs/model_profile.csv ViT-bigG-14 text_mparams; the same tower as
#:   tests/test_zoo.py's sdxl text_encoder_2, 694,659,840).
#: - prior_prior: PriorTransformer, "Diffusion Image Prior - 1B" (ai-forever/Kandinsky-2 README).
#: - prior_image_encoder: OpenCLIP ViT-bigG/14 image tower with projection, 1844.91M
#:   (mlfoundations/open_clip/docs/model_profile.csv ViT-bigG-14 image_mparams; "1.8B" in the
#:   Kandinsky-2 README).
#: - unet (2.2): 1,253,057,288; no exact count is published: ML.ENERGY v2 denoising_params 1.3 (a 1.22B U-Net,
#:   the README's 2.1-era figure, would round to 1.2).
#: - movq (2.2): "MoVQ encoder/decoder - 67M" (Kandinsky-2 README): 67.83M with the 16384 x 4 codebook.
#: - text_encoder (3): FLAN-UL2 encoder, "Flan-UL2 - 8.6B" (ai-forever/Kandinsky-3 README): 8,590.2M without
#:   the 32128 x 4096 embedding, 8,721.8M with it.
#: - unet (3): the original get_T2I_unet (ai-forever/Kandinsky-3) counted on meta, 3,038,562,820, + the
#:   text projection diffusers moves into the U-Net (4096 x 4096 + LayerNorm 8192) = 3,055,348,228
#:   ("3B" in the README; ML.ENERGY 3.1).
#: - movq (3): the original get_movq counted on meta, 270,603,567, + the 16384 x 4 codebook diffusers'
#:   VQModel holds = 270,669,103 (the README's "267M" is 1.3% lower).
PUBLISHED: dict[tuple[str, str], int] = {
    (K22, "prior_text_encoder"): 694_659_840,
    (K22, "prior_prior"): 1_026_225_920,
    (K22, "prior_image_encoder"): 1_844_907_264,
    (K22, "unet"): 1_253_057_288,
    (K22, "movq"): 67_832_495,
    (K3, "text_encoder"): 8_721_797_632,
    (K3, "unet"): 3_055_348_228,
    (K3, "movq"): 270_669_103,
}
#: The rounded figures above, to the precision published.
PUBLISHED_ROUNDED: dict[tuple[str, str], tuple[float, float]] = {  # (value, unit)
    (K22, "prior_text_encoder"): (694.66, 1e6),
    (K22, "prior_prior"): (1.0, 1e9),
    (K22, "prior_image_encoder"): (1844.91, 1e6),
    (K22, "movq"): (67.8, 1e6),
}

#: ML.ENERGY v2 text-to-image/models.json: total_params / denoising_params (billions, one decimal).
#: Their ml-energy/leaderboard-v2/scripts/benchmark_one_datapoint.py count_parameters sums, over the
#: pipeline's modules, diffusers' num_parameters(exclude_embeddings=True) (nn.Embedding tables left out:
#: the MoVQ codebook) and plain parameter counts of transformers modules. For Kandinsky 2.2
#: (KandinskyV22CombinedPipeline) that is unet + movq + prior_prior + prior_image_encoder +
#: prior_text_encoder: the total INCLUDES the CLIP image tower (without it the sum is 3.0B).
MLENERGY_V2 = {K22: (4.9, 1.3), K3: (12.0, 3.1)}
MLENERGY_V2_MODELS = (Path(__file__).resolve().parents[1] / "resources" / "public" / "mlenergy-v2"
                      / "text-to-image" / "models.json")
HUB_ID = {K22: "kandinsky-community/kandinsky-2-2-decoder", K3: "kandinsky-community/kandinsky-3"}

#: FLOPs of one U-Net forward at the public resolution, batch 1 (CFG off), counted on meta.
UNET_TFLOP = {
    K22: (512, 0.85606),  # 64 x 64 latents, 10 image-embedding tokens
    K3: (1024, 3.17464),  # 128 x 128 latents, 33 text tokens
}


@pytest.fixture(scope="module")
def specs() -> dict[str, zoo.ModelSpec]:
    return {name: zoo.load_spec(name) for name in (K22, K3)}


@pytest.fixture(scope="module")
def counts(specs: dict[str, zoo.ModelSpec]) -> dict[tuple[str, str], int]:
    """Parameters of every component, and (key "<name>", "mlenergy") the sum as ML.ENERGY counted it."""
    out: dict[tuple[str, str], int] = {}
    for name, spec in specs.items():
        mlenergy = 0
        for comp in spec.components:
            module = zoo.build_component(spec, comp, "meta", torch.float16)
            assert all(p.is_meta for p in module.parameters()), "counting must not allocate"
            out[(name, comp.name)] = n = zoo.count_parameters(module)
            diffusers_model = comp.class_path.startswith("diffusers.")
            mlenergy += module.num_parameters(exclude_embeddings=True) if diffusers_model else n
        out[(name, "mlenergy")] = mlenergy
    return out


@pytest.fixture(scope="module")
def unet_counts(specs: dict[str, zoo.ModelSpec]) -> dict[str, tuple[flops.OpCount, float]]:
    """Each U-Net's counted FLOPs at the public resolution (batch 1) and an estimate from module hooks."""
    out = {}
    for name, spec in specs.items():
        res = UNET_TFLOP[name][0]
        module = zoo.build_component(spec, spec.denoiser, "meta", torch.float16)
        call = next(c for c in families.calls(spec, res, False, 1) if c.stage == "denoise")
        assert (call.call_batch, call.calls, call.per) == (1, 1, "step")
        run = call.prepare(module, 1, "meta", torch.float16)
        out[name] = (flops.count_call(run), weights_times_positions(module, run))
    return out


def weights_times_positions(module: torch.nn.Module, run: Any) -> float:
    """An analytic estimate, independent of the ATen FLOP formulas: 2 x weights x output positions of
    every convolution and linear layer, and 4 x queries x keys x width of every attention."""
    total = [0.0]

    def layer(mod: torch.nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
        if isinstance(mod, torch.nn.Linear):
            total[0] += 2 * mod.weight.numel() * out.numel() / mod.out_features
        elif isinstance(mod, torch.nn.ConvTranspose2d):
            total[0] += 2 * mod.weight.numel() * args[0].shape[0] * args[0].shape[2] * args[0].shape[3]
        elif isinstance(mod, torch.nn.Conv2d):
            total[0] += 2 * mod.weight.numel() * out.numel() / mod.out_channels

    def attention(mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        x = args[0] if args else kwargs["hidden_states"]
        context = args[1] if len(args) > 1 else kwargs.get("encoder_hidden_states")
        b, queries = x.shape[0], (x.shape[1] if x.ndim == 3 else x.shape[2] * x.shape[3])
        if context is None:
            keys = queries
        elif getattr(mod, "add_k_proj", None) is not None:  # added K/V: context tokens + the image's own
            keys = context.shape[1] + (0 if mod.only_cross_attention else queries)
        else:
            keys = context.shape[1]
        total[0] += 4 * b * queries * keys * mod.inner_dim

    from diffusers.models.attention_processor import Attention

    handles = [m.register_forward_hook(layer) for m in module.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    handles += [m.register_forward_hook(attention, with_kwargs=True) for m in module.modules()
                if isinstance(m, Attention)]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return total[0]


# --- the architecture files ---------------------------------------------------------------------


def test_the_files_say_how_the_benchmark_ran_them(specs: dict[str, zoo.ModelSpec]) -> None:
    k22, k3 = specs[K22], specs[K3]
    assert k22.family == "kandinsky22" and k22.pipeline == "diffusers.KandinskyV22Pipeline"
    assert k3.family == "kandinsky3" and k3.pipeline == "diffusers.Kandinsky3Pipeline"
    for spec in (k22, k3):
        assert spec.default_precision == "fp16"  # ML.ENERGY v2 kwargs.json torch_dtype
        assert spec.cfg and spec.cfg_mode == "batch" and spec.latent_stride == 8
    assert k22.guidance_scale == 4.0 and k3.guidance_scale == 3.0  # the pipelines' defaults
    assert k22.family_options["prior_steps"] == 25 and k22.family_options["prior_guidance_scale"] == 4.0
    assert [(c.name, c.seq_len) for c in k22.text_encoders] == [
        ("prior_text_encoder", 77), ("prior_prior", 81), ("prior_image_encoder", 257)]
    assert k22.denoiser.text_tokens == 10  # ImageProjection's image-embedding tokens
    assert [(c.name, c.seq_len) for c in k3.text_encoders] == [("text_encoder", 128)]
    assert k3.denoiser.text_tokens == 33  # a 32-token prompt + 1 (cut_context)
    for name in (K22, K3, *TINY.values()):
        assert name in zoo.available_models()
    assert type(zoo.build_scheduler(k22)).__name__ == "DDPMScheduler"


def test_the_decoder_unet_predicts_noise_and_variance(specs: dict[str, zoo.ModelSpec]) -> None:
    spec = specs[K22]
    assert families.family_of(spec).predicted_channels(spec) == 8 == 2 * spec.vae.config["latent_channels"]


# --- parameter counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "component"), sorted(PUBLISHED))
def test_parameter_counts_match_published(counts: dict[tuple[str, str], int], model: str,
                                          component: str) -> None:
    n, published = counts[(model, component)], PUBLISHED[(model, component)]
    assert n == pytest.approx(published, rel=1e-3), f"{model}.{component}: {n:,} vs {published:,}"
    if (model, component) in PUBLISHED_ROUNDED:
        value, unit = PUBLISHED_ROUNDED[(model, component)]
        digits = len(str(value).split(".")[1])
        assert round(n / unit, digits) == value


def test_published_readme_figures(counts: dict[tuple[str, str], int]) -> None:
    """The rounded figures of the original repositories' READMEs."""
    t5_embedding = 32128 * 4096
    assert round((counts[(K3, "text_encoder")] - t5_embedding) / 1e9, 1) == 8.6  # "Flan-UL2 - 8.6B"
    assert round(counts[(K3, "unet")] / 1e9) == 3  # "Latent Diffusion U-Net - 3B"
    assert counts[(K3, "movq")] == pytest.approx(267e6, rel=0.015)  # "MoVQ encoder/decoder - 267M"
    assert round(counts[(K22, "prior_prior")] / 1e9) == 1  # "Diffusion Image Prior - 1B"


def test_totals_match_mlenergy(counts: dict[tuple[str, str], int]) -> None:
    if MLENERGY_V2_MODELS.is_file():
        table = json.loads(MLENERGY_V2_MODELS.read_text())
        for name, (total, denoising) in MLENERGY_V2.items():
            assert (table[HUB_ID[name]]["total_params"], table[HUB_ID[name]]["denoising_params"]) == (
                total, denoising)
    for name, (total, denoising) in MLENERGY_V2.items():
        assert round(counts[(name, "mlenergy")] / 1e9, 1) == total, name
        assert round(counts[(name, "unet")] / 1e9, 1) == denoising, name
    # Kandinsky 2.2's published total counts the CLIP image tower: without it the sum is 3.0B.
    assert round((counts[(K22, "mlenergy")] - counts[(K22, "prior_image_encoder")]) / 1e9, 1) == 3.0


# --- FLOPs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [K22, K3])
def test_unet_flops_sanity_value(unet_counts: dict[str, tuple[flops.OpCount, float]], model: str) -> None:
    counted, _ = unet_counts[model]
    assert counted.flops == pytest.approx(UNET_TFLOP[model][1] * 1e12, rel=1e-4)


@pytest.mark.parametrize("model", [K22, K3])
def test_unet_flops_match_an_analytic_estimate(unet_counts: dict[str, tuple[flops.OpCount, float]],
                                               model: str) -> None:
    counted, estimate = unet_counts[model]
    assert counted.flops == pytest.approx(estimate, rel=1e-6)  # they agree to the FLOP


def test_kandinsky3_unet_barely_depends_on_the_prompt_length(specs: dict[str, zoo.ModelSpec]) -> None:
    """All 128 encoder states (the tokenizer's padding) would add 2.3% to the U-Net's 33-token cost."""
    spec = specs[K3]
    module = zoo.build_component(spec, spec.denoiser, "meta", torch.float16)
    fam = families.family_of(spec)
    longest = dataclasses.replace(spec, components=tuple(
        dataclasses.replace(c, text_tokens=128) if c.stage == "denoise" else c for c in spec.components))
    call = fam.denoiser_call(longest, 1024, False, 1)
    full = flops.count_call(call.prepare(module, 1, "meta", torch.float16))
    assert full.flops / (UNET_TFLOP[K3][1] * 1e12) == pytest.approx(1.0232, abs=1e-3)


def test_kandinsky22_image_tower_and_prior_costs() -> None:
    """The prior stage as counted: the CLIP towers match open_clip's profile (ViT-bigG-14: 967.5 image,
    97.86 text GFLOPs), the prior ~2 N per token over its 81-token sequence."""
    spec = zoo.load_spec(K22)
    got = {}
    for call in families.calls(spec, 512, True, 1):
        if call.stage != "text":
            continue
        module = zoo.build_component(spec, spec.component(call.component), "meta", torch.float16)
        got[call.component] = (call, flops.count_call(call.prepare(module, call.call_batch, "meta",
                                                                   torch.float16)).flops)
    text, prior, image = (got[n] for n in ("prior_text_encoder", "prior_prior", "prior_image_encoder"))
    assert (text[0].call_batch, text[0].calls) == (1, 2)  # prompt and "" (the prior's CFG)
    assert (prior[0].call_batch, prior[0].calls, prior[0].per) == (2, 25, "image")
    assert (image[0].call_batch, image[0].calls) == (1, 1)  # one zero image per pipeline call
    assert text[1] == pytest.approx(97.86e9, rel=2e-3)
    assert image[1] == pytest.approx(967.5e9, rel=1e-3)
    assert prior[1] == pytest.approx(2 * 2 * PUBLISHED[(K22, "prior_prior")] * 81, rel=0.02)


# --- the tiny models through the pipeline -------------------------------------------------------------



@pytest.mark.parametrize("cfg", [False, True])
@pytest.mark.parametrize("tiny", sorted(TINY.values()))
def test_tiny_measurement_makes_the_counted_calls(tiny: str, cfg: bool) -> None:
    """What the measured text stage and pipeline call run is what ``calls`` counts: the same components,
    as many calls, at the same batch; the denoiser gets the inputs ``denoiser_inputs`` counts."""
    torch.manual_seed(0)
    spec = zoo.load_spec(tiny)
    res, batch, steps = TINY_RES[tiny], 2, 2
    work = measure.Workload(spec, "fp32", "cpu")
    seen: dict[str, list[tuple[int, dict[str, Any]]]] = {name: [] for name in work.modules}

    def hook(name: str):
        def grab(_: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            first = args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor))
            seen[name].append((first.shape[0], {"args": args, **kwargs}))
        return grab

    for name, module in work.modules.items():
        if name != spec.vae.name:
            module.register_forward_pre_hook(hook(name), with_kwargs=True)
    with torch.no_grad():
        work.denoise(grid.GridPoint(tiny, "fp32", res, steps, cfg, batch), work.encode(cfg, batch))
    for call in families.calls(spec, res, cfg, batch):
        if call.stage == "vae":
            continue
        expected = call.calls * (steps if call.per == "step" else 1)
        assert [b for b, _ in seen[call.component]] == [call.call_batch] * expected, call.component
    counted = families.denoiser_inputs(spec, res, spec.denoiser_call_batch(batch, cfg), "cpu", torch.float32)
    got = seen[spec.denoiser.name][0][1]
    sample = got["args"][0] if got["args"] else got["sample"]
    assert sample.shape == counted["sample"].shape
    if spec.family == "kandinsky3":
        assert got["encoder_hidden_states"].shape == counted["encoder_hidden_states"].shape
        assert got["encoder_attention_mask"].shape == counted["encoder_attention_mask"].shape
    else:
        image = got["added_cond_kwargs"]["image_embeds"]
        assert image.shape == counted["added_cond_kwargs"]["image_embeds"].shape


def test_tiny_text_stage_gives_the_pipeline_arguments() -> None:
    spec = zoo.load_spec("tiny-kandinsky22")
    modules = zoo.build_components(spec, "cpu", torch.float32, stages=("text",))
    with torch.no_grad():
        embeds = families.encode_prompts(spec, modules, 2, "cpu")
    assert {k: tuple(v.shape) for k, v in embeds.items()} == {
        "image_embeds": (2, 32), "negative_image_embeds": (2, 32)}
    assert families.encode_negative_prompts(spec, modules, 2, "cpu") == {}
    kwargs = families.pipeline_call_kwargs(spec, embeds, {}, True)
    assert kwargs["guidance_scale"] == 4.0 and set(kwargs) == {"image_embeds", "negative_image_embeds",
                                                               "guidance_scale"}
    assert families.pipeline_call_kwargs(spec, embeds, None, False)["guidance_scale"] == 1.0

    spec = zoo.load_spec("tiny-kandinsky3")
    modules = zoo.build_components(spec, "cpu", torch.float32, stages=("text",))
    with torch.no_grad():
        embeds = families.encode_prompts(spec, modules, 2, "cpu")
    assert {k: tuple(v.shape) for k, v in embeds.items()} == {"prompt_embeds": (2, 9, 16),
                                                             "attention_mask": (2, 9)}
    assert embeds["attention_mask"].sum().item() == 2 * 8  # an 8-token prompt, then one padding token
    assert torch.all(embeds["prompt_embeds"][:, -1] == 0)  # padding states are zeroed (cut_context)
    assert families.encode_negative_prompts(spec, modules, 2, "cpu") == {}
    assert families.pipeline_call_kwargs(spec, embeds, {}, True)["guidance_scale"] == 3.0


def test_resolutions_off_the_pipelines_grid_are_refused() -> None:
    with pytest.raises(zoo.ZooError, match=r"resolution 1000 is not a multiple of 64 px"):
        families.calls(zoo.load_spec(K3), 1000, True, 1)
    with pytest.raises(zoo.ZooError, match=r"resolution 520 is not a multiple of 64 px"):
        families.calls(zoo.load_spec(K22), 520, True, 1)
    with pytest.raises(zoo.ZooError, match=r"resolution 32 is not a multiple of 64 px"):
        families.vae_latents(zoo.load_spec("tiny-kandinsky3"), 32, 1, "cpu", torch.float32)


# --- consistency checks on load ------------------------------------------------------------------


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((zoo.MODELS_DIR / f"{name}.yaml").read_text())


@pytest.mark.parametrize(
    ("model", "path", "value", "needle"),
    [
        (K22, ["unet", "config", "encoder_hid_dim"], 1024,
         r"prior_prior\.config\.embedding_dim is 1280, but unet\.config\.encoder_hid_dim is 1024"),
        (K22, ["prior_text_encoder", "config", "hidden_size"], 1024,
         r"prior_text_encoder hidden width is 1024, but prior_prior\.config\.embedding_dim is 1280"),
        (K22, ["prior_image_encoder", "config", "projection_dim"], 1024,
         r"prior_image_encoder\.config\.projection_dim is 1024, but unet\.config\.encoder_hid_dim is 1280"),
        (K22, ["prior_text_encoder", "seq_len"], 64,
         r"prior_text_encoder\.seq_len is 64, but prior_prior\.config\.num_embeddings is 77"),
        (K22, ["movq", "config", "latent_channels"], 16,
         r"'unet' predicts 8 latent channels, but movq\.config\.latent_channels is 16"),
        (K3, ["text_encoder", "config", "d_model"], 2048,
         r"text_encoder width \(d_model\) is 2048, but unet\.config\.encoder_hid_dim is 4096"),
        (K3, ["unet", "text_tokens"], 200,
         r"unet\.text_tokens is 200, but text_encoder\.seq_len is 128"),
        (K3, ["movq", "config", "latent_channels"], 16,
         r"'unet' predicts 4 latent channels, but movq\.config\.latent_channels is 16"),
    ],
)
def test_mismatched_files_fail_on_load(tmp_path: Path, model: str, path: list[str], value: int,
                                       needle: str) -> None:
    raw = _raw(model)
    node = raw["components"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    out = tmp_path / "broken-kandinsky.yaml"
    out.write_text(yaml.safe_dump(raw))
    with pytest.raises(zoo.ZooError, match=needle):
        zoo.load_spec(out)


@pytest.mark.parametrize("model", [K22, K3])
def test_a_latent_stride_the_movq_does_not_have_fails_on_load(tmp_path: Path, model: str) -> None:
    raw = _raw(model)
    raw["latent_stride"] = 16
    out = tmp_path / "broken-kandinsky.yaml"
    out.write_text(yaml.safe_dump(raw))
    with pytest.raises(zoo.ZooError, match=r"latent_stride is 16.*movq\.config\.block_out_channels"):
        zoo.load_spec(out)
