"""Bad input never passes silently, and never ends in a traceback.

Each case feeds one bad input and asserts the message names the file, key, column or
argument. Classes: the command line's one error path (``cli/main.py``, ``errors.py``),
config validation (folders, upstream model names), architecture files (``zoo.load_spec``:
caught when the file is loaded, before any job), and measurement files whose rows
contradict their file or the zoo (``dataset.read_measurements``). A bug keeps its traceback.
"""

from __future__ import annotations

import copy
import errno
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from test_dataset import rows
from workflow_support import run_workflow

from diffusion_energy import atomic, cli, errors, grid
from diffusion_energy.cli import foundation
from diffusion_energy.models import zoo
from diffusion_energy.sources import dataset

REPO = Path(__file__).resolve().parents[1]
MEASURE = ["measure", "--gpu", "h100", "--model", "tiny-sd", "--precision", "fp32", "--device", "cpu"]
POINT = ["--points", "32px_2steps_cfg1_b1"]


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """Exit status and stderr of one in-process command (argparse errors exit through SystemExit)."""
    try:
        rc = cli.main(list(args))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def one_line(err: str) -> str:
    """The error line of a command (logging lines aside)."""
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


# --- the command line: one clear line and a non-zero exit for every user error ----------------------


BAD_YAML = "grids:\n  main:\n    models: [sd15\n    steps: [1]\n"


@pytest.mark.parametrize(
    ("files", "args", "needles"),
    [
        (
            {"bad.yaml": BAD_YAML},
            ["validate-config", "--config", "{bad.yaml}"],
            ["{bad.yaml}:4:10: invalid YAML at line 4, column 10", "expected ',' or ']'"],
        ),
        (
            {"empty.yaml": ""},
            ["validate-config", "--config", "{empty.yaml}"],
            ["{empty.yaml}: the config file is empty"],
        ),
        (
            {"list.yaml": "- grids\n"},
            ["validate-config", "--config", "{list.yaml}"],
            ["{list.yaml}: expected a mapping of settings at the top level, not a list"],
        ),
        ({}, ["validate-config", "--config", "{tmp}/absent.yaml"], ["absent.yaml: no such config file"]),
        (
            {},
            [*MEASURE, *POINT, "--protocol", "{repeats: 3}"],
            ["--protocol: not valid JSON (Expecting property name enclosed in double quotes"],
        ),
        (
            {},
            [*MEASURE, *POINT, "--protocol", '{"repeat": 3}'],
            ["--protocol: unknown key(s) ['repeat']", "allowed keys", "'repeats'"],
        ),
        ({}, [*MEASURE, *POINT, "--protocol", '{"repeats": 0}'], ["--protocol: repeats: 0 is less than"]),
        ({}, [*MEASURE, *POINT, "--protocol", "[3]"], ["--protocol: expected a JSON object, not list"]),
        ({}, [*MEASURE, *POINT, "--gpu-kinds", "{h100: H100}"], ["--gpu-kinds: not valid JSON"]),
        (
            {},
            [*MEASURE, *POINT, "--gpu-kinds", '{"h100": {"name": "H100"}}'],
            ["--gpu-kinds: unknown key(s) ['name'] in h100", "'name_pattern' is a required property"],
        ),
        (
            {},
            [*MEASURE, "--points", "32px_0steps_cfg1_b1"],
            ["point '32px_0steps_cfg1_b1': steps must be a positive integer, not 0"],
        ),
        (
            {},
            [*MEASURE, "--points", "32px_2steps_cfg1_b0"],
            ["point '32px_2steps_cfg1_b0': batch must be a positive integer, not 0"],
        ),
        ({}, [*MEASURE, "--points", "32px_2steps"], ["not a grid point name: '32px_2steps'"]),
        (
            {},
            ["flops", "--model", "tiny-sd", "--resolutions", "32", "--batches", "0", "--out", "{tmp}/f"],
            ["argument --batches: expected positive integers, got '0'"],
        ),
        (
            {},
            ["flops", "--model", "tiny-sd", "--resolutions", "32", "--batches", "-1", "--out", "{tmp}/f"],
            ["argument --batches: expected positive integers, got '-1'"],
        ),
        (
            {},
            ["flops", "--model", "tiny-sd", "--resolutions", "0", "--out", "{tmp}/f"],
            ["argument --resolutions: expected positive integers, got '0'"],
        ),
        (
            {"a-file": "x"},
            ["flops", "--model", "tiny-sd", "--resolutions", "32", "--out", "{a-file}/f.parquet"],
            ["{a-file} is a file, not a folder"],
        ),
        (
            {"laws.json": '{"schema_version": 3, "laws": '},
            ["predict", "--model", "tiny-sd", "--resolution", "32", "--steps", "2", "--laws", "{laws.json}"],
            ["{laws.json}: not valid JSON (Expecting value at line 1 column 31)"],
        ),
        (
            {"flops.parquet": "not parquet"},
            [
                "collect",
                "--measurements",
                str(Path(__file__).resolve().parents[1] / "resources" / "measurements" / "h200.parquet"),
                "--flops",
                "{tmp}/absent.parquet",
                "--out",
                "{tmp}/e.parquet",
            ],
            ["absent.parquet: no such FLOPs table"],
        ),
        (
            {},
            ["count-flops", "--requests", "{sd15}", "--out", "{tmp}/f", "--ops-out", "{tmp}/o"],
            ["--requests: not valid JSON"],
        ),
        (
            {},
            [
                "count-flops",
                "--requests",
                '{"sd16": {"resolutions": [512], "cfgs": [true], "batches": [1]}}',
                "--out",
                "{tmp}/f",
                "--ops-out",
                "{tmp}/o",
            ],
            ["--requests: model(s) ['sd16'] not in the zoo"],
        ),
        ({}, ["run-summary", "--measure-gpus", "h100"], ["--measure-gpus: not valid JSON"]),
    ],
    ids=[
        "config-yaml-syntax",
        "config-empty",
        "config-not-a-mapping",
        "config-absent",
        "protocol-not-json",
        "protocol-unknown-key",
        "protocol-repeats-0",
        "protocol-not-object",
        "gpu-kinds-not-json",
        "gpu-kinds-unknown-key",
        "steps-0",
        "batch-0",
        "bad-point-name",
        "batches-0",
        "batches-negative",
        "resolution-0",
        "output-under-a-file",
        "corrupt-laws-json",
        "flops-table-absent",
        "requests-not-json",
        "requests-unknown-model",
        "summary-gpus-not-json",
    ],
)
def test_user_errors_end_in_one_line_naming_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture, files: dict[str, str], args: list[str], needles: list[str]
) -> None:
    paths = {name: str(tmp_path / name) for name in files}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    fill = {**paths, "tmp": str(tmp_path)}

    def filled(text: str) -> str:
        for key, value in fill.items():
            text = text.replace("{" + key + "}", value)
        return text

    rc, err = run_cli(capsys, *map(filled, args))
    assert rc == 2
    line = one_line(err)
    for needle in needles:
        assert filled(needle) in line, line


