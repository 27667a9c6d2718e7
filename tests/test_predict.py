"""`diffusion-energy predict` end to end, from a laws JSON fitted on simulated data in tmp_path.

The data are simulated from a known law on the real FLOPs of the tiny test
architectures (counted on meta), so the predictions can be checked against the
law itself. The workflow never fits simulated data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import simulate
import yaml
from analysis_support import TINY_MODELS, TINY_RESOLUTIONS, counted_flops, energy_table, paper_truth, settings

from diffusion_energy import cli
from diffusion_energy.counting.features import Point, point_features
from diffusion_energy.errors import UsageError
from diffusion_energy.laws import analysis, analysis_io, predict
from diffusion_energy.models import zoo
from diffusion_energy.sources import gpu_datasheets

STEPS = [5, 10, 20, 50]


#: The two simulated kinds' datasheets (dense half-precision TFLOP/s, fp32, GB/s, W): the H100 SXM and H200.
SHEETS = {g: gpu_datasheets.Datasheet.from_config({"half_tflop_s": 989, "fp32_tflop_s": 67,
                                                    "bandwidth_gb_s": b, "power_limit_w": 700})
          for g, b in (("h100", 3350), ("h200", 4800))}


@pytest.fixture(scope="module")
def fitted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, simulate.PaperTruth, dict]:
    table, ops = counted_flops(getattr(request.config, "cache", None), TINY_MODELS, TINY_RESOLUTIONS)
    truth = paper_truth(TINY_MODELS, seed=5)
    points = simulate.grid(table, STEPS, gpus=["h100", "h200"])
    energy = energy_table(simulate.simulate_paper_law(points, table, truth, np.random.default_rng(1)), table)
    pts, inputs = analysis.prepare(energy, table, ops, SHEETS)
    s = settings(bootstrap=100)
    cv = analysis.run_crossval(pts, inputs, s)
    payload, _ = analysis.run_fit(pts, inputs, cv["lomo_predictions"], cv["lomo_metrics"], s,
                                  cv["logo_predictions"], cv["logo_metrics"], SHEETS)
    path = tmp_path_factory.mktemp("laws") / "laws.json"
    analysis_io.write_json(payload, path)
    return path, truth, {"flops": table}


def _run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    rc = cli.main(["predict", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _predict(capsys: pytest.CaptureFixture, laws: Path, model: str | Path, resolution: int, steps: int,
             *extra: str) -> tuple[int, str, str]:
    """``diffusion-energy predict`` for one point, from the laws file ``laws``."""
    return _run(capsys, "--model", str(model), "--resolution", str(resolution), "--steps", str(steps),
                *extra, "--laws", str(laws))


def _truth_j(truth: simulate.PaperTruth, table, model: str, res: int, steps: int, gpu: str) -> float:
    spec = zoo.load_spec(model)
    feats = point_features([Point(gpu, model, spec.architecture, "fp32", res, steps, spec.cfg)], table)
    return float(np.exp(truth.log_energy(feats))[0])


def test_measured_architecture_uses_its_own_law(fitted: tuple, capsys: pytest.CaptureFixture) -> None:
    laws_path, truth, extra = fitted
    rc, out, err = _predict(capsys, laws_path, "tiny-sd", 64, 30, "--gpu", "h200", "--json")
    assert rc == 0, err
    result = json.loads(out)
    expected = _truth_j(truth, extra["flops"], "tiny-sd", 64, 30, "h200")
    assert result["energy_j"] == pytest.approx(expected, rel=0.05)
    assert result["low_j"] < expected < result["high_j"]
    assert result["energy_wh"] == pytest.approx(result["energy_j"] / 3600)
    assert result["level"] == 0.9 and "per-architecture" in result["law"]
    assert result["cfg"] is True and result["precision"] == "fp32"


def test_a_measured_architecture_the_pooled_model_fits_better_is_answered_by_it(
    fitted: tuple, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """The fit compares, on our own points of each architecture, its paper-form law with the pooled model;
    on data simulated from the paper law its own law fits them better. Where the pooled model fits better
    (SD 1.5 on our H200, launch-bound), predict answers with it; --law architecture still gives the own."""
    laws_path, _, _ = fitted
    payload = json.loads(laws_path.read_text())
    versus = payload["own_or_pooled"]["image"]["tiny-sd"]
    assert versus["answer"] == "architecture" and versus["own_rms_log"] < versus["pooled_rms_log"]
    versus["answer"] = "pooled"
    swapped = tmp_path / "laws.json"
    swapped.write_text(json.dumps(payload))
    rc, out, err = _predict(capsys, swapped, "tiny-sd", 64, 30, "--gpu", "h200", "--json")
    assert rc == 0, err
    law = json.loads(out)["law"]
    assert law.startswith("pooled") and "its own paper-form law (--law architecture" in law
    rc, out, err = _predict(capsys, swapped, "tiny-sd", 64, 30, "--gpu", "h200", "--json", "--law",
                            "architecture")
    assert rc == 0, err
    assert "per-architecture" in json.loads(out)["law"]


def test_text_output_gives_joules_watt_hours_and_the_interval(
    fitted: tuple, capsys: pytest.CaptureFixture
) -> None:
    rc, out, err = _predict(capsys, fitted[0], "tiny-flux", 32, 10, "--gpu", "h100")
    assert rc == 0, err
    assert "J/image" in out and "Wh/image" in out and "90% prediction interval" in out
    assert "CFG off" in out  # tiny-flux is guidance-distilled


def test_architecture_file_never_measured_gets_the_pooled_law(
    fitted: tuple, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    raw = yaml.safe_load(zoo.resolve_model_path("tiny-sd").read_text())
    raw["name"] = "tiny-new"
    raw["components"]["unet"]["config"]["block_out_channels"] = [16, 32]
    raw["components"]["unet"]["config"]["norm_num_groups"] = 8
    path = tmp_path / "tiny-new.yaml"
    path.write_text(yaml.safe_dump(raw))
    rc, out, err = _predict(capsys, fitted[0], path, 64, 20, "--gpu", "h100", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["law"].startswith("pooled ")
    assert result["model"] == "tiny-new"
    assert result["low_j"] < result["energy_j"] < result["high_j"]


def test_pooled_law_on_request_and_dynamic_energy(fitted: tuple, capsys: pytest.CaptureFixture) -> None:
    rc, out, err = _predict(capsys, fitted[0], "tiny-qwen", 64, 20, "--gpu", "h100", "--law", "pooled",
                            "--energy", "dynamic", "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert result["energy"] == "dynamic" and result["law"].startswith("pooled ")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--gpu", "a100"], "GPU kind 'a100' is not in the fitted data"),
        ([], "choose one with --gpu"),
        (["--gpu", "h100", "--precision", "fp16"], "precision fp16 is not in the fitted data"),
        (["--gpu", "h100", "--resolution", "33"], "not a positive multiple"),
    ],
    ids=["unknown-gpu", "gpu-needed", "precision-not-fitted", "bad-resolution"],
)
def test_clear_errors(fitted: tuple, capsys: pytest.CaptureFixture, args: list[str], needle: str) -> None:
    base = {"--model": "tiny-sd", "--resolution": "64", "--steps": "20"}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    rc, _, err = _run(capsys, *flat, "--laws", str(fitted[0]))
    assert rc == 2
    assert needle in err


def test_no_fitted_law_yet(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc, _, err = _predict(capsys, tmp_path / "absent.json", "tiny-sd", 64, 20)
    assert rc == 2 and "no fitted law" in err
    empty = tmp_path / "laws.json"
    points, inputs = analysis.prepare(analysis_io.usable_points(pd.DataFrame()), None, None)
    payload, _ = analysis.run_fit(points, inputs, pd.DataFrame(), pd.DataFrame(), settings())
    analysis_io.write_json(payload, empty)
    rc, _, err = _predict(capsys, empty, "tiny-sd", 64, 20)
    assert rc == 2 and "no measurements yet" in err


def test_predict_with_counted_point_matches_the_cli(fitted: tuple) -> None:
    payload = analysis_io.read_laws(fitted[0])
    spec = zoo.load_spec("tiny-sdxl")
    counted = predict.count_point(spec, "h100", "fp32", 64, 20, True)
    a = predict.predict_energy(payload, spec, resolution=64, steps=20, gpu="h100", counted=counted)
    b = predict.predict_energy(payload, spec, resolution=64, steps=20, gpu="h100")
    assert a.energy_j == pytest.approx(b.energy_j)
    assert "tiny-sdxl" in a.describe()


def test_pooled_roofline_answers_an_architecture_file(fitted: tuple, tmp_path: Path) -> None:
    payload = analysis_io.read_laws(fitted[0])
    payload["pooled"]["image"]["selected_by_gpu"]["h200"] = "roofline_datasheet"
    spec = zoo.load_spec(zoo.resolve_model_path("tiny-sdxl"))
    result = predict.predict_energy(payload, spec, resolution=64, steps=20, gpu="h200", from_path=True)
    assert result.law.startswith("pooled roofline_datasheet")
    assert 0 < result.low_j <= result.energy_j <= result.high_j and result.low_j < result.high_j
    with pytest.raises(analysis_io.NoLawError, match="not in the fitted data"):
        predict.predict_energy(payload, spec, resolution=64, steps=20, gpu="l40s", from_path=True)


def test_a_measured_kind_is_never_given_a_wider_interval_than_one_known_by_its_datasheet(
        fitted: tuple) -> None:
    """The same point on the measured H100 and on a kind with the H100's datasheet that nobody measured:
    the datasheet-only answer's interval holds the measured kind's (its rule is the envelope of the
    architectures-left-out and the kinds-left-out rules)."""
    payload = analysis_io.read_laws(fitted[0])
    spec = zoo.load_spec("tiny-sd")
    measured = predict.predict_energy(payload, spec, resolution=64, steps=20, gpu="h100")
    twin = predict.predict_energy(payload, spec, resolution=64, steps=20, gpu="h100-twin",
                                  datasheet=SHEETS["h100"])
    assert twin.high_j / twin.low_j >= measured.high_j / measured.low_j
    assert "GPU kinds and architectures left out" in twin.interval


# --- arguments that conflict, and counts past what can be computed --------------------------------


SHEET = "half_tflop_s=989,fp32_tflop_s=67,bandwidth_gb_s=3350,power_limit_w=700"


def test_a_measured_gpu_with_a_datasheet_is_one_error_naming_both(
        fitted: tuple, capsys: pytest.CaptureFixture) -> None:
    rc, out, err = _predict(capsys, fitted[0], "tiny-sd", 64, 20, "--gpu", "h100", "--gpu-datasheet", SHEET)
    assert rc == 2 and out == ""
    assert err.strip() == ("diffusion-energy predict: error: --gpu h100 and --gpu-datasheet conflict: h100 "
                           "was measured (it is in the fitted data); give --gpu h100 alone, or give the "
                           "datasheet a new name with --gpu <name>")


def test_a_configured_gpu_with_a_datasheet_is_one_error_naming_both(fitted: tuple) -> None:
    from diffusion_energy.sources import gpu_datasheets

    payload = analysis_io.read_laws(fitted[0])
    payload["datasheets"] = {"b200": {"half_tflop_s": 2250, "fp32_tflop_s": 80, "bandwidth_gb_s": 8000,
                                      "power_limit_w": 1000}}
    with pytest.raises(UsageError, match=r"^--gpu b200 and --gpu-datasheet conflict: b200 has a datasheet in "
                                         r"the config \(gpu_kinds\)"):
        predict.predict_energy(payload, zoo.load_spec("tiny-sd"), resolution=64, steps=20, gpu="b200",
                               datasheet=gpu_datasheets.parse_datasheet(SHEET))


@pytest.mark.parametrize("arg", ["--steps", "--batch", "--images"])
def test_counts_past_float64_exact_integers_are_refused(fitted: tuple, capsys: pytest.CaptureFixture,
                                                        arg: str) -> None:
    args = {"--steps": "20", "--batch": "1", "--images": "1", arg: str(10**21)}
    rc, out, err = _run(capsys, "--model", "tiny-sd", "--resolution", "64", "--gpu", "h100", "--laws",
                        str(fitted[0]), *[x for kv in args.items() for x in kv])
    assert rc == 2 and out == ""
    assert (f"error: {arg} 1,000,000,000,000,000,000,000 is more than can be counted exactly (at most "
            "2**53 = 9,007,199,254,740,992") in err


def test_huge_step_counts_and_batches_count_positive_flops() -> None:
    """Past int64's 9.2e18 FLOPs the count wrapped round (negative FLOPs, NaN J); float64 holds it, and a
    batch of 10^11 is derived from batches 1 and 2 instead of building tensors past int64 sizes."""
    spec = zoo.load_spec("tiny-sd")
    steps = 10**15
    one = predict.count_point(spec, "h100", "fp32", 32, steps, True)
    huge = predict.count_point(spec, "h100", "fp32", 32, steps, True, batch=10**11)
    per_step = float(one.features["denoise_flops_per_step"].iloc[0])
    assert per_step * steps > 2**63
    assert float(one.features["flops"].iloc[0]) == pytest.approx(per_step * steps, rel=1e-6)
    assert float(huge.features["flops"].iloc[0]) == pytest.approx(float(one.features["flops"].iloc[0]),
                                                                  rel=1e-9)


def test_the_law_of_an_architecture_file_conflicts_with_law_architecture(
        fitted: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "tiny-sd.yaml"
    path.write_text(zoo.resolve_model_path("tiny-sd").read_text())
    rc, out, err = _predict(capsys, fitted[0], path, 64, 20, "--gpu", "h100", "--law", "architecture")
    assert rc == 2 and out == ""
    assert ("error: --law architecture and --model <architecture file> conflict: an architecture file is "
            "never a measured model (use --law auto or --law pooled)") in err


# --- own_or_pooled: the fit's verdict, or a refusal; never the own law by default -------------------


@pytest.mark.parametrize(("verdict", "what"), [(None, "missing"), ({}, "empty"),
                                               ({"answer": "maybe"}, "answer 'maybe'")],
                         ids=["missing", "empty", "maybe"])
def test_an_own_or_pooled_entry_missing_empty_or_maybe_is_refused(
        fitted: tuple, tmp_path: Path, capsys: pytest.CaptureFixture, verdict: dict | None,
        what: str) -> None:
    """It silently gave the architecture's own law (1,286 J instead of 1,382 J for SD 1.5 at 1024 px)."""
    payload = json.loads(fitted[0].read_text())
    if verdict is None:
        del payload["own_or_pooled"]["image"]["tiny-sd"]
    else:
        payload["own_or_pooled"]["image"]["tiny-sd"] = verdict
    spec = zoo.load_spec("tiny-sd")
    with pytest.raises(analysis_io.NoLawError, match=rf"own_or_pooled.image.tiny-sd is {what}.*refit"):
        predict.predict_energy(payload, spec, resolution=64, steps=30, gpu="h200")
    path = tmp_path / "laws.json"
    path.write_text(json.dumps(payload))
    rc, _, err = _predict(capsys, path, "tiny-sd", 64, 30, "--gpu", "h200")
    assert rc == 2 and "own_or_pooled.image.tiny-sd" in err and "refit" in err and "Traceback" not in err


