"""Config validation: every mistake stops the run with a message naming the key and allowed values."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from diffusion_energy import cli, grid
from diffusion_energy.models import zoo


@pytest.fixture(scope="module")
def shipped(repo_root: Path) -> dict[str, Any]:
    return yaml.safe_load((repo_root / "config" / "config.yaml").read_text())


@pytest.fixture
def config(shipped: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of the shipped config to break."""
    return copy.deepcopy(shipped)


def error_of(config: dict[str, Any]) -> str:
    with pytest.raises(grid.ConfigError) as info:
        grid.validate_config(config)
    return str(info.value)


# --- the shipped configs ---------------------------------------------------------------------------


def test_shipped_config_is_valid(shipped: dict[str, Any]) -> None:
    grid.validate_config(shipped)


def test_shipped_grid_has_the_expected_points(shipped: dict[str, Any]) -> None:
    points = grid.grid_points(shipped)
    # main: 6 models x 4 resolutions x 3 steps; fp32: 3 models x 1 resolution x 2 steps.
    assert len(points) == 6 * 4 * 3 + 3 * 1 * 2 == 78
    assert len(set(points)) == len(points) and points == sorted(points)
    groups = grid.measurement_groups(points)
    assert sorted(groups) == sorted(
        [(m, zoo.load_spec(m).default_precision)
         for m in ["sd15", "sd21", "sdxl", "sd35-large", "flux-dev", "qwen-image"]]
        + [("sd15", "fp32"), ("sd21", "fp32"), ("sdxl", "fp32")]
    )
    assert sum(len(g) for g in groups.values()) == 78
    # "default" precision and CFG resolve per model.
    by_model = {(p.model, p.precision) for p in points}
    assert ("flux-dev", "bf16") in by_model and ("qwen-image", "bf16") in by_model
    assert ("sd15", "fp16") in by_model and ("sd35-large", "fp16") in by_model
    assert all(p.cfg == (p.model != "flux-dev") for p in points)
    assert {p.batch for p in points} == {1}


def test_flops_requests_cover_the_grid(shipped: dict[str, Any]) -> None:
    requests = grid.flops_requests(grid.grid_points(shipped))
    assert sorted(requests) == sorted(["sd15", "sd21", "sdxl", "sd35-large", "flux-dev", "qwen-image"])
    assert all(r["resolutions"] == [256, 512, 768, 1024] for r in requests.values())
    assert requests["flux-dev"]["cfgs"] == [False] and requests["sd15"]["cfgs"] == [True]


def test_tiny_test_config_is_valid(repo_root: Path) -> None:
    tiny = yaml.safe_load((repo_root / "tests" / "configs" / "tiny.yaml").read_text())
    grid.validate_config(tiny)
    points = grid.grid_points(tiny)
    assert len(points) == 4 and {p.model for p in points} == {"tiny-sd", "tiny-flux"}
    assert tiny["measure_gpus"] == []
    assert not list((repo_root / tiny["reference_dir"]).glob("*.parquet"))


# --- errors that name the key and the allowed values ------------------------------------------------


def test_unknown_model(config: dict[str, Any]) -> None:
    config["grids"]["main"]["models"].append("sd16")
    msg = error_of(config)
    assert "grids.main.models" in msg and "'sd16'" in msg
    assert all(m in msg for m in ["sd15", "flux-dev", "qwen-image"])


def test_resolution_not_a_multiple_of_stride_times_patch(config: dict[str, Any]) -> None:
    config["grids"]["main"]["resolutions"] = [512, 1000]  # SD 3.5, FLUX, Qwen need multiples of 16
    msg = error_of(config)
    assert "grids.main.resolutions" in msg and "1000" in msg and "16" in msg


def test_resolution_multiple_of_8_is_fine_for_unets(config: dict[str, Any]) -> None:
    config["grids"] = {"u": {"models": ["sd15"], "resolutions": [520], "steps": [1], "precisions": ["fp16"]}}
    grid.validate_config(config)


def test_resolution_beyond_the_positional_embedding(config: dict[str, Any]) -> None:
    config["grids"]["main"]["resolutions"] = [4096]
    msg = error_of(config)
    assert "grids.main.resolutions" in msg and "4096" in msg and "3072" in msg


def test_unknown_precision(config: dict[str, Any]) -> None:
    config["grids"]["fp32"]["precisions"] = ["fp8"]
    msg = error_of(config)
    assert "grids.fp32.precisions" in msg and "'fp8'" in msg
    assert all(p in msg for p in ["default", "fp16", "bf16", "fp32"])


def test_typo_at_top_level(config: dict[str, Any]) -> None:
    config["batchsize"] = config.pop("batch_size")
    msg = error_of(config)
    assert "'batchsize'" in msg and "top level" in msg
    assert all(k in msg for k in ["batch_size", "grids", "protocol", "measure_gpus"])


