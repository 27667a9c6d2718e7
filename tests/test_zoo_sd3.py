"""SD3 Medium and SD 3.5 Medium (MMDiT-X): published sizes, FLOPs, the CPU path, load checks."""

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

#: Published parameter counts: ``num_parameters()`` of the released pipelines' components.
#: - sd3-medium: NVIDIA AITune's inspect guide (docs, "Output example for
#:   stable-diffusion-3-medium-diffusers"): text_encoder 123,650,304, text_encoder_2 694,659,840,
#:   text_encoder_3 4,762,310,656, transformer 2,028,328,000 and the VAE decoder 49,545,475
#:   (checked below); the whole 16-channel VAE is 83,819,683 as for SD 3.5 (same config).
#: - sd35-medium: a public flow_grpo training script that loads the stabilityai/
#:   stable-diffusion-3.5-medium snapshot b940f670 and notes each component's count: vae
#:   83,819,683, text_encoder 123,650,304, text_encoder_2 694,659,840, text_encoder_3
#:   4,762,310,656, transformer 2,243,171,520; the transformer count is also quoted by an
#:   FP8/FP4 study of the same checkpoint ("真实 checkpoint 有 2,243,171,520 个参数").
PUBLISHED: dict[tuple[str, str], int] = {
    ("sd3-medium", "text_encoder"): 123_650_304,  # CLIP ViT-L/14 with projection
    ("sd3-medium", "text_encoder_2"): 694_659_840,  # OpenCLIP ViT-bigG/14 with projection
    ("sd3-medium", "text_encoder_3"): 4_762_310_656,  # T5-v1.1-XXL encoder
    ("sd3-medium", "transformer"): 2_028_328_000,  # MMDiT, 24 layers
    ("sd3-medium", "vae"): 83_819_683,  # 16-channel SD3 VAE
    ("sd35-medium", "text_encoder"): 123_650_304,
    ("sd35-medium", "text_encoder_2"): 694_659_840,
    ("sd35-medium", "text_encoder_3"): 4_762_310_656,
    ("sd35-medium", "transformer"): 2_243_171_520,  # MMDiT-X, 24 layers, 13 with dual attention
    ("sd35-medium", "vae"): 83_819_683,
}
MODELS = ["sd3-medium", "sd35-medium"]
SD3_VAE_DECODER = 49_545_475  # AITune's "decoder" row for SD3 Medium

#: ML.ENERGY's published sizes, billions, as in their files (pinned here; compared with the
#: files themselves where the public data is present).
#: v2 models.json: total_params = every pipeline component (three text encoders, MMDiT, VAE);
#: denoising_params = the MMDiT. v3 text-to-image.json total_params_billions and model_info
#: total_parameters_billion = the denoiser only.
MLENERGY_V2 = {"sd3-medium": {"total_params": 7.7, "denoising_params": 2.0}}
MLENERGY_V3 = {"sd35-medium": 2.5}
#: The published sources as shipped (resources/public/<source>/, the upstream layout).
PUBLIC_DATA = Path(__file__).resolve().parents[1] / "resources" / "public"
V2_IDS = {"sd3-medium": "stabilityai/stable-diffusion-3-medium-diffusers"}
V3_IDS = {"sd35-medium": "stabilityai/stable-diffusion-3.5-medium"}

#: Denoiser TFLOP of one batch-1 forward at 1024 px (77 + 256 text tokens), counted on meta.
SANITY_TFLOP = {"sd3-medium": 8.904, "sd35-medium": 11.250}
RES = 1024


def _persistent_buffers(module: torch.nn.Module) -> int:
    """Entries of buffers saved in the checkpoint (SD3's positional-embedding table)."""
    keys = set(module.state_dict())
    return sum(b.numel() for name, b in module.named_buffers() if name in keys)


@pytest.fixture(scope="module")
def counted() -> dict[str, Any]:
    """Each component built once on meta (fp16): parameters, stored buffers, decoder size,
    and the denoiser's ops of one batch-1 forward at 1024 px."""
    params: dict[tuple[str, str], int] = {}
    buffers: dict[tuple[str, str], int] = {}
    decoder: dict[str, int] = {}
    ops: dict[str, tuple[flops.OpCount, pd.DataFrame]] = {}
    seen: dict[str, tuple[int, int, int]] = {}  # the two share text encoders and VAE: count once
    for name in MODELS:
        spec = zoo.load_spec(name)
        for comp in spec.components:
            key = json.dumps([comp.class_path, comp.config], sort_keys=True)
            if key in seen and comp.stage != "denoise":
                params[(name, comp.name)], buffers[(name, comp.name)], dec = seen[key]
                if comp.stage == "vae":
                    decoder[name] = dec
                continue
            module = zoo.build_component(spec, comp, "meta", torch.float16)
            assert all(p.is_meta for p in module.parameters()), "counting must not allocate"
            params[(name, comp.name)] = zoo.count_parameters(module)
            buffers[(name, comp.name)] = _persistent_buffers(module)
            if comp.stage == "vae":
                decoder[name] = sum(p.numel() for p in module.decoder.parameters())
            seen[key] = (params[(name, comp.name)], buffers[(name, comp.name)], decoder.get(name, 0))
            if comp.stage == "denoise":
                call = families.calls(spec, RES, False, 1)
                (den,) = [c for c in call if c.stage == "denoise"]
                ops[name] = flops.count_ops(den.prepare(module, 1, "meta", torch.float16))
            del module
    return {"params": params, "buffers": buffers, "decoder": decoder, "ops": ops}