ARCH_SYNTAX = "name: tiny-sd\nfamily: sd\nlatent_stride: [2\ncomponents: {}\n"


def test_an_architecture_file_with_a_yaml_error_names_file_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "arch.yaml"
    path.write_text(ARCH_SYNTAX)
    rc, err = run_cli(
        capsys, "flops", "--model", str(path), "--resolutions", "32", "--out", str(tmp_path / "f")
    )
    assert rc == 2 and f"{path}:4:11: invalid YAML at line 4, column 11" in one_line(err)


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        (
            OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device"),
            "cannot write {out}: no space left on the disk",
        ),
        (
            OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"),
            "cannot write {out}: no space left on the disk",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "{out}"),
            "cannot write {out}: the file system is read-only",
        ),
        (PermissionError(errno.EACCES, "Permission denied", "{out}"), "permission denied: {out}"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "cannot write {out}: disk quota exceeded"),
    ],
    ids=["full-disk", "full-disk-pyarrow-no-errno", "read-only", "permission-denied", "quota"],
)
def test_file_system_faults_name_the_output(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    fault: OSError,
    needle: str,
) -> None:
    out = str(tmp_path / "flops.parquet")
    if fault.filename:
        fault = type(fault)(fault.errno, fault.strerror, out)

    def refuse(frame: pd.DataFrame, path: Any) -> None:
        raise fault

    monkeypatch.setattr(atomic, "write_parquet", refuse)
    rc, err = run_cli(capsys, "flops", "--model", "tiny-sd", "--resolutions", "32", "--out", out)
    assert rc == 2 and needle.format(out=out) in one_line(err)


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def buggy(args: Any) -> int:
        return {}["missing"]

    monkeypatch.setattr(foundation, "cmd_validate", buggy)
    with pytest.raises(KeyError):
        cli.main(["validate-config"])


