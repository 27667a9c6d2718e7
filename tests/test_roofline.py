"""The roofline energy model: time from a per-op table, constant recovery, held-out error vs FLOPs only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import simulate
import yaml
from analysis_support import REAL_MODELS, REAL_RESOLUTIONS, counted_flops, energy_table, settings

from diffusion_energy.counting import flops
from diffusion_energy.counting.features import Point, point_features
from diffusion_energy.laws import analysis, crossval, roofline
from diffusion_energy.laws.analysis_io import _clean
from diffusion_energy.laws.targets import TARGETS
from diffusion_energy.models import zoo
from diffusion_energy.sources import dataset, gpu_datasheets

KEYS = {"model": "toy", "resolution": 64, "frames": 1, "cfg": True, "batch": 1}


def _toy_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A hand-made FLOPs table and per-op table (``flops.OPS_COLUMNS``) for one toy point."""
    calls = pd.DataFrame(
        [
            {**KEYS, "stage": "text", "component": "te", "calls": 2, "per": "image"},
            {**KEYS, "stage": "denoise", "component": "unet", "calls": 1, "per": "step"},
            {**KEYS, "stage": "vae", "component": "vae", "calls": 1, "per": "image"},
        ]
    )
    ops = pd.DataFrame(
        [
            {
                **KEYS,
                "stage": "text",
                "component": "te",
                "op": "mm.default",
                "flops": 1e9,
                "bytes": 1e6,
                "count": 3,
            },
            {
                **KEYS,
                "stage": "denoise",
                "component": "unet",
                "op": "convolution.default",
                "flops": 4e12,
                "bytes": 1e9,
                "count": 10,
            },
            {
                **KEYS,
                "stage": "denoise",
                "component": "unet",
                "op": "add.Tensor",
                "flops": 0,
                "bytes": 1e8,
                "count": 20,
            },
            {
                **KEYS,
                "stage": "denoise",
                "component": "unet",
                "op": "sdpa[d=64]",
                "flops": 1e12,
                "bytes": 1e7,
                "count": 2,
            },
            {
                **KEYS,
                "stage": "vae",
                "component": "vae",
                "op": "convolution.default",
                "flops": 2e12,
                "bytes": 2e9,
                "count": 5,
            },
        ]
    )[flops.OPS_COLUMNS]
    return calls, ops


def _toy_points(precisions: tuple[str, ...] = ("fp16",)) -> pd.DataFrame:
    return pd.DataFrame(
        [{"point_id": i, **KEYS, "steps": 20, "denoiser_evaluations": 20, "precision": p}
         for i, p in enumerate(precisions)]
    )


def test_time_sums_the_slowest_roof_of_every_op() -> None:
    calls, ops = _toy_tables()
    inputs = roofline.inputs_from_ops(_toy_points(("fp16", "fp32")), ops, calls)
    assert inputs.granularity == "op"
    t = inputs.time_s(np.array([0, 1]), compute=1e14, compute_fp32=1e13, bandwidth=1e12, launch=1e-5)
    # fp16 -- text: 3 ops x 2 calls x max(1e-5, 1e-6, 1e-5); denoise per step: 10 x 0.04 + 20 x 1e-4 +
    # 2 x 0.01, times 20 steps; vae: 5 x max(0.02, 0.002).
    assert t[0] == pytest.approx(6e-5 + 20 * (0.4 + 2e-3 + 0.02) + 0.1)
    # fp32: a tenth of the compute rate and twice the bytes.
    assert t[1] == pytest.approx(6 * 1e-4 + 20 * (10 * 0.4 + 20 * 2e-4 + 2 * 0.1) + 5 * 0.2)
    per_image = 6e9 + 20 * (40e12 + 2e12) + 10e12
    np.testing.assert_allclose(inputs.total_flops(np.array([0, 1])), [per_image, per_image])
    assert inputs.total_bytes(np.array([1]))[0] == pytest.approx(2 * inputs.total_bytes(np.array([0]))[0])