def test_typo_inside_a_grid(config: dict[str, Any]) -> None:
    config["grids"]["fp32"]["resolution"] = config["grids"]["fp32"].pop("resolutions")
    msg = error_of(config)
    assert "'resolution'" in msg and "grids.fp32" in msg
    assert all(k in msg for k in ["models", "resolutions", "steps", "precisions"])


def test_typo_inside_protocol(config: dict[str, Any]) -> None:
    config["protocol"]["repeat"] = config["protocol"].pop("repeats")
    msg = error_of(config)
    assert "'repeat'" in msg and "protocol" in msg
    assert all(k in msg for k in ["repeats", "warmup", "idle_s", "min_window_s"])


@pytest.mark.parametrize(
    ("key", "value", "needles"),
    [
        ("cfg", "sometimes", ["cfg", "sometimes"]),
        ("batch_size", 0, ["batch_size", "0"]),
        ("measure_gpus", "all", ["measure_gpus", "all"]),
    ],
)
def test_bad_values_are_named(config: dict[str, Any], key: str, value: Any, needles: list[str]) -> None:
    config[key] = value
    msg = error_of(config)
    assert all(n in msg for n in needles), msg


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [("cfg", "sometimes", ["true", "false", "'default'"]), ("measure_gpus", "all", ["'auto'", "list"])],
)
def test_either_or_settings_list_their_allowed_values(
    config: dict[str, Any], key: str, value: Any, allowed: list[str]
) -> None:
    config[key] = value
    msg = error_of(config)
    assert "allowed values" in msg and all(a in msg for a in allowed), msg


def test_missing_required_block(config: dict[str, Any]) -> None:
    del config["grids"]
    assert "grids" in error_of(config)


def test_several_errors_are_reported_together(config: dict[str, Any]) -> None:
    config["protocl"] = config.pop("protocol")
    config["grids"]["main"]["precisions"] = ["fp8"]
    msg = error_of(config)
    assert "'protocl'" in msg and "'fp8'" in msg


def test_cfg_and_batch_overrides(config: dict[str, Any]) -> None:
    config["cfg"] = True
    config["batch_size"] = 2
    points = grid.grid_points(config)
    assert all(p.cfg and p.batch == 2 for p in points)
    config["cfg"] = False
    assert not any(p.cfg for p in grid.grid_points(config))


# --- grid points, paths, rule names -----------------------------------------------------------------


def test_grid_point_slug_round_trips() -> None:
    point = grid.GridPoint("sd35-large", "fp16", 1024, 28, True, 1)
    assert point.slug == "1024px_28steps_cfg1_b1"
    assert grid.GridPoint.from_slug("sd35-large", "fp16", point.slug) == point
    with pytest.raises(grid.ConfigError, match="not a grid point name"):
        grid.GridPoint.from_slug("sd15", "fp16", "1024px_28steps")


def test_measurement_path_and_rule_names(shipped: dict[str, Any]) -> None:
    point = grid.GridPoint("flux-dev", "bf16", 1024, 25, False, 1)
    assert str(grid.measurement_path("results/measurements", "h100", point)) == (
        "results/measurements/h100/flux-dev/bf16/1024px_25steps_cfg0_b1.parquet"
    )
    jobs = grid.measurement_jobs(grid.grid_points(shipped))
    names = [grid.rule_name(m) for m in jobs]
    assert "measure_sd35_large" in names and "measure_flux_dev" in names
    assert len(set(names)) == len(names) and all(n.isidentifier() for n in names)


def test_one_job_per_model_measures_its_usual_precision_first(shipped: dict[str, Any]) -> None:
    """Start-up, the counter probe and the idle baseline are paid once per model (issue 24.7)."""
    jobs = grid.measurement_jobs(grid.grid_points(shipped))
    assert sorted(jobs) == sorted(["sd15", "sd21", "sdxl", "sd35-large", "flux-dev", "qwen-image"])
    assert [p.precision for p in jobs["sd15"]] == ["fp16"] * 12 + ["fp32"] * 2
    assert grid.job_point_names(jobs["sd15"][:1] + jobs["sd15"][-1:]) == (
        "fp16/256px_10steps_cfg1_b1,fp32/512px_25steps_cfg1_b1")
    assert sum(len(j) for j in jobs.values()) == 78