def test_a_library_value_error_is_a_bug_not_a_user_error() -> None:
    try:
        int("not a number")
    except ValueError as exc:
        assert not errors.is_user_error(exc), "raised by the interpreter, not a message for the user"
    try:
        raise grid.ConfigError("x: bad")
    except ValueError as exc:
        assert errors.is_user_error(exc)
    assert errors.is_user_error(OSError(errno.ENOSPC, "No space left on device"))
    assert not errors.is_user_error(OSError(errno.ECONNRESET, "Connection reset"))


# --- config validation: the gaps only a log showed ----------------------------------------------------


@pytest.fixture
def config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def config_error(config: dict[str, Any], workdir: Path = REPO) -> str:
    with pytest.raises(grid.ConfigError) as info:
        grid.validate_config(config, workdir=workdir)
    return str(info.value)


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (
            lambda c: c.update(reference_dir="resources/measurement"),
            ["reference_dir: folder 'resources/measurement' does not exist"],
        ),
        (
            lambda c: c.update(reference_dir="README.md"),
            ["reference_dir: 'README.md' is a file, not a folder"],
        ),
        (
            lambda c: c["public_sources"].update({"mlenergy-v2": "resources/public/mlenergy-v22"}),
            ["public_sources.mlenergy-v2: folder 'resources/public/mlenergy-v22' does not exist"],
        ),
        (
            lambda c: c["upstream_models"].update({"stabilityai/stable-diffusion-2-1": "sd2.1"}),
            ["upstream_models.stabilityai/stable-diffusion-2-1: 'sd2.1' is not a zoo model", "sd21"],
        ),
        (lambda c: c.clear(), ["the config is empty"]),
    ],
    ids=[
        "reference-dir-typo",
        "reference-dir-a-file",
        "public-source-typo",
        "upstream-model-not-in-zoo",
        "empty-config",
    ],
)
def test_config_gaps_are_errors_naming_the_key(
    config: dict[str, Any], change: Callable, needles: list[str]
) -> None:
    change(config)
    msg = config_error(config)
    assert all(n in msg for n in needles), msg


def test_the_shipped_config_names_folders_that_exist(config: dict[str, Any]) -> None:
    grid.validate_config(config, workdir=REPO)


def test_a_mistyped_reference_dir_stops_the_workflow_before_any_job(workflow_copy: Path) -> None:
    with pytest.raises(Exception) as info:  # noqa: B017 - the class comes from the workflow's import
        run_workflow(workflow_copy, config={"reference_dir": "resources/measurement"})
    assert type(info.value).__name__ == "ConfigError"
    assert "reference_dir: folder 'resources/measurement' does not exist" in str(info.value)


# --- architecture files: errors name the file and the key, when the file is loaded ------------------


def tiny(model: str = "tiny-sd") -> dict[str, Any]:
    return yaml.safe_load((zoo.MODELS_DIR / f"{model}.yaml").read_text())


def _set(path: list[str], value: Any) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _del(path: list[str]) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        node = raw
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


def _components_as_list(raw: dict) -> None:
    raw["components"] = [{"name": k, **v} for k, v in raw["components"].items()]