# --- a laws file missing or mangling a key: validated on load, "refit" -------------------------------


def _mangle(payload: dict, change: str) -> None:
    image = payload["pooled"]["image"]
    if change == "no-pooled":
        del payload["pooled"]
    elif change == "no-own-or-pooled":
        del payload["own_or_pooled"]
    elif change == "candidate-without-coefficients":
        chosen = image["candidates"][image["selected"]]["law"]
        for law in [chosen, *chosen.get("parts", {}).values()]:
            law.pop("coef", None)
            law.pop("constants", None)
    elif change == "selected-candidate-gone":
        del image["candidates"][image["selected"]]
    elif change == "no-datasheets":
        del payload["datasheets"]
    elif change == "datasheet-peak-as-text":
        payload["datasheets"] = {"h100": {"half_tflop_s": "989", "fp32_tflop_s": 67, "bandwidth_gb_s": 3350,
                                          "power_limit_w": 700}}


@pytest.mark.parametrize(("change", "key"), [
    ("no-pooled", "the top level: 'pooled' is a required property"),
    ("no-own-or-pooled", "own_or_pooled.image.tiny-flux: missing (which of tiny-flux's own law and the "
                         "pooled model answers it) (and 9 more)"),
    ("candidate-without-coefficients", "the law cannot be read (KeyError"),
    ("selected-candidate-gone", "pooled.image.selected: "),
    ("no-datasheets", "'datasheets' is a required property"),
    ("datasheet-peak-as-text", "datasheets.h100.half_tflop_s: '989' is not of type 'number'"),
])
def test_a_mangled_laws_file_is_refused_on_load_naming_the_key(
        fitted: tuple, tmp_path: Path, capsys: pytest.CaptureFixture, change: str, key: str) -> None:
    payload = json.loads(fitted[0].read_text())
    _mangle(payload, change)
    path = tmp_path / "laws.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(analysis_io.NoLawError) as err:
        analysis_io.read_laws(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: not a laws file `predict` can read: ") and key in msg, msg
    assert msg.endswith("refit (`snakemake " + str(path) + "`, or `diffusion-energy fit`)")
    rc, _, err_text = _predict(capsys, path, "tiny-flux", 64, 30, "--gpu", "h200")
    assert rc == 2 and "refit" in err_text and "Traceback" not in err_text
    assert "too few architectures" not in err_text, "a damaged file is not blamed on the data"


def test_the_fitted_laws_file_passes_its_schema(fitted: tuple) -> None:
    from diffusion_energy.laws import laws_schema

    assert laws_schema.problems(json.loads(fitted[0].read_text())) == []


def test_gpu_datasheet_help_says_which_peak_to_give(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "half_tflop_s is the dense fp16/bf16 tensor-core peak, without sparsity" in text
    assert "for a GeForce card, the 'FP16 Tensor with FP32 accumulate' figure" in text


# --- the data line names the points the answering law was fitted on ---------------------------------


@pytest.fixture(scope="module")
def one_dynamic(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Laws fitted where only tiny-sd on h200 has dynamic energy (idle power measured), as in the shipped
    data only our SD 1.5 H200 points have: the dynamic laws rest on those points alone."""
    table, ops = counted_flops(getattr(request.config, "cache", None), TINY_MODELS, TINY_RESOLUTIONS)
    points = simulate.grid(table, STEPS, gpus=["h100", "h200"])
    energy = energy_table(simulate.simulate_paper_law(points, table, paper_truth(TINY_MODELS, seed=5),
                                                      np.random.default_rng(1)), table)
    others = ~((energy["model"] == "tiny-sd") & (energy["gpu"] == "h200"))
    for col in ("dynamic_energy_j", "text_dynamic_energy_j", "denoise_dynamic_energy_j",
                "vae_dynamic_energy_j", "idle_power_w"):
        energy.loc[others, col] = np.nan
    pts, inputs = analysis.prepare(energy, table, ops)
    s = settings(bootstrap=20)
    cv = analysis.run_crossval(pts, inputs, s)
    payload, _ = analysis.run_fit(pts, inputs, cv["lomo_predictions"], cv["lomo_metrics"], s)
    path = tmp_path_factory.mktemp("one_dynamic") / "laws.json"
    analysis_io.write_json(payload, path)
    return path


def test_dynamic_energy_from_a_law_fitted_on_other_points_says_so(
        one_dynamic: Path, capsys: pytest.CaptureFixture) -> None:
    """SDXL on the H100 was answered from our 11 SD 1.5 H200 points while the output said 224 points."""
    rc, out, err = _predict(capsys, one_dynamic, "tiny-flux", 64, 20, "--gpu", "h100", "--energy", "dynamic",
                            "--json")
    assert rc == 0, err
    result = json.loads(out)
    data = result["data"]
    assert data == ("8 single-GPU points (this-workflow) of 1 architecture(s) (tiny-sd), GPU kind(s) h200: "
                    "the points with dynamic (idle-subtracted) energy"), data
    (note,) = [n for n in result["notes"] if n.startswith("dynamic")]
    assert note.startswith("dynamic (idle-subtracted) energy was measured only for tiny-sd on h200 (8 "
                           "points; idle power is measured by this workflow alone"), note
    assert "the architecture tiny-flux and GPU kind h100 lie outside them" in note
    assert note.endswith(f"--energy raw rests on {json.loads(one_dynamic.read_text())['n_points']} points")


def test_raw_energy_names_every_point_and_dynamic_on_its_own_points_adds_no_note(
        one_dynamic: Path, capsys: pytest.CaptureFixture) -> None:
    payload = json.loads(one_dynamic.read_text())
    rc, out, err = _predict(capsys, one_dynamic, "tiny-flux", 64, 20, "--gpu", "h100", "--law", "pooled",
                            "--json")
    assert rc == 0, err
    raw = json.loads(out)
    assert raw["data"].startswith(f"{payload['n_points']} single-GPU points (") and not any(
        n.startswith("dynamic") for n in raw["notes"])
    rc, out, err = _predict(capsys, one_dynamic, "tiny-sd", 64, 20, "--gpu", "h200", "--energy", "dynamic",
                            "--law", "pooled", "--json")
    assert rc == 0, err
    own = json.loads(out)
    assert own["data"].startswith("8 single-GPU points (this-workflow) of 1 architecture(s) (tiny-sd)")
    assert not any("lie outside" in n for n in own["notes"])
