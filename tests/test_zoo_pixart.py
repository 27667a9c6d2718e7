"""PixArt-Σ (the pixart family): published sizes, FLOPs, the CPU path, load checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from diffusion_energy.counting import flops
from diffusion_energy.models import families, zoo

MODEL = "pixart-sigma"
TINY = "tiny-pixart"

#: Published parameter counts (``num_parameters()`` of the released components):
#: - transformer: 610,856,096, what public code that loads the released PixArt-Σ transformer reports
#:   (one pins it beside the T5's 4,762,310,656); ML.ENERGY v3 and the model card say 0.6B. With
#:   micro-conditions (not in Σ) the same config would count 611,349,152.
#: - text_encoder: the T5-v1.1-XXL encoder of PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers, the
#:   same 4,762,310,656 as SD3's and FLUX's T5 (tests/test_zoo.py).
#: - vae: the SDXL VAE, 83,653,863 (tests/test_zoo.py's SDXL figure).
PUBLISHED: dict[tuple[str, str], int] = {
    (MODEL, "text_encoder"): 4_762_310_656,
    (MODEL, "transformer"): 610_856_096,
    (MODEL, "vae"): 83_653_863,
}

#: ML.ENERGY v3: text-to-image.json total_params_billions and model_info total_parameters_billion,
#: both the denoiser only (0.611B -> 0.6); bf16, 1024 px, 20 steps.
MLENERGY_V3 = 0.6
V3_ID = "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"
#: The published sources as shipped (resources/public/<source>/, the upstream layout).
PUBLIC_DATA = Path(__file__).resolve().parents[1] / "resources" / "public"

#: Transformer TFLOP of one batch-1 forward at 1024 px (4096 image tokens, 300 text tokens), on meta.
SANITY_TFLOP = 6.6336
RES = 1024


@pytest.fixture(scope="module")
def counted() -> dict[str, Any]:
    """Each component built once on meta (fp16): parameters, and the transformer's ops of one
    batch-1 forward at 1024 px."""
    spec = zoo.load_spec(MODEL)
    params: dict[str, int] = {}
    ops: tuple[flops.OpCount, pd.DataFrame] | None = None
    for comp in spec.components:
        module = zoo.build_component(spec, comp, "meta", torch.float16)
        assert all(p.is_meta for p in module.parameters()), "counting must not allocate"
        params[comp.name] = zoo.count_parameters(module)
        if comp.stage == "denoise":
            (den,) = [c for c in families.calls(spec, RES, False, 1) if c.stage == "denoise"]
            ops = flops.count_ops(den.prepare(module, 1, "meta", torch.float16))
        del module
    return {"params": params, "ops": ops}


# --- parameter counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "component"), sorted(PUBLISHED))
def test_parameter_counts_match_published(counted: dict[str, Any], model: str, component: str) -> None:
    n, published = counted["params"][component], PUBLISHED[(model, component)]
    assert n == pytest.approx(published, rel=1e-3), f"{model}.{component}: {n:,} vs {published:,}"
    assert n == published


def test_every_component_is_published() -> None:
    assert {c.name for c in zoo.load_spec(MODEL).components} == {c for _, c in PUBLISHED}


def test_mlenergy_v3_size_is_the_transformer(counted: dict[str, Any]) -> None:
    """v3's "total" is the denoiser only: 0.611B -> 0.6 (the whole pipeline would be 5.46B)."""
    assert round(counted["params"]["transformer"] / 1e9, 1) == MLENERGY_V3
    assert round(sum(counted["params"].values()) / 1e9, 1) == 5.5


def test_pinned_size_and_settings_are_mlenergys() -> None:
    v3 = json.loads((PUBLIC_DATA / "mlenergy-v3/text-to-image.json").read_text())
    rows = [r for r in v3["configurations"] if r["model_id"] == V3_ID]
    assert rows and {r["total_params_billions"] for r in rows} == {MLENERGY_V3}
    assert {(r["image_height"], r["image_width"], r["inference_steps"], r["weight_precision"])
            for r in rows} == {(1024, 1024, 20, "bfloat16")}
    info = json.loads((PUBLIC_DATA / f"mlenergy-v3/model_info/{V3_ID}.json").read_text())
    assert info["total_parameters_billion"] == MLENERGY_V3 and info["weight_precision"] == "bfloat16"


# --- how the benchmark ran it -------------------------------------------------------------------


def test_run_settings_are_the_benchmarks() -> None:
    spec = zoo.load_spec(MODEL)
    assert spec.default_precision == "bf16" and spec.pipeline == "diffusers.PixArtSigmaPipeline"
    assert spec.cfg and spec.cfg_mode == "batch" and spec.guidance_scale == 4.5  # pipeline default
    assert [c.seq_len for c in spec.text_encoders] == [300]  # max_sequence_length default
    assert spec.denoiser.text_tokens == 300
    assert spec.resolution_multiple == 16 and spec.max_resolution is None
    cfg = spec.denoiser.config
    assert cfg["out_channels"] == 2 * cfg["in_channels"]  # learned sigma
    assert cfg["use_additional_conditions"] is False and cfg["sample_size"] * 8 == RES
    spec.check_resolution(RES)