def test_validate_config_command(repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 shipped: dict[str, Any]) -> None:
    assert cli.main(["validate-config", "--config", str(repo_root / "config" / "config.yaml")]) == 0
    assert "78 grid points in 9 measurement groups" in capsys.readouterr().out
    bad = copy.deepcopy(shipped)
    bad["grids"]["main"]["models"] = ["sd16"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert cli.main(["validate-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "'sd16'" in err and "Traceback" not in err


# --- settings that would switch a check off, or keep a job running until it is killed --------------


@pytest.mark.parametrize(("key", "value"), [
    ("protocol.stage_sum_tolerance", float("nan")), ("protocol.spread_flag", float("inf")),
    ("protocol.min_window_s", float("-inf")), ("analysis.prediction_level", float("nan")),
    ("gpu_kinds.h100.datasheet.half_tflop_s", float("nan")),
])
def test_nan_and_infinities_are_refused_everywhere(config: dict[str, Any], key: str, value: float) -> None:
    """NaN passes every JSON-schema bound (it compares false), so a NaN tolerance flagged nothing."""
    *path, last = key.split(".")
    block = config
    for part in path:
        block = block[part]
    block[last] = value
    msg = error_of(config)
    assert f"{key}: {value} is not a finite number" in msg and "NaN and infinities are refused" in msg, msg


def test_nan_in_a_protocol_given_on_the_command_line_is_refused() -> None:
    with pytest.raises(grid.UsageError, match=r"--protocol: stage_sum_tolerance: nan is not a finite number"):
        grid.protocol_settings('{"stage_sum_tolerance": NaN}')


@pytest.mark.parametrize(("key", "value", "bound"), [
    ("min_window_updates", 10_000_000, 1000), ("idle_s", 3600, 600), ("repeats", 1000, 100),
    ("stage_sum_tolerance", 5, 1), ("max_remeasure", 10_000, 100), ("min_tail_s", 60, 10),
])
def test_every_protocol_setting_has_an_upper_bound(config: dict[str, Any], key: str, value: Any,
                                                   bound: float) -> None:
    config["protocol"][key] = value
    assert f"protocol.{key}: {value} is greater than the maximum of {bound}" in error_of(config)


def test_schema_bounds_every_protocol_setting(repo_root: Path) -> None:
    schema = yaml.safe_load((repo_root / "workflow" / "schemas" / "config.schema.yaml").read_text())
    settings = schema["properties"]["protocol"]["properties"]
    assert [k for k, v in settings.items() if v.get("type") != "boolean" and "maximum" not in v] == []


def test_a_slow_protocol_within_the_bounds_is_warned_about_with_its_time(config: dict[str, Any]) -> None:
    points = grid.grid_points(config)
    assert grid.protocol_warnings(config, points) == []
    config["protocol"]["min_window_updates"] = 1000
    (warning,) = grid.protocol_warnings(config, points)
    assert warning.startswith("the measurement protocol's windows alone take at least 13.0 h for the grid's "
                              "78 points on each GPU kind, against 9 min with the default protocol "
                              "(protocol.min_window_updates: 1000 (default 10)"), warning


def test_the_protocol_yardstick_is_the_measure_jobs_defaults() -> None:
    from diffusion_energy.measurement.measure import Protocol

    defaults = Protocol()
    assert {k: getattr(defaults, k) for k in grid.DEFAULT_PROTOCOL} == grid.DEFAULT_PROTOCOL


def test_validate_config_command_prints_the_protocol_warning(
        tmp_path: Path, shipped: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    slow = copy.deepcopy(shipped)
    slow["protocol"]["idle_s"] = 600
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(slow))
    with caplog.at_level("WARNING"):
        assert cli.main(["validate-config", "--config", str(path)]) == 0
    assert "protocol.idle_s: 600 (default 1.0)" in caplog.text


def test_two_gpu_kinds_with_one_name_pattern_are_refused(config: dict[str, Any]) -> None:
    config["gpu_kinds"]["h100-sxm"] = {"name_pattern": "h100 "}
    assert "gpu_kinds: h100 and h100-sxm have the same name_pattern 'h100 '" in error_of(config)


def test_every_shipped_datasheet_names_its_source(shipped: dict[str, Any]) -> None:
    """Each value with its source: an NVIDIA or AMD datasheet or whitepaper (the H20 has no public one)."""
    wanted = {"a4000", "a6000", "l4", "l40s", "rtx3090", "rtx4090", "h20", "h100-pcie", "gh200", "b200",
              "mi300x", "h100", "h200", "a100"}
    kinds = shipped["gpu_kinds"]
    assert wanted <= {k for k, v in kinds.items() if v.get("datasheet")}
    for kind, spec in kinds.items():
        sheet = spec["datasheet"]
        source = " ".join(sheet["source"].split())
        assert "https://" in source, (kind, source)
        for key in ("half_tflop_s", "fp32_tflop_s", "bandwidth_gb_s", "power_limit_w"):
            assert sheet[key] > 0
    # dense, without sparsity: half of what the datasheets quote "with sparsity"
    assert kinds["l4"]["datasheet"]["half_tflop_s"] == 242 / 2
    assert kinds["a4000"]["datasheet"]["half_tflop_s"] == pytest.approx(153.4 / 2)
    # GeForce cards: the fp16-with-fp32-accumulate tensor rate of the whitepapers
    assert kinds["rtx4090"]["datasheet"]["half_tflop_s"] == 165.2 and kinds["rtx3090"]["datasheet"][
        "half_tflop_s"] == 71
    assert "FP32 Accumulate" in kinds["rtx4090"]["datasheet"]["source"]