def test_fp32_kernels_run_on_the_units_pytorch_puts_them_on() -> None:
    """fp32 under PyTorch's defaults: matrix multiplies at the fp32 (non-tensor) peak, convolutions at the
    TF32 peak, fused attention at a third of it (3xTF32); exponentials as in half precision; bytes twice."""
    calls, ops = _toy_tables()
    inputs = roofline.inputs_from_ops(_toy_points(("fp16", "fp32")), ops, calls)
    ids = np.array([0, 1])
    half, fp32, tf32 = 1e15, 6.7e13, 4e14
    scales = {"peak_flop_s": np.array([half, fp32]), "peak_half_flop_s": np.array([half, half]),
              "peak_fp32_flop_s": np.array([fp32, fp32]), "peak_tf32_flop_s": np.array([tf32, tf32]),
              "peak_bandwidth_byte_s": np.array([1e12, 1e12])}
    model = roofline._TimeModel(inputs, ids, scales, np.array([0, 0]))
    per_class = inputs.class_flops(ids)
    assert per_class[0] == pytest.approx(per_class[1])
    matmul, attention, conv, _ = per_class[1]
    np.testing.assert_allclose(model.ideal_compute_s(), [per_class[0].sum() / half,
                               matmul / fp32 + attention / (tf32 / roofline.FP32_ATTENTION_TF32_PASSES)
                               + conv / tf32])
    on_0, on_1 = model.pos == 0, model.pos == 1
    assert model.scores_s[on_0].sum() > 0
    assert model.scores_s[on_0].sum() == pytest.approx(model.scores_s[on_1].sum())
    assert model.bytes_s[on_1].sum() == pytest.approx(2 * model.bytes_s[on_0].sum())
    # The same fitted efficiencies in fp32 as in half precision (none fitted on fp32 points); an fp32
    # point is never faster than its datasheet.
    eff = roofline._efficiency_vector({"matmul": 0.5, "attention": 0.4, "conv": 0.3, "memory": 0.9})
    assert eff.tolist() == [0.5, 0.4, 0.3, 0.5, 0.5, 0.4, 0.3, 0.5]
    t = model(np.ones(len(eff)) * 2.0, 1.0, np.array([0.0]), roofline.SOFTMAX_MAX)
    assert t[1] >= model.ideal_compute_s()[1]


def test_attention_time_counts_its_exponentials_by_head_dimension() -> None:
    """Equal attention FLOPs with heads of 32 or 128: four times the scores (one exponential each)."""
    calls, ops = _toy_tables()
    small = ops.assign(op=ops["op"].replace({"sdpa[d=64]": "sdpa[d=32]"}))
    large = ops.assign(op=ops["op"].replace({"sdpa[d=64]": "sdpa[d=128]"}))
    pts = _toy_points(("fp16",))
    a, b = (roofline.inputs_from_ops(pts, o, calls) for o in (small, large))
    names = pd.Series(["sdpa[d=64]", "sdpa", "mm.default"])
    assert roofline.op_classes(names, np.array([1, 1, 1])).tolist() == [1, 1, 0]
    attn = a.op_class == 1
    assert a.scores()[attn] == pytest.approx(1e12 / (4 * 32))
    assert b.scores()[attn] == pytest.approx(1e12 / (4 * 128))
    assert not a.scores()[~attn].any()
    scales = {"peak_flop_s": np.array([1e15]), "peak_fp32_flop_s": np.array([1e14]),
              "peak_bandwidth_byte_s": np.array([1e12])}
    eff = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
    times = [roofline._TimeModel(x, np.array([0]), scales, np.array([0]))(eff, 1.0, np.array([1e-9]), s)
             for x in (a, b) for s in (np.inf, 1e-3)]
    # No exponential runs faster than SOFTMAX_MAX of the peak, even where the fit asks for more (inf):
    # 20 steps x 2 kernels x the smaller heads' extra scores at that rate.
    floor = 20 * 2 * (1e12 / 128 - 1e12 / 512) / (roofline.SOFTMAX_MAX * 1e15)
    assert times[0] - times[2] == pytest.approx(floor)
    # At 1e-3 of the peak (slower than the floor) the smaller heads' extra time is exactly that
    extra = 20 * 2 * (1e12 / 128 - 1e12 / 512) / (1e-3 * 1e15)
    assert times[1] - times[3] == pytest.approx(extra)


