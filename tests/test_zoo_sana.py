"""SANA 1.5 in the zoo: published sizes, FLOPs sanity, the tiny model end to end, load checks."""

from __future__ import annotations

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

MODELS = ["sana15-1.6b", "sana15-4.8b"]
TINY = "tiny-sana"
RES = 1024

#: Parameters of each component as built on meta (fp16) from the published configs.
#: - text_encoder: Gemma-2-2B(-it) without its (tied) LM head, 2,614,341,888: the count quoted for
#:   google/gemma-2-2b(-it) (e.g. GGUF model lists' "params", tensor counts of the safetensors).
#: - transformer: no exact count is published; the figures are those of the repos'
#:   transformer/config.json (diffusers convert_sana_to_diffusers.py model_kwargs
#:   "SanaMS1.5_1600M_P1_D20" / "SanaMS1.5_4800M_P1_D60"). Published names: 1.6B and 4.8B
#:   (NVlabs/Sana registers SanaMS_4800M_P1_D60 as "60 layers, 4800M": 2240 wide, like the 1.6B);
#:   a test below derives both counts analytically from the config.
#: - vae: DC-AE f32c32 (dc-ae-f32c32-sana-1.1-diffusers), 312,250,275: the value count of the
#:   Sana 1600M repos' vae/ safetensors as walked tensor by tensor in public code.
PUBLISHED: dict[tuple[str, str], int] = {
    ("sana15-1.6b", "text_encoder"): 2_614_341_888,
    ("sana15-1.6b", "transformer"): 1_604_641_952,
    ("sana15-1.6b", "vae"): 312_250_275,
    ("sana15-4.8b", "text_encoder"): 2_614_341_888,
    ("sana15-4.8b", "transformer"): 4_721_825_952,
    ("sana15-4.8b", "vae"): 312_250_275,
}

#: ML.ENERGY v3: text-to-image.json total_params_billions and model_info
#: total_parameters_billion (the denoiser only; e.g. FLUX.1-dev's 12 is its transformer).
MLENERGY_V3 = {"sana15-1.6b": 1.6, "sana15-4.8b": 4.8}
V3_IDS = {"sana15-1.6b": "Efficient-Large-Model/SANA1.5_1.6B_1024px_diffusers",
          "sana15-4.8b": "Efficient-Large-Model/SANA1.5_4.8B_1024px_diffusers"}
#: The published sources as shipped (resources/public/<source>/, the upstream layout).
PUBLIC_DATA = Path(__file__).resolve().parents[1] / "resources" / "public"

#: Denoiser TFLOP of one batch-1 forward at 1024 px (32 x 32 latent tokens, 300 text tokens).
SANITY_TFLOP = {"sana15-1.6b": 2.9667, "sana15-4.8b": 8.8870}


@pytest.fixture(scope="module")
def counted() -> dict[str, Any]:
    """Each component built once on meta (fp16): parameters; the denoiser's ops at 1024 px, batch 1."""
    params: dict[tuple[str, str], int] = {}
    denoiser: dict[str, flops.OpCount] = {}
    shared: dict[str, int] = {}  # the two share text encoder and VAE: count those once
    for name in MODELS:
        spec = zoo.load_spec(name)
        for comp in spec.components:
            key = json.dumps([comp.class_path, comp.config], sort_keys=True)
            if key in shared:
                params[(name, comp.name)] = shared[key]
                continue
            module = zoo.build_component(spec, comp, "meta", torch.float16)
            assert all(p.is_meta for p in module.parameters()), "counting must not allocate"
            params[(name, comp.name)] = shared[key] = zoo.count_parameters(module)
            if comp.stage == "denoise":
                kwargs = families.denoiser_inputs(spec, RES, 1, "meta", torch.float16)
                denoiser[name] = flops.count_call(lambda m=module, kw=kwargs: m(**kw))
            del module
    return {"params": params, "denoiser": denoiser}


# --- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "component"), sorted(PUBLISHED))
def test_parameter_counts_match_published(counted: dict[str, Any], model: str, component: str) -> None:
    n, published = counted["params"][(model, component)], PUBLISHED[(model, component)]
    assert n == pytest.approx(published, rel=1e-3), f"{model}.{component}: {n:,} vs {published:,}"