# --- parameter counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "component"), sorted(PUBLISHED))
def test_parameter_counts_match_published(counted: dict[str, Any], model: str, component: str) -> None:
    n, published = counted["params"][(model, component)], PUBLISHED[(model, component)]
    assert n == pytest.approx(published, rel=1e-3), f"{model}.{component}: {n:,} vs {published:,}"
    assert n == published  # the configs are the released ones: exact, not only close


def test_every_component_is_published() -> None:
    for name in MODELS:
        assert {c.name for c in zoo.load_spec(name).components} == {c for m, c in PUBLISHED if m == name}


def test_sd3_vae_decoder_matches_published(counted: dict[str, Any]) -> None:
    assert counted["decoder"]["sd3-medium"] == SD3_VAE_DECODER
    assert counted["decoder"]["sd35-medium"] == SD3_VAE_DECODER


def test_mlenergy_v2_sizes(counted: dict[str, Any]) -> None:
    """v2's total is the whole pipeline (text encoders + MMDiT + VAE): 7.693B -> 7.7."""
    p = counted["params"]
    total = sum(n for (m, _), n in p.items() if m == "sd3-medium")
    assert round(total / 1e9, 1) == MLENERGY_V2["sd3-medium"]["total_params"]
    assert round(p[("sd3-medium", "transformer")] / 1e9, 1) == MLENERGY_V2["sd3-medium"]["denoising_params"]


def test_mlenergy_v3_size_counts_the_stored_position_table(counted: dict[str, Any]) -> None:
    """v3's 2.5B (denoiser only, = the model card's "2.5B MMDiT-X") counts the checkpoint's tensors.

    SD 3.5 Medium stores a 384 x 384 x 1536 positional-embedding table (diffusers keeps it as a
    persistent buffer, not a parameter): 2,243,171,520 parameters + 226,492,416 table entries =
    2.470B -> 2.5. The parameters alone would round to 2.2. (SD3 Medium's 2.0 in v2 is the
    parameters alone: with its 192 x 192 table it would be 2.085B -> 2.1.)
    """
    key = ("sd35-medium", "transformer")
    params, table = counted["params"][key], counted["buffers"][key]
    assert table == 384 * 384 * 1536
    assert round((params + table) / 1e9, 1) == MLENERGY_V3["sd35-medium"]
    assert round(params / 1e9, 1) == 2.2
    assert counted["buffers"][("sd3-medium", "transformer")] == 192 * 192 * 1536


def test_pinned_sizes_are_mlenergys() -> None:
    v2 = json.loads((PUBLIC_DATA / "mlenergy-v2/text-to-image/models.json").read_text())
    for name, sizes in MLENERGY_V2.items():
        entry = v2[V2_IDS[name]]
        assert {k: entry[k] for k in sizes} == sizes
        assert entry["resolution"] == "1024x1024"
    v3 = json.loads((PUBLIC_DATA / "mlenergy-v3/text-to-image.json").read_text())
    for name, size in MLENERGY_V3.items():
        rows = [r for r in v3["configurations"] if r["model_id"] == V3_IDS[name]]
        assert rows and {r["total_params_billions"] for r in rows} == {size}
        assert {(r["image_height"], r["image_width"], r["inference_steps"], r["weight_precision"])
                for r in rows} == {(1024, 1024, 28, "bfloat16")}
        info = json.loads((PUBLIC_DATA / f"mlenergy-v3/model_info/{V3_IDS[name]}.json").read_text())
        assert info["total_parameters_billion"] == size and info["weight_precision"] == "bfloat16"


# --- how the benchmarks ran them ----------------------------------------------------------------


@pytest.mark.parametrize(("model", "precision"), [("sd3-medium", "fp16"), ("sd35-medium", "bf16")])
def test_run_settings_are_the_benchmarks(model: str, precision: str) -> None:
    spec = zoo.load_spec(model)
    assert spec.default_precision == precision
    assert spec.cfg and spec.cfg_mode == "batch" and spec.guidance_scale == 7.0  # pipeline default
    assert [c.seq_len for c in spec.text_encoders] == [77, 77, 256]  # CLIP, CLIP, T5 max_sequence_length
    assert spec.denoiser.text_tokens == 77 + 256
    spec.check_resolution(RES)
    assert spec.resolution_multiple == 16