def test_power_above_the_limit_caps_energy_where_timed_and_stretches_time_where_not() -> None:
    """A GPU never draws more than its power limit. For a kind whose times were fitted the energy is
    capped at limit x time; for a kind known by its datasheet only the time is what is uncertain, so the
    work takes as long as the limit allows: t' = work energy / (limit - static power)."""
    calls, ops = _toy_tables()
    inputs = roofline.inputs_from_ops(_toy_points(("fp16",)), ops, calls)
    sheet = gpu_datasheets.Datasheet.from_config({"half_tflop_s": 1000, "fp32_tflop_s": 100,
                                                  "bandwidth_gb_s": 3000, "power_limit_w": 700})
    c = roofline.RooflineConstants(
        gpu="all", efficiency={"matmul": 0.5, "memory": 0.8}, launch_s={"s": 1e-5}, time_factor={"s": 1.0},
        pi_static=0.2, pi_flop=3.0, pi_byte=0.0, pi_source={}, idle_power_w=float("nan"), reference={},
        source_reference="s", sigma_log=0.1, dof=10, n_points=20, precisions=("fp16",), sources=("s",),
        gpu_factor={"timed": 1.0})
    fit = roofline.RooflineFit("image", "fitted_static", "op", False, (c,))
    frames = {g: gpu_datasheets.with_datasheets(_toy_points(("fp16",)).assign(gpu=g, source="s"), {g: sheet})
              for g in ("timed", "sheet_only")}
    t = fit.time_s(frames["timed"], inputs)[0]
    ideal = inputs.total_flops(np.array([0]))[0] / 1e15
    work, static = 700 * 3.0 * ideal, 700 * 0.2
    assert work + static * t > 700 * t, "the toy point's power must exceed the limit"
    timed = fit.predict(frames["timed"], inputs, 0.9).energy_j[0]
    stretched = fit.predict(frames["sheet_only"], inputs, 0.9).energy_j[0]
    assert timed == pytest.approx(700 * t)
    assert stretched == pytest.approx(700 * work / (700 - static)) and stretched > work + static * t


def _fast_constants(launch_s: float, **kw: object) -> roofline.RooflineConstants:
    """Constants that ask for more than any datasheet allows: every efficiency at 1, a measured kind
    three times faster than that, and a steep trend that makes a slow kind faster still."""
    return roofline.RooflineConstants(
        gpu="all", efficiency={"matmul": 1.0, "attention": 1.0, "conv": 1.0, "softmax": roofline.SOFTMAX_MAX,
                               "memory": 1.0}, launch_s={"s": launch_s}, time_factor={"s": 1.0},
        pi_static=0.2, pi_flop=0.5, pi_byte=0.1, pi_source={}, idle_power_w=float("nan"), reference={},
        source_reference="s", sigma_log=0.1, dof=10, n_points=20, precisions=("fp16",), sources=("s",),
        gpu_factor={"measured": 0.3}, peak_exponent=0.8, **kw)


def _on_kinds(sheets: dict[str, tuple[float, float, float]]) -> dict[str, pd.DataFrame]:
    out = {}
    for g, (tflops, gbs, watts) in sheets.items():
        sheet = gpu_datasheets.Datasheet.from_config({"half_tflop_s": tflops, "fp32_tflop_s": tflops / 10,
                                                      "bandwidth_gb_s": gbs, "power_limit_w": watts})
        out[g] = gpu_datasheets.with_datasheets(_toy_points(("fp16",)).assign(gpu=g, source="s"), {g: sheet})
    return out


def test_no_kernel_runs_faster_than_its_gpus_datasheet() -> None:
    """Whatever the fitted efficiencies, kind factors and trend say, every kernel takes at least its FLOPs
    at the datasheet's peak (its exponentials at SOFTMAX_MAX of it) and its bytes at the datasheet's
    bandwidth: on a measured kind fitted as fast, and on a slow kind known by its datasheet only (an
    A4000-like 76 TFLOP/s card, which the trend across kinds would otherwise make faster than its peak)."""
    calls, ops = _toy_tables()
    inputs = roofline.inputs_from_ops(_toy_points(("fp16",)), ops, calls)
    fit = roofline.RooflineFit("image", "fitted_static", "op", False, (_fast_constants(1e-9),))
    for g, frame in _on_kinds({"measured": (1000, 3350, 700), "slow": (76, 448, 140)}).items():
        peak, bandwidth = float(frame["peak_flop_s"].iloc[0]), float(frame["peak_bandwidth_byte_s"].iloc[0])
        at_sheet = inputs.time_s(np.array([0]), compute=peak, compute_fp32=peak / 10, bandwidth=bandwidth,
                                 launch=1e-9)[0]
        exps = inputs.per_point(inputs.scores() * inputs.executions, np.array([0]))[0]
        floor = at_sheet + exps / (roofline.SOFTMAX_MAX * peak)
        assert fit.time_s(frame, inputs)[0] == pytest.approx(floor), g