@pytest.mark.parametrize(
    ("model", "change", "needle"),
    [
        (
            "tiny-sd",
            _set(["scheduler", "class"], "diffusers.DDIMSchedulerX"),
            "scheduler.class: diffusers has no class 'DDIMSchedulerX'",
        ),
        (
            "tiny-sd",
            _set(["scheduler", "class"], "diffusers_nope.DDIMScheduler"),
            "scheduler.class: cannot import module 'diffusers_nope'",
        ),
        (
            "tiny-sd",
            _set(["scheduler", "class"], "DDIMScheduler"),
            "scheduler.class must be a dotted class name",
        ),
        ("tiny-sd", _del(["scheduler", "class"]), "scheduler needs a class (scheduler.class)"),
        ("tiny-sd", _set(["scheduler"], "DDIMScheduler"), "scheduler must be a mapping"),
        ("tiny-sd", _set(["latent_stride"], 2.5), "latent_stride must be a positive integer, not 2.5"),
        ("tiny-sd", _set(["latent_stride"], "2"), "latent_stride must be a positive integer, not '2'"),
        ("tiny-sd", _set(["latent_stride"], 0), "latent_stride must be a positive integer, not 0"),
        ("tiny-sd", _set(["patch_size"], True), "patch_size must be a positive integer, not True"),
        (
            "tiny-sd",
            _components_as_list,
            "components must be a mapping (component name -> {stage, class, config}",
        ),
        (
            "tiny-sd",
            _set(["components", "vae"], "diffusers.AutoencoderKL"),
            "component 'vae' must be a mapping",
        ),
        (
            "tiny-sd",
            _set(["components", "vae", "class"], "diffusers.AutoencoderKLX"),
            "components.vae.class: diffusers has no class 'AutoencoderKLX'",
        ),
        (
            "tiny-sd",
            _set(["components", "text_encoder", "config_class"], "transformers.CLIPTextConfigX"),
            "components.text_encoder.config_class: transformers has no class 'CLIPTextConfigX'",
        ),
        (
            "tiny-sd",
            _del(["components", "unet", "class"]),
            "component 'unet' needs a class (components.unet.class)",
        ),
        (
            "tiny-sd",
            _set(["components", "unet", "config"], [1, 2]),
            "components.unet.config must be a mapping",
        ),
        (
            "tiny-sd",
            _set(["components", "text_encoder", "seq_len"], 7.5),
            "components.text_encoder: seq_len must be a positive integer, not 7.5",
        ),
        ("tiny-sd", _set(["guidance_scale"], "high"), "guidance_scale must be a number, not 'high'"),
        ("tiny-sd", _set(["cfg"], "yes"), "cfg must be true or false, not 'yes'"),
        ("tiny-sd", _set(["latent_stride"], 4), "latent_stride is 4, but the VAE 'vae' downsamples by 2"),
        ("tiny-sd3", _set(["patch_size"], 1), "patch_size is 1, but the denoiser 'transformer' patches 2x2"),
        ("tiny-sd3", _set(["max_resolution"], 128), "max_resolution 128 exceeds 64 px"),
        (
            "tiny-sd3",
            _del(["max_resolution"]),
            "max_resolution is missing: the denoiser's pos_embed_max_size 16",
        ),
        (
            "tiny-sd",
            _set(["components", "unet", "config", "cross_attention_dim"], 48),
            "the text embeddings do not fit the denoiser",
        ),
        (
            "tiny-sd",
            _set(["components", "vae", "config", "latent_channels"], 8),
            "the VAE cannot decode them",
        ),
    ],
    ids=[
        "scheduler-missing-class",
        "scheduler-module-absent",
        "scheduler-not-dotted",
        "scheduler-without-class",
        "scheduler-not-a-mapping",
        "stride-float",
        "stride-text",
        "stride-0",
        "patch-bool",
        "components-list",
        "component-not-a-mapping",
        "component-class-absent",
        "config-class-absent",
        "component-without-class",
        "component-config-list",
        "seq-len-float",
        "guidance-text",
        "cfg-text",
        "stride-vs-vae",
        "patch-vs-denoiser",
        "max-resolution-vs-pos-embed",
        "max-resolution-missing",
        "cross-attention-width",
        "latent-channels",
    ],
)
def test_architecture_file_errors_name_the_file_and_key(
    tmp_path: Path, model: str, change: Callable, needle: str
) -> None:
    raw = tiny(model)
    change(raw)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(zoo.ZooError) as info:
        zoo.load_spec(path)
    assert str(info.value).startswith(f"{path}: ") and needle in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (ARCH_SYNTAX, ":4:11: invalid YAML at line 4, column 11"),
        ("", ": the architecture file is empty"),
        ("- a\n- b\n", ": expected a mapping at the top level, not a list"),
    ],
    ids=["yaml-syntax", "empty", "not-a-mapping"],
)
def test_unreadable_architecture_files(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "arch.yaml"
    path.write_text(text)
    with pytest.raises(zoo.ZooError, match=f"^{path}{needle}"):
        zoo.load_spec(path)


def test_an_architecture_error_stops_config_validation(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    raw = tiny()
    raw["latent_stride"] = 2.5
    (models / "tiny-sd.yaml").write_text(yaml.safe_dump(raw))
    config = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
    config["grids"] = {
        "g": {"models": ["tiny-sd"], "resolutions": [32], "steps": [2], "precisions": ["fp32"]}
    }
    with pytest.raises(
        grid.ConfigError,
        match=r"grids\.g\.models: .*tiny-sd\.yaml: latent_stride must be a "
        r"positive integer, not 2\.5",
    ):
        grid.validate_config(config, models_dir=models)


# --- measurement files whose rows contradict their file or the zoo --------------------------------


def _write(path: Path, frame: pd.DataFrame) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    return str(path)


def test_reference_rows_of_another_gpu_kind_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    shipped = _write(tmp_path / "ref" / "h100.parquet", rows(gpu="h200"))
    rc, err = run_cli(
        capsys, "merge-measurements", "--reference", shipped, "--out", str(tmp_path / "m.parquet")
    )
    assert rc == 2
    assert (
        f"{shipped}: row 0 (source=this-workflow, gpu=h200, model=tiny-sd, resolution=32, steps=2, "
        "batch=1, stage=text) has gpu 'h200', but the file's name says gpu 'h100' (12 row(s))"
    ) in one_line(err)
    assert not (tmp_path / "m.parquet").exists()


def test_rows_of_a_model_outside_the_zoo_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shipped = _write(tmp_path / "ref" / "h100.parquet", rows().assign(model="sd16"))
    rc, err = run_cli(
        capsys, "merge-measurements", "--reference", shipped, "--out", str(tmp_path / "m.parquet")
    )
    assert rc == 2 and f"{shipped}: model 'sd16' in row 0" in one_line(err) and "not in the zoo" in err
    rc, err = run_cli(
        capsys,
        "count-flops",
        "--points",
        shipped,
        "--out",
        str(tmp_path / "f"),
        "--ops-out",
        str(tmp_path / "o"),
    )
    assert rc == 2 and f"{shipped}: model 'sd16' in row 0" in one_line(err)


def test_a_local_point_in_the_wrong_folder_is_refused(tmp_path: Path) -> None:
    local = _write(tmp_path / "h100" / "tiny-sd" / "fp16" / "32px_2steps_cfg1_b1.parquet", rows())
    with pytest.raises(
        dataset.DatasetError,
        match=r"has precision 'fp32', but the file's name says precision "
        r"'fp16'",
    ):
        dataset.write_merged([], [local], tmp_path / "m.parquet", models=zoo.available_models())


def test_a_stale_copy_beside_the_shipped_file_is_refused(tmp_path: Path) -> None:
    real = _write(tmp_path / "ref" / "h100.parquet", rows())
    stale = _write(tmp_path / "ref" / "h100-backup.parquet", rows(energy=550.0))
    with pytest.raises(
        dataset.DatasetError, match="has gpu 'h100', but the file's name says gpu 'h100-backup'"
    ):
        dataset.write_merged([real, stale], [], tmp_path / "m.parquet")


def test_nothing_is_written_when_a_table_is_refused(tmp_path: Path) -> None:
    good = _write(tmp_path / "ref" / "h100.parquet", rows())
    out = tmp_path / "m.parquet"
    dataset.write_merged([good], [], out)
    before = out.read_bytes()
    bad = _write(tmp_path / "ref2" / "h100.parquet", rows().assign(gpu="h200"))
    with pytest.raises(dataset.DatasetError):
        dataset.write_merged([bad], [], out)
    assert out.read_bytes() == before, "the merged table of the last good run is kept"


def test_protocol_keys_are_checked_where_the_protocol_is_read() -> None:
    from diffusion_energy.measurement import measure

    with pytest.raises(errors.UsageError, match=r"protocol: unknown key\(s\) \['repeat'\]"):
        measure.Protocol.from_config({"repeat": 3})
    assert grid.protocol_settings(json.dumps({"repeats": 2})) == {"repeats": 2}
    assert copy.deepcopy(grid.gpu_kinds_settings(None)) == {}