def test_mmdit_x_config() -> None:
    cfg = zoo.load_spec("sd35-medium").denoiser.config
    assert list(cfg["dual_attention_layers"]) == list(range(13)) and cfg["num_layers"] == 24
    assert cfg["qk_norm"] == "rms_norm" and cfg["pos_embed_max_size"] == 384
    assert zoo.load_spec("sd35-medium").max_resolution == 384 * 2 * 8
    sd3 = zoo.load_spec("sd3-medium").denoiser.config
    assert "dual_attention_layers" not in sd3 and "qk_norm" not in sd3
    assert zoo.load_spec("sd3-medium").max_resolution == 192 * 2 * 8


# --- FLOPs --------------------------------------------------------------------------------------


def mmdit_flops(d: int, layers: int, img: int, txt: int, dual: int, ff_mult: int = 4) -> float:
    """Rough FLOPs of one MMDiT forward: the blocks' linear layers and attention only.

    Per block and token of each stream: q, k, v, out (4 d^2) and the MLP (2 ff_mult d^2) MACs;
    the last block's text stream only projects q, k, v. Joint attention: QK^T and AV over all
    tokens, 4 n^2 d FLOPs. A dual-attention block adds image-only attention (4 d^2 MACs per
    image token, 4 img^2 d FLOPs). Embedders, adaLN and the output layer are left out.
    """
    per_token = 2 * (4 + 2 * ff_mult) * d * d
    n = img + txt
    linear = layers * per_token * img + (layers - 1) * per_token * txt + 2 * 3 * d * d * txt
    attention = layers * 4 * n * n * d
    extra = dual * (2 * 4 * d * d * img + 4 * img * img * d)
    return linear + attention + extra


@pytest.mark.parametrize("model", MODELS)
def test_denoiser_flops_sanity_value(counted: dict[str, Any], model: str) -> None:
    total, table = counted["ops"][model]
    assert total.flops == pytest.approx(SANITY_TFLOP[model] * 1e12, rel=1e-3)
    cfg = zoo.load_spec(model).denoiser.config
    img = (RES // 8 // 2) ** 2
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    dual = len(cfg.get("dual_attention_layers", ()))
    estimate = mmdit_flops(d, cfg["num_layers"], img, 333, dual)
    assert total.flops == pytest.approx(estimate, rel=0.02)
    # One fused attention kernel per joint attention, and one more per dual-attention block.
    head = cfg["attention_head_dim"]
    assert int(table.loc[table["op"] == f"sdpa[d={head}]", "count"].sum()) == cfg["num_layers"] + dual


def test_dual_attention_costs_what_it_adds(counted: dict[str, Any]) -> None:
    """SD 3.5 Medium = SD3 Medium + 13 image-only attentions (+ RMS norms), per the estimate."""
    extra = counted["ops"]["sd35-medium"][0].flops - counted["ops"]["sd3-medium"][0].flops
    img = (RES // 16) ** 2
    assert extra == pytest.approx(13 * (8 * 1536**2 * img + 4 * img * img * 1536), rel=0.01)


# --- the tiny MMDiT-X on CPU --------------------------------------------------------------------

TINY = "tiny-sd35"


def test_tiny_has_dual_attention_blocks() -> None:
    spec = zoo.load_spec(TINY)
    assert spec.test_only
    module = zoo.build_component(spec, spec.denoiser, "cpu", torch.float32)
    dual = [i for i, block in enumerate(module.transformer_blocks) if block.attn2 is not None]
    assert dual == [0, 1] and len(module.transformer_blocks) == 3
    assert zoo.count_parameters(module) < 50_000


# --- consistency checks on load -----------------------------------------------------------------


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((zoo.MODELS_DIR / f"{name}.yaml").read_text())


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", [TINY, "sd35-medium", "sd3-medium"])
def test_text_width_mismatch_fails_on_load(tmp_path: Path, name: str) -> None:
    raw = _raw(name)
    raw["components"]["text_encoder_3"]["config"]["d_model"] *= 2
    with pytest.raises(zoo.ZooError, match=r"text_encoder_3 width.*transformer\.config\.joint_attention_dim"):
        zoo.load_spec(_write(tmp_path, raw))


def test_pooled_width_mismatch_fails_on_load(tmp_path: Path) -> None:
    raw = _raw(TINY)
    raw["components"]["text_encoder_2"]["config"]["projection_dim"] += 8
    with pytest.raises(zoo.ZooError, match=r"CLIP projections.*transformer\.config\.pooled_projection_dim"):
        zoo.load_spec(_write(tmp_path, raw))


def test_latent_channel_mismatch_fails_on_load(tmp_path: Path) -> None:
    raw = _raw("sd35-medium")
    raw["components"]["vae"]["config"]["latent_channels"] = 4
    with pytest.raises(zoo.ZooError, match=r"'transformer' predicts 16 .*vae\.config\.latent_channels is 4"):
        zoo.load_spec(_write(tmp_path, raw))