def test_the_launch_cost_is_the_hosts_whatever_the_gpus_peak() -> None:
    """A launch-bound point takes as long on a fast card as on a slow one: the launch cost belongs to the
    host and the software stack, and neither a kind's factor nor the trend in its peak scales it."""
    calls, ops = _toy_tables()
    inputs = roofline.inputs_from_ops(_toy_points(("fp16",)), ops, calls)
    fit = roofline.RooflineFit("image", "fitted_static", "op", False, (_fast_constants(10.0),))
    kernels = inputs.per_point(inputs.kernels * inputs.executions, np.array([0]))[0]
    times = {g: fit.time_s(f, inputs)[0] for g, f in _on_kinds(
        {"measured": (1000, 3350, 700), "fast": (2250, 8000, 1000), "slow": (76, 448, 140)}).items()}
    assert all(t == pytest.approx(10.0 * kernels) for t in times.values()), times


def test_fitted_rates_stay_inside_the_datasheet(roofline_data: tuple) -> None:
    """Every fitted efficiency is a share of the datasheet (here the nominal units of a kind without one)
    of at most 1, and the exponentials' rate at most SOFTMAX_MAX of the peak."""
    points, inputs, _ = roofline_data
    fit = roofline.fit_roofline(points, inputs, TARGETS["image"])
    eff = fit.constants[0].efficiency
    assert all(v <= 1.0 + 1e-9 for k, v in eff.items() if k != "softmax"), eff
    assert eff.get("softmax", 0.0) <= roofline.SOFTMAX_MAX + 1e-12


def test_a_point_without_ops_is_refused_and_the_stage_fallback_is_used() -> None:
    calls, ops = _toy_tables()
    points = pd.concat([_toy_points(), _toy_points().assign(point_id=1, resolution=128)], ignore_index=True)
    with pytest.raises(ValueError, match="no per-op counts"):
        roofline.inputs_from_ops(points, ops, calls)
    stage_points = points.assign(
        **{
            f"{s}_{w}": v
            for s in ("text", "denoise", "vae")
            for w, v in (("flops", 1e12), ("bytes", 1e9), ("kernels", 100.0))
        }
    )
    inputs = roofline.build_inputs(stage_points, ops, calls)
    assert inputs.granularity == "stage"
    t = inputs.time_s(np.array([0]), 1e14, 1e13, 1e12, 1e-3)
    assert t[0] == pytest.approx(3 * max(1e12 / 1e14, 1e9 / 1e12, 100 * 1e-3))


def test_op_table_of_a_real_architecture_adds_up_to_the_energy_table() -> None:
    spec = zoo.load_spec("tiny-sd")
    table, ops = flops.count_model_ops(spec, [32, 64], [True], [1])
    pts = [
        Point("h100", "tiny-sd", "unet", p, r, s, True)
        for p in ("fp16", "fp32")
        for r in (32, 64)
        for s in (2, 7)
    ]
    feats = point_features(pts, table).assign(point_id=lambda f: np.arange(len(f)))
    inputs = roofline.inputs_from_ops(feats, ops, table)
    ids = feats["point_id"].to_numpy()
    np.testing.assert_allclose(inputs.total_flops(ids), feats["flops"].astype(float), rtol=1e-12)
    np.testing.assert_allclose(inputs.total_bytes(ids), feats["bytes"].astype(float), rtol=1e-12)
    kernels = inputs.per_point(inputs.kernels * inputs.executions, ids)
    np.testing.assert_allclose(kernels, feats["kernels"].astype(float), rtol=1e-12)


