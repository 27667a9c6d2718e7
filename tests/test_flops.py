"""Per-stage FLOPs, kernels and bytes counted on the meta device."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pandas as pd
import pytest
from tiny_support import assert_batch_three_derived, tiny_models

from diffusion_energy.counting import flops
from diffusion_energy.models import zoo

#: What each model is counted at here (one count per model, shared by the tests).
COUNTED: dict[str, tuple[tuple[int, ...], tuple[bool, ...]]] = {
    "sd15": ((256, 512, 1024), (False, True)),
    "sdxl": ((1024,), (False,)),
    "flux-dev": ((1024,), (False, True)),
    "sd35-large": ((1024,), (False, True)),
    "qwen-image": ((1024,), (False, True)),
}


@functools.cache
def counted(model: str) -> pd.DataFrame:
    resolutions, cfgs = COUNTED[model]
    return flops.count_model(zoo.load_spec(model), resolutions, cfgs, [1])


def row(model: str, component: str, resolution: int, cfg: bool = False) -> pd.Series:
    frame = counted(model)
    hit = frame[(frame["component"] == component) & (frame["resolution"] == resolution)
                & (frame["cfg"] == cfg) & (frame["batch"] == 1)]
    assert len(hit) == 1, f"{model}/{component}/{resolution}/{cfg}: {len(hit)} rows"
    return hit.iloc[0]


# Reference values fixed when the counting was first written (the project's design notes; no published
# figure): FLOPs of one batch-1 call, with attention, on the meta device. They pin the counting: a change
# in it shows here.
SANITY = [
    ("sd15", "unet", 512, 0.803e12),
    ("sd15", "unet", 1024, 4.674e12),
    ("sdxl", "unet", 1024, 6.761e12),
    ("flux-dev", "transformer", 1024, 74.4e12),  # with 512 text tokens
    ("sd35-large", "transformer", 1024, 31.1e12),  # with 77 + 256 text tokens
    ("qwen-image", "transformer", 1024, 68.7e12),  # with 32 text tokens
    ("sd15", "vae", 512, 2.51e12),  # decoder
    ("sd15", "vae", 1024, 10.47e12),
    ("sd15", "text_encoder", 512, 13.3e9),  # CLIP ViT-L text, per prompt
    ("flux-dev", "text_encoder_2", 1024, 4.84e12),  # T5-XXL encoder at 512 tokens
]


@pytest.mark.parametrize(("model", "component", "resolution", "expected"), SANITY,
                         ids=[f"{m}-{c}-{r}" for m, c, r, _ in SANITY])
def test_sanity_values(model: str, component: str, resolution: int, expected: float) -> None:
    r = row(model, component, resolution)
    assert r["call_batch"] == 1 and r["calls"] == 1
    assert r["flops"] == pytest.approx(expected, rel=0.01)


def test_sd15_unet_with_cfg_matches_the_h200_count_exactly() -> None:
    r = row("sd15", "unet", 512, cfg=True)
    assert r["call_batch"] == 2
    assert r["flops"] == 1_606_546_882_560


def test_rows_carry_parameter_counts_and_tokens() -> None:
    unet = row("sd15", "unet", 512)
    assert unet["params"] == 859_520_964 and unet["per"] == "step" and unet["tokens"] == 64 * 64
    flux = row("flux-dev", "transformer", 1024)
    assert flux["params"] == pytest.approx(11.90e9, rel=1e-3)
    assert flux["tokens"] == 64 * 64 + 512  # joint sequence: image tokens + text tokens
    assert row("qwen-image", "transformer", 1024)["params"] == pytest.approx(20.43e9, rel=1e-3)
    assert row("sd35-large", "transformer", 1024)["params"] == pytest.approx(8.057e9, rel=1e-3)
    assert row("qwen-image", "vae", 1024)["params"] == pytest.approx(0.127e9, rel=5e-3)
    assert row("qwen-image", "text_encoder", 1024)["params"] == pytest.approx(8.29e9, rel=1e-3)
    assert set(counted("sd15").columns) == set(flops.FLOPS_COLUMNS)
    assert (counted("sd15")["flops_analytic"] > 0).all()


# --- CFG -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "component"), [("sd15", "unet"), ("sd35-large", "transformer")])
def test_batch_cfg_doubles_the_denoiser_call_batch(model: str, component: str) -> None:
    res = COUNTED[model][0][-1]
    off, on = row(model, component, res, False), row(model, component, res, True)
    assert (off["call_batch"], off["calls"]) == (1, 1)
    assert (on["call_batch"], on["calls"]) == (2, 1)
    assert on["flops"] == 2 * off["flops"]
    assert on["kernels"] == pytest.approx(off["kernels"], rel=0.05)  # a batch is one launch per op


def test_sequential_cfg_makes_two_calls_per_step() -> None:
    off, on = row("qwen-image", "transformer", 1024, False), row("qwen-image", "transformer", 1024, True)
    assert (off["call_batch"], off["calls"]) == (1, 1)
    assert (on["call_batch"], on["calls"]) == (1, 2)
    assert on["flops"] == off["flops"]


def test_flux_is_run_without_cfg_by_default_and_true_cfg_is_sequential() -> None:
    spec = zoo.load_spec("flux-dev")
    assert spec.cfg is False and spec.cfg_mode == "sequential"
    on = row("flux-dev", "transformer", 1024, True)
    assert (on["call_batch"], on["calls"]) == (1, 2)


@pytest.mark.parametrize("model", ["sd15", "qwen-image"])
def test_cfg_encodes_the_negative_prompt_too(model: str) -> None:
    frame = counted(model)
    text = frame[frame["stage"] == "text"]
    per_image = (text["flops"] * text["calls"]).groupby([text["cfg"], text["resolution"]]).sum()
    res = COUNTED[model][0][-1]
    assert per_image[(True, res)] == 2 * per_image[(False, res)]


# --- per-image totals ----------------------------------------------------------------------------


def test_per_image_totals_add_up_stages_and_denoiser_evaluations() -> None:
    # SD 1.5's PNDM scheduler runs the U-Net 51 times for 50 steps (its PLMS warm-up repeats a timestep).
    totals = flops.per_image_totals(counted("sd15"), steps=50).set_index(["resolution", "cfg"])
    unet = 1_606_546_882_560
    vae = row("sd15", "vae", 512)["flops"]
    text = row("sd15", "text_encoder", 512)["flops"]
    assert totals.loc[(512, True), "flops"] == 51 * unet + vae + 2 * text
    assert totals.loc[(512, False), "flops"] == 51 * unet // 2 + vae + text
    assert set(totals.columns) >= {"model", "batch", "flops", "kernels", "bytes"}
    given = flops.per_image_totals(counted("sd15"), steps=50, evaluations=50).set_index(["resolution", "cfg"])
    assert given.loc[(512, True), "flops"] == 50 * unet + vae + 2 * text


def test_per_image_totals_scale_denoising_with_steps_and_calls() -> None:
    frame = counted("qwen-image")
    one, ten = flops.per_image_totals(frame, 1), flops.per_image_totals(frame, 10)
    step = row("qwen-image", "transformer", 1024, True)
    on = (one["cfg"] == True) & (one["resolution"] == 1024)  # noqa: E712 - pandas mask
    for column in ("flops", "kernels", "bytes"):
        grown = ten.loc[on, column].iloc[0] - one.loc[on, column].iloc[0]
        assert grown == 9 * 2 * step[column]  # 9 more steps, two transformer calls each


# --- kernels and bytes -----------------------------------------------------------------------------


def test_kernel_count_is_stable_across_resolutions() -> None:
    frame = counted("sd15")
    for component in ("unet", "vae", "text_encoder"):
        kernels = set(frame.loc[frame["component"] == component, "kernels"])
        assert len(kernels) == 1, f"{component}: {kernels}"
    unet = row("sd15", "unet", 512)["kernels"]
    # ~1,150 non-view ATen ops with unfused attention; SDPA fused and views excluded: ~760.
    assert 600 <= unet <= 1000


def test_fused_attention_keeps_bytes_small() -> None:
    """Unfused attention at 1024 px would write score matrices of ~4 GB each (hundreds of GB)."""
    unet = row("sd15", "unet", 1024)
    assert 1e9 < unet["bytes"] < 30e9
    small = row("sd15", "unet", 256)
    assert unet["bytes"] < 20 * small["bytes"]  # activations grow 16x; weights don't


def test_attention_is_one_kernel_per_call() -> None:
    spec = zoo.load_spec("sd15")
    frame, ops = flops.count_model_ops(spec, [512], [False], [1])
    unet_ops = ops[ops["component"] == "unet"]
    counts = unet_ops.groupby("op")["count"].sum()
    # 16 transformer blocks x (self + cross attention), named by head dimension (8 heads of 320/640/1280)
    assert counts.filter(like="sdpa").to_dict() == {"sdpa[d=40]": 10, "sdpa[d=80]": 10, "sdpa[d=160]": 12}
    assert "bmm.default" not in counts and "_softmax.default" not in counts
    unet = frame[frame["component"] == "unet"].iloc[0]
    assert int(counts.sum()) == unet["kernels"]
    assert int((unet_ops["flops"] * unet_ops["count"]).sum()) == unet["flops"]
    assert int((unet_ops["bytes"] * unet_ops["count"]).sum()) == unet["bytes"]


def test_bytes_depend_on_dtype_flops_do_not() -> None:
    spec = zoo.load_spec("tiny-sd")
    half = flops.count_model(spec, [32], [True], [1])
    full = flops.count_model(spec, [32], [True], [1], dtype=zoo.PRECISIONS["fp32"])
    assert full["flops"].tolist() == half["flops"].tolist()
    assert (full["bytes"] > half["bytes"]).all()
    # Kernels: the same ops, but for a few casts (the U-Net's fp32 time embedding -> fp16).
    extra = (half["kernels"] - full["kernels"]).tolist()
    assert all(0 <= k <= 4 for k in extra), extra


def test_bad_resolution_is_refused_before_counting() -> None:
    with pytest.raises(zoo.ZooError, match="multiple of 16"):
        flops.count_model(zoo.load_spec("flux-dev"), [1000], [False], [1])


# --- memory ----------------------------------------------------------------------------------------

_PEAK_SCRIPT = """
import json, resource, torch
from diffusion_energy.models import families
from diffusion_energy.counting import flops
from diffusion_energy.models import zoo
spec = zoo.load_spec("flux-dev")  # a 12B transformer: 24 GB in bf16 if it were real
module = zoo.build_component(spec, spec.denoiser, "meta", torch.bfloat16)
kwargs = families.denoiser_inputs(spec, 1024, 1, "meta", torch.bfloat16)
count = flops.count_call(lambda: module(**kwargs))
print(json.dumps({"flops": count.flops,
                  "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


@pytest.mark.slow
def test_counting_on_meta_allocates_no_real_memory() -> None:
    proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["flops"] > 70e12
    assert result["peak_gib"] < 2.0, f"peak RSS {result['peak_gib']:.2f} GiB"


@pytest.mark.parametrize("model", ["sd15", "tiny-sdxl", "tiny-sd3", "tiny-flux", "tiny-qwen"])
def test_per_op_flops_sum_to_flop_counter_mode(model: str) -> None:
    """The per-op formulas reproduce torch's FlopCounterMode exactly, for every stage."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from diffusion_energy.models import families

    spec = zoo.load_spec(model)
    res = 512 if model == "sd15" else 32
    for comp in spec.components:
        module = zoo.build_component(spec, comp, "meta", torch.float16)
        if comp.stage == "text":
            kw = families.text_inputs(spec, comp, 1, "meta")
            call = lambda m=module, kw=kw: m(**kw)  # noqa: E731
        elif comp.stage == "denoise":
            kw = families.denoiser_inputs(spec, res, 2, "meta", torch.float16)
            call = lambda m=module, kw=kw: m(**kw)  # noqa: E731
        else:
            z = families.vae_latents(spec, res, 1, "meta", torch.float16)
            call = lambda m=module, z=z: m.decode(z)  # noqa: E731
        with FlopCounterMode(display=False) as reference, torch.no_grad():
            call()
        assert flops.count_call(call).flops == reference.get_total_flops() > 0, comp.name


# --- repeated blocks are traced once and replayed -------------------------------------------------

REPLAY_CASES = [(m, [(64, False, 1), (64, True, 3)]) for m in (
    "tiny-sd", "tiny-sdxl", "tiny-sd3", "tiny-sd35", "tiny-flux", "tiny-qwen", "tiny-pixart", "tiny-sana",
    "tiny-hunyuan", "tiny-kandinsky22", "tiny-kandinsky3")] + [
    ("sdxl", [(512, True, 1)]), ("flux-dev", [(256, False, 2)]), ("kandinsky-2.2", [(512, True, 1)])] + [
    # Video: the default frames, and 17 (5 latent: the causal VAEs' steady per-frame decode, and
    # HunyuanVideo's temporal tiles) at a derived batch.
    (m, [(32, False, 1), (32, True, 3, 17)])
    for m in ("tiny-wan", "tiny-cogvideox", "tiny-cogvideox15", "tiny-hunyuanvideo")]


@pytest.mark.parametrize(("model", "shapes"), REPLAY_CASES, ids=[c[0] for c in REPLAY_CASES])
def test_replayed_blocks_count_what_a_full_trace_counts(model: str, shapes: list) -> None:
    """Same FLOPs, kernels and bytes per component, and the same per-op table, op for op."""
    spec = zoo.load_spec(model)
    fast, fast_ops = flops.count_shapes(spec, shapes, replay_blocks=True)
    full, full_ops = flops.count_shapes(spec, shapes, replay_blocks=False)
    cols = ["resolution", "frames", "cfg", "batch", "component", "flops", "kernels", "bytes"]
    pd.testing.assert_frame_equal(fast[cols], full[cols])
    key = list(flops.OPS_COLUMNS)
    pd.testing.assert_frame_equal(fast_ops.sort_values(key).reset_index(drop=True),
                                  full_ops.sort_values(key).reset_index(drop=True))


def test_blocks_that_differ_only_in_a_plain_attribute_are_not_confused() -> None:
    """Two convolutions with equal weights' shapes but another stride launch other kernels."""
    import torch

    conv = torch.nn.Conv2d
    net = torch.nn.Sequential(conv(4, 4, 3, padding=1), conv(4, 4, 3, stride=2, padding=1),
                              conv(4, 4, 3, padding=1))
    blocks = flops.RepeatedBlocks(net.to("meta"))
    x = torch.empty(1, 4, 16, 16, device="meta")
    replayed = flops.trace_ops(lambda: net(x), blocks)
    assert replayed == flops.trace_ops(lambda: net(x))


@pytest.mark.parametrize("model", tiny_models())
def test_batches_are_derived_exactly_for_every_family(model: str) -> None:
    """Every family's tiny model: batch 3 derived from batches 1 and 2 equals a direct count."""
    assert_batch_three_derived(zoo.load_spec(model))