def sana_transformer_parameters(cfg: dict[str, Any]) -> int:
    """SanaTransformer2DModel's parameters from its config, term by term (patch size 1, qk norm)."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    cross = cfg["num_cross_attention_heads"] * cfg["cross_attention_head_dim"]
    kv_in, hidden = cfg["cross_attention_dim"], int(cfg["mlp_ratio"] * d)
    c_in, c_out, cap = cfg["in_channels"], cfg["out_channels"], cfg["caption_channels"]
    attn1 = 3 * d * d + (d * d + d) + 2 * d  # q, k, v (no bias), out (bias), q/k RMS norms
    attn2 = (d * cross + cross) + 2 * (kv_in * cross + cross) + (cross * d + d) + 2 * cross
    ffn = (d * 2 * hidden + 2 * hidden) + (2 * hidden * 9 + 2 * hidden) + hidden * d  # GLUMBConv
    block = attn1 + attn2 + ffn + 6 * d  # + scale_shift_table
    fixed = ((c_in * d + d)  # patch embedding (1 x 1 conv), no positional table
             + (256 * d + d) + (d * d + d) + (d * 6 * d + 6 * d)  # timestep MLP, AdaLN-single
             + (cap * d + d) + (d * d + d) + d  # caption projection (2 linears), caption RMS norm
             + 2 * d + (d * c_out + c_out))  # final scale_shift_table, proj_out
    return cfg["num_layers"] * block + fixed


@pytest.mark.parametrize("model", MODELS)
def test_transformer_count_is_its_config_term_by_term(counted: dict[str, Any], model: str) -> None:
    cfg = dict(zoo.load_spec(model).denoiser.config)
    assert counted["params"][(model, "transformer")] == sana_transformer_parameters(cfg)


@pytest.mark.parametrize("model", MODELS)
def test_denoiser_matches_mlenergy_v3(counted: dict[str, Any], model: str) -> None:
    """v3 publishes the denoiser alone. 1.6B is its count rounded; 4.8B is the nominal size of
    the 60-layer model (Sana's "4800M"), whose count is 4.72B: within 0.1B, not within rounding."""
    billions = counted["params"][(model, "transformer")] / 1e9
    published = MLENERGY_V3[model]
    if model == "sana15-1.6b":
        assert round(billions, 1) == published
    else:
        assert abs(billions - published) < 0.1 and round(billions, 2) == 4.72


def test_pinned_sizes_are_those_of_the_public_files() -> None:
    v3 = json.loads((PUBLIC_DATA / "mlenergy-v3/text-to-image.json").read_text())
    for name, model_id in V3_IDS.items():
        rows = [r for r in v3["configurations"] if r["model_id"] == model_id]
        assert rows and {r["total_params_billions"] for r in rows} == {MLENERGY_V3[name]}
        # how they ran it: 1024 px, 20 steps, bf16, as this zoo's defaults
        assert {(r["image_height"], r["image_width"], r["inference_steps"], r["weight_precision"])
                for r in rows} == {(1024, 1024, 20, "bfloat16")}
        info = json.loads((PUBLIC_DATA / f"mlenergy-v3/model_info/{model_id}.json").read_text())
        assert info["total_parameters_billion"] == MLENERGY_V3[name]


# --- how the pipeline runs them -------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_pipeline_settings(model: str) -> None:
    spec = zoo.load_spec(model)
    assert (spec.cfg, spec.cfg_mode, spec.guidance_scale) == (True, "batch", 4.5)
    assert spec.default_precision == "bf16"
    assert spec.latent_stride == 32 and spec.resolution_multiple == 32 and spec.max_resolution is None
    te = spec.component("text_encoder")
    assert te.seq_len == 208 + 300 - 2 and spec.denoiser.text_tokens == 300
    assert families.denoiser_tokens(spec, RES) == (32 * 32, 300)
    zoo.build_scheduler(spec)


def test_cfg_adds_a_shorter_negative_encoder_call_and_doubles_the_denoiser_batch() -> None:
    spec = zoo.load_spec("sana15-1.6b")
    off = families.calls(spec, RES, False, 1)
    on = families.calls(spec, RES, True, 1)
    assert [(c.stage, c.tokens, c.call_batch, c.calls) for c in off] == [
        ("text", 506, 1, 1), ("denoise", 1024, 1, 1), ("vae", 1024, 1, 1)]
    assert [(c.stage, c.tokens, c.call_batch, c.calls) for c in on] == [
        ("text", 506, 1, 1), ("text", 300, 1, 1), ("denoise", 1024, 2, 1), ("vae", 1024, 1, 1)]


# --- FLOPs ---------------------------------------------------------------------------------------


def sana_transformer_flops(cfg: dict[str, Any], side: int, n_text: int) -> int:
    """FLOPs (2 x MACs) of one batch-1 forward: matmuls and convolutions, by hand."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    h, hd = cfg["num_attention_heads"], cfg["attention_head_dim"]
    cross = cfg["num_cross_attention_heads"] * cfg["cross_attention_head_dim"]
    hidden = int(cfg["mlp_ratio"] * d)
    n = side * side
    per_token = (4 * d * d  # attn1 q, k, v, out
                 + 2 * h * (hd + 1) * hd  # linear attention: V^T K (with the ones row), then x Q
                 + d * cross + cross * d  # attn2 q, out
                 + 2 * n_text * cross  # attn2 scores and weighted sum
                 + d * 2 * hidden + 9 * 2 * hidden + hidden * d)  # GLUMBConv
    per_layer = n * per_token + n_text * 2 * d * cross  # + attn2 k, v of the text tokens
    fixed = (n * cfg["in_channels"] * d + n * d * cfg["out_channels"]
             + n_text * (cfg["caption_channels"] * d + d * d))
    return 2 * (cfg["num_layers"] * per_layer + fixed)


@pytest.mark.parametrize("model", MODELS)
def test_denoiser_flops_sanity(counted: dict[str, Any], model: str) -> None:
    spec = zoo.load_spec(model)
    count = counted["denoiser"][model]
    assert count.flops / 1e12 == pytest.approx(SANITY_TFLOP[model], rel=1e-4)
    analytic = sana_transformer_flops(dict(spec.denoiser.config), RES // 32, 300)
    assert count.flops == pytest.approx(analytic, rel=0.01)
    # the 4.8B is the 1.6B's blocks three times over, at the same width
    if model == "sana15-4.8b":
        per_block = (SANITY_TFLOP["sana15-4.8b"] - SANITY_TFLOP["sana15-1.6b"]) / 40
        assert SANITY_TFLOP["sana15-1.6b"] == pytest.approx(20 * per_block, rel=0.01)


# --- the tiny model on the CPU ----------------------------------------------------------------------



def test_the_pipeline_runs_the_shapes_the_family_counts() -> None:
    """What SanaPipeline actually calls (hooks on the measured workload) = ``families.calls``."""
    torch.manual_seed(0)
    spec = zoo.load_spec(TINY)
    work = measure.Workload(spec, "fp32", "cpu")
    seen: dict[str, list[tuple[int, ...]]] = {"text_encoder": [], "transformer": []}

    def hook(name: str):  # noqa: ANN202
        def record(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            first = args[0] if args else kwargs.get("input_ids", kwargs.get("hidden_states"))
            seen[name].append(tuple(first.shape))
            if name == "transformer":
                seen[name].append(tuple(kwargs["encoder_hidden_states"].shape))
        return record

    for name in seen:
        work.modules[name].register_forward_pre_hook(hook(name), with_kwargs=True)
    with torch.inference_mode():
        for cfg in (False, True):
            for v in seen.values():
                v.clear()
            work.denoise(grid.GridPoint(TINY, "fp32", 32, 1, cfg, 1), work.encode(cfg, 1))
            calls = families.calls(spec, 32, cfg, 1)
            text = [c.tokens for c in calls if c.stage == "text"]
            den = next(c for c in calls if c.stage == "denoise")
            assert seen["text_encoder"] == [(1, t) for t in text]
            assert seen["transformer"] == [(den.call_batch, 4, 16, 16), (den.call_batch, 8, 32)]
    assert [c.tokens for c in families.calls(spec, 32, True, 1) if c.stage == "text"] == [12, 8]


def test_prompt_embeddings_keep_the_first_and_last_tokens() -> None:
    spec = zoo.load_spec(TINY)
    modules = zoo.build_components(spec, "cpu", torch.float32, stages=("text",))
    torch.manual_seed(0)
    with torch.no_grad():
        pos = families.encode_prompts(spec, modules, 2, "cpu")
        neg = families.encode_negative_prompts(spec, modules, 2, "cpu")
        torch.manual_seed(0)
        ids = families.text_inputs(spec, spec.component("text_encoder"), 2, "cpu")["input_ids"]
        full = modules["text_encoder"](input_ids=ids)[0]
    assert pos["prompt_embeds"].shape == neg["prompt_embeds"].shape == (2, 8, 32)
    assert torch.equal(pos["prompt_embeds"], torch.cat([full[:, :1], full[:, -7:]], dim=1))
    assert pos["prompt_attention_mask"].shape == (2, 8)


# --- bad architecture files --------------------------------------------------------------------------


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "broken-sana.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _raw() -> dict[str, Any]:
    return yaml.safe_load((zoo.MODELS_DIR / f"{TINY}.yaml").read_text())


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda r: r["components"]["transformer"]["config"].update(caption_channels=24),
         ["text_encoder hidden width is 32", "transformer.config.caption_channels is 24"]),
        (lambda r: r["components"]["vae"]["config"].update(latent_channels=8),
         ["predicts 4 latent channels", "vae.config.latent_channels is 8"]),
        (lambda r: r["components"]["text_encoder"].update(seq_len=8),
         ["text_encoder.seq_len is 8", "family_options.instruction_tokens 6",
          "family_options.max_sequence_length 8"]),
        (lambda r: r["components"]["transformer"].update(text_tokens=12),
         ["transformer.text_tokens is 12", "family_options.max_sequence_length is 8"]),
    ],
    ids=["text-width", "latent-channels", "prompt-length", "text-tokens"],
)
def test_inconsistent_files_fail_on_load_naming_both_keys(
    tmp_path: Path, edit: Any, needles: list[str]
) -> None:
    raw = _raw()
    edit(raw)
    with pytest.raises(zoo.ZooError) as err:
        zoo.load_spec(_write(tmp_path, raw))
    for needle in needles:
        assert needle in str(err.value)