def test_op_inputs_count_every_denoiser_evaluation_of_a_pndm_model(tmp_path: Path) -> None:
    # A model given as a file (not in the zoo by name) with SD 1.5's PNDM scheduler: 7 steps run the
    # denoiser 8 times, in the energy table's FLOPs and in the roofline's inputs alike.
    raw = yaml.safe_load((zoo.MODELS_DIR / "tiny-sd.yaml").read_text())
    raw["name"] = "tiny-sd-pndm"
    raw["scheduler"] = yaml.safe_load((zoo.MODELS_DIR / "sd15.yaml").read_text())["scheduler"]
    path = tmp_path / "tiny-sd-pndm.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = zoo.load_spec(path)
    assert spec.denoiser_evaluations(7) == 8
    table, ops = flops.count_model_ops(spec, [32], [True], [1])
    feats = point_features([Point("h100", spec.name, "unet", "fp16", 32, 7, True, 1,
                                  spec.denoiser_evaluations(7))], table).assign(point_id=0)
    per_step = table.loc[table["stage"] == "denoise", "flops"].sum()
    assert feats["denoise_flops"].iloc[0] == 8 * per_step
    assert feats["denoise_flops_per_step"].iloc[0] == pytest.approx(8 / 7 * per_step)
    inputs = roofline.build_inputs(feats, ops, table)
    assert inputs.granularity == "op"
    np.testing.assert_allclose(inputs.total_flops(np.array([0])), feats["flops"], rtol=1e-12)
    with pytest.raises(dataset.EvaluationsError, match="model 'tiny-sd-pndm' at 7 steps"):
        roofline.build_inputs(feats.drop(columns="denoiser_evaluations"), ops, table)


@pytest.fixture(scope="module")
def roofline_data(request: pytest.FixtureRequest) -> tuple[pd.DataFrame, roofline.RooflineInputs, dict]:
    """Six real architectures (real per-op counts), energies and times from known roofline constants."""
    table, ops = counted_flops(getattr(request.config, "cache", None), REAL_MODELS, REAL_RESOLUTIONS)
    truth = {"h100": simulate.RooflineTruth()}
    points = simulate.grid(
        table, [10, 25, 50], gpus=["h100"], fp32_models=["sd15", "sdxl"], fp32_resolutions=[512]
    )
    measurements = simulate.simulate_roofline(points, table, ops, truth, np.random.default_rng(9))
    # The simulated H100's datasheet: the nominal units of a fit per kind (every simulated rate inside it).
    sheet = gpu_datasheets.Datasheet.from_config({"half_tflop_s": 1000, "fp32_tflop_s": 100,
                                                  "bandwidth_gb_s": 2000, "power_limit_w": 700})
    pts, inputs = analysis.prepare(energy_table(measurements, table), table, ops, {"h100": sheet})
    return pts, inputs, truth


#: Three GPU kinds by datasheet (dense half-precision peak TFLOP/s, GB/s, W), for the trend across kinds.
TREND_SHEETS = {"old": (300, 1500, 400), "mid": (1000, 3300, 700), "new": (2250, 8000, 1000)}


@pytest.fixture(scope="module")
def kinds_data(request: pytest.FixtureRequest) -> tuple[pd.DataFrame, roofline.RooflineInputs]:
    """Real architectures on three kinds whose times follow one trend in the peak: a kind runs at
    efficiency x peak / (peak / 1 PFLOP/s)^0.4, so a kind twice as fast on paper is 2^0.6 faster; every
    rate within its datasheet, and the launch cost the host's (the same on every kind)."""
    table, ops = counted_flops(getattr(request.config, "cache", None), REAL_MODELS, REAL_RESOLUTIONS)
    truth = {}
    for gpu, (tflops, gbs, watts) in TREND_SHEETS.items():
        slow = (tflops / 1000) ** 0.4
        truth[gpu] = simulate.RooflineTruth(
            compute_flop_per_s=0.3 * tflops * 1e12 / slow, compute_fp32_flop_per_s=0.3 * tflops * 1e11 / slow,
            compute_tf32_flop_per_s=0.3 * tflops * 0.5e12 / slow,
            bandwidth_byte_per_s=0.5 * gbs * 1e9 / slow, launch_s=8e-6, idle_power_w=0.0,
            exponential_per_s=tflops * 1e12 / 256 / slow,
            static_power_w=0.3 * watts, energy_per_flop_j=0.6e-12 * watts / tflops * 1e3 / 700)
    points = simulate.grid(table, [10, 25, 50], gpus=list(TREND_SHEETS))
    measurements = simulate.simulate_roofline(points, table, ops, truth, np.random.default_rng(4))
    sheets = {g: gpu_datasheets.Datasheet.from_config({"half_tflop_s": t, "fp32_tflop_s": t / 10,
                                                        "bandwidth_gb_s": b, "power_limit_w": w})
              for g, (t, b, w) in TREND_SHEETS.items()}
    pts, inputs = analysis.prepare(energy_table(measurements, table), table, ops, sheets)
    return pts, inputs