def test_pipeline_call_switches_cfg_as_the_pipeline_runs_it() -> None:
    spec = zoo.load_spec(TINY)
    modules = zoo.build_components(spec, "cpu", torch.float32, stages=("text",))
    with torch.no_grad():
        pos = families.encode_prompts(spec, modules, 2, "cpu")
        neg = families.encode_negative_prompts(spec, modules, 2, "cpu")
    assert set(pos) == {"prompt_embeds", "prompt_attention_mask"}
    assert pos["prompt_embeds"].shape == (2, 8, 32) and pos["prompt_attention_mask"].shape == (2, 8)
    on = families.pipeline_call_kwargs(spec, pos, neg, True)
    assert on["guidance_scale"] == 4.5 and on["negative_prompt"] is None
    assert on["use_resolution_binning"] is False
    assert on["negative_prompt_embeds"].shape == on["prompt_embeds"].shape
    assert on["negative_prompt_attention_mask"].shape == on["prompt_attention_mask"].shape
    off = families.pipeline_call_kwargs(spec, pos, None, False)
    assert off["guidance_scale"] == 1.0 and "negative_prompt_embeds" not in off


def test_calls_of_an_image() -> None:
    """T5 runs per prompt set (twice with CFG), the transformer at the doubled batch, its sequence
    the image tokens (text is cross-attended)."""
    spec = zoo.load_spec(MODEL)
    calls = {c.component: c for c in families.calls(spec, RES, True, 2)}
    assert (calls["text_encoder"].calls, calls["text_encoder"].tokens) == (2, 300)
    den = calls["transformer"]
    assert (den.call_batch, den.calls, den.per, den.tokens) == (4, 1, "step", 64 * 64)
    assert families.denoiser_tokens(spec, RES) == (64 * 64, 300)
    assert calls["vae"].call_batch == 2


# --- FLOPs --------------------------------------------------------------------------------------


def pixart_flops(d: int, layers: int, img: int, txt: int, ff_mult: int = 4) -> float:
    """Rough FLOPs of one PixArt forward: the blocks' linear layers and attention only.

    Per block and image token: self-attention q, k, v, out (4 d^2 MACs), cross-attention q, out
    (2 d^2) and the MLP (2 ff_mult d^2); per text token the cross-attention k, v (2 d^2).
    Attention: QK^T and AV, 4 img^2 d (self) and 4 img txt d (cross). Embedders, adaLN and the
    output layer are left out.
    """
    linear = 2 * (6 + 2 * ff_mult) * d * d * img + 2 * 2 * d * d * txt
    attention = 4 * img * img * d + 4 * img * txt * d
    return layers * (linear + attention)


def test_transformer_flops_sanity_value(counted: dict[str, Any]) -> None:
    total, table = counted["ops"]
    assert total.flops == pytest.approx(SANITY_TFLOP * 1e12, rel=1e-3)
    cfg = zoo.load_spec(MODEL).denoiser.config
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    estimate = pixart_flops(d, cfg["num_layers"], (RES // 16) ** 2, 300)
    assert total.flops == pytest.approx(estimate, rel=0.01)
    # two fused attention kernels per block: self and cross
    head = cfg["attention_head_dim"]
    assert int(table.loc[table["op"] == f"sdpa[d={head}]", "count"].sum()) == 2 * cfg["num_layers"]


# --- the tiny model on CPU ----------------------------------------------------------------------



def test_tiny_is_tiny_and_runs_each_stage() -> None:
    torch.manual_seed(0)
    spec = zoo.load_spec(TINY)
    assert spec.test_only
    modules = zoo.build_components(spec, "cpu", torch.float32)
    assert zoo.count_parameters(modules["transformer"]) < 50_000
    res = 32
    with torch.no_grad():
        kwargs = families.denoiser_inputs(spec, res, 2, "cpu", torch.float32)
        out = modules["transformer"](**kwargs).sample
        assert out.shape == (2, 8, res // 2, res // 2)  # noise + learned variance
        assert torch.isfinite(out).all()
        image = modules["vae"].decode(families.vae_latents(spec, res, 1, "cpu", torch.float32)).sample
        assert image.shape == (1, 3, res, res)


# --- consistency checks on load -----------------------------------------------------------------


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((zoo.MODELS_DIR / f"{name}.yaml").read_text())


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", [TINY, MODEL])
def test_text_width_mismatch_fails_on_load(tmp_path: Path, name: str) -> None:
    raw = _raw(name)
    raw["components"]["text_encoder"]["config"]["d_model"] *= 2
    with pytest.raises(zoo.ZooError,
                       match=r"text_encoder\.config\.d_model.*transformer\.config\.caption_channels"):
        zoo.load_spec(_write(tmp_path, raw))


def test_cross_attention_width_mismatch_fails_on_load(tmp_path: Path) -> None:
    raw = _raw(MODEL)
    raw["components"]["transformer"]["config"]["cross_attention_dim"] = 1024
    with pytest.raises(zoo.ZooError, match=r"num_attention_heads x attention_head_dim is 1152.*"
                                           r"transformer\.config\.cross_attention_dim is 1024"):
        zoo.load_spec(_write(tmp_path, raw))


@pytest.mark.parametrize("name", [TINY, MODEL])
def test_latent_channel_mismatch_fails_on_load(tmp_path: Path, name: str) -> None:
    raw = _raw(name)
    raw["components"]["vae"]["config"]["latent_channels"] = 16
    with pytest.raises(zoo.ZooError, match=r"'transformer' predicts 8 .*vae\.config\.latent_channels is 16"):
        zoo.load_spec(_write(tmp_path, raw))