def test_the_trend_across_kinds_is_recovered_and_predicts_a_kind_left_out(kinds_data: tuple) -> None:
    points, inputs = kinds_data
    full = roofline.fit_roofline(points, inputs, TARGETS["image"], by_gpu=False, gpu_factors=True)
    c = full.constants[0]
    assert c.peak_exponent == pytest.approx(0.4, abs=0.05)
    assert all(f == pytest.approx(1.0, abs=0.05) for f in c.gpu_factor.values()), c.gpu_factor
    # Each end of the range left out is read from the trend of the other two kinds.
    for gone in ("old", "new"):
        train, test = points[points["gpu"] != gone], points[points["gpu"] == gone]
        fit = roofline.fit_roofline(train, inputs, TARGETS["image"], by_gpu=False, gpu_factors=True)
        ratio = test["time_s"].to_numpy(float) / fit.time_s(test, inputs)
        assert np.median(np.abs(np.log(ratio))) < 0.05, (gone, np.median(ratio))


def test_roofline_recovers_its_constants(roofline_data: tuple) -> None:
    points, inputs, truth = roofline_data
    assert inputs.granularity == "op"
    fit = roofline.fit_roofline(points, inputs, TARGETS["image"], "fitted_static")
    c, t = fit.for_gpu("h100"), truth["h100"]
    assert c.compute_flop_per_s == pytest.approx(t.compute_flop_per_s, rel=0.03)
    assert c.compute_fp32_flop_per_s == pytest.approx(t.compute_fp32_flop_per_s, rel=0.05)
    assert c.bandwidth_byte_per_s == pytest.approx(t.bandwidth_byte_per_s, rel=0.05)
    assert c.launch_default_s == pytest.approx(t.launch_s, rel=0.05)
    assert c.idle_power_w == pytest.approx(t.idle_power_w)
    assert c.static_power_w == pytest.approx(t.static_power_w, rel=0.15)
    assert c.energy_per_flop_j == pytest.approx(t.energy_per_flop_j, rel=0.1)
    assert c.sigma_log < 2 * t.sigma_log
    back = roofline.RooflineFit.from_dict(json.loads(json.dumps(_clean(fit.to_dict()))))
    np.testing.assert_allclose(
        back.predict(points, inputs, 0.9).energy_j, fit.predict(points, inputs, 0.9).energy_j
    )


def test_roofline_beats_the_flops_law_on_unseen_launch_bound_architectures(roofline_data: tuple) -> None:
    points, inputs, _ = roofline_data
    # Half precision only: the launch-bound tail of half-precision images is what this test is about.
    points = points[points["precision"].astype(str) != "fp32"]
    tables = analysis.run_crossval(points, inputs, settings())
    m = tables["lomo_metrics"].set_index(["target", "candidate", "gpu", "held_out"])
    roof = m.loc[("image", analysis.ROOFLINE, crossval.ALL, crossval.ALL)]
    base = m.loc[("image", "flops", crossval.ALL, crossval.ALL)]
    assert roof["median_ape"] < 0.03 and roof["p90_ape"] < 0.08
    assert roof["p90_ape"] < base["p90_ape"] / 3
    assert roof["spearman"] > 0.99
    # The launch-bound tail: small U-Net images, where energy per FLOP is highest.
    tail = tables["lomo_predictions"]
    tail = tail[(tail["target"] == "image") & (tail["model"] == "sd15") & (tail["resolution"] == 256)]
    by = tail.groupby("candidate")["ape"].max()
    assert by[analysis.ROOFLINE] < by["flops"]


def test_dynamic_energy_has_no_idle_term(roofline_data: tuple) -> None:
    points, inputs, _ = roofline_data
    fit = roofline.fit_roofline(points, inputs, TARGETS["image_dynamic"], "fitted_static")
    pred = fit.predict(points, inputs, 0.9).energy_j
    measured = TARGETS["image_dynamic"].energy_j(points)
    assert np.median(np.abs(pred / measured - 1)) < 0.05
