"""Messages that name the right thing, and counts that do not wrap round.

Each case feeds one bad input to the command (in process) and asserts the one line names
the file the user gave or must fix: the output rather than its temporary file, models.json
rather than a point file, the file of an unknown column, the table given in the wrong place,
the folder without points, the config file's line and column. And FLOPs per image past
int64's 9.2e18 stay positive, so such a point is checked (and left out with its reason)
rather than dropped without a word.
"""

from __future__ import annotations

import errno
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import watched
from test_bad_inputs import one_line, run_cli
from test_dataset import rows
from test_sources import CONFIG, REPO, refused, v2  # noqa: F401 - v2 is a fixture

from diffusion_energy import atomic, errors
from diffusion_energy.laws import exclusions
from diffusion_energy.sources import dataset, gpu_datasheets, importing

# --- the output, not its temporary file --------------------------------------------------------------


def test_a_failed_write_names_the_output_not_its_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "energy.parquet"

    def full_disk(self: pd.DataFrame, path: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk)
    with pytest.raises(OSError) as err:
        atomic.write_parquet(pd.DataFrame({"a": [1]}), out)
    assert err.value.filename == str(out)
    assert errors.describe(err.value) == f"cannot write {out}: no space left on the disk"
    assert not list(tmp_path.iterdir())  # the temporary file is gone


def test_a_folder_that_refuses_the_temporary_file_is_named_as_the_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "laws.json"

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".laws.json.x1y2.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OSError) as err:
        atomic.write_text("{}", out)
    assert errors.describe(err.value) == f"permission denied: {out}"


# --- the file to fix ---------------------------------------------------------------------------------


def test_a_model_missing_from_models_json_names_models_json(v2: Path) -> None:  # noqa: F811
    models = v2 / "text-to-image" / "models.json"
    data = json.loads(models.read_text())
    del data["stabilityai/stable-diffusion-2-1"]
    models.write_text(json.dumps(data))
    message = refused(v2, "no resolution for 'stabilityai/stable-diffusion-2-1'")
    assert message.startswith(f"{models}: no resolution for 'stabilityai/stable-diffusion-2-1' (needed "
                              f"by {v2 / 'text-to-image'}/"), message


def test_an_unknown_column_names_its_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "published.parquet"
    rows().assign(joules=1.0).to_parquet(path)
    rc, err = run_cli(capsys, "merge-measurements", "--published", str(path),
                      "--out", str(tmp_path / "m.parquet"))
    assert rc == 2
    assert f"error: {path}: unknown measurement column(s) ['joules']" in one_line(err)


def test_collect_given_a_table_that_is_not_a_flops_table(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    measurements = tmp_path / "measurements.parquet"
    rows().to_parquet(measurements)
    rc, err = run_cli(capsys, "collect", "--measurements", str(measurements), "--flops", str(measurements),
                      "--out", str(tmp_path / "energy.parquet"))
    assert rc == 2
    assert one_line(err).startswith(f"diffusion-energy collect: error: {measurements}: not a FLOPs table "
                                    "(results/flops.parquet, written by `count-flops`): no column(s) ")
    assert "(it is an energy table)" in err


@pytest.mark.parametrize(
    ("command", "swap", "needle"),
    [
        ("crossval", "--flops", "{energy}: not a FLOPs table (results/flops.parquet, written by "),
        ("crossval", "--ops", "{flops}: not a per-op table (results/flops_ops.parquet): no column(s) op, "),
        ("fit", "--lomo-predictions", "{csv}: not a predictions table of `crossval`: no column(s) target, "
                                      "candidate, held_out, measured_j, predicted_j"),
        ("anchors", "--published", "{csv}: not the published anchors table (resources/anchors/"),
        ("figure", "--metrics", "{csv}: not a metrics table of `crossval`: no column(s) target, candidate"),
    ],
)
def test_a_table_given_in_anothers_place_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture, command: str, swap: str, needle: str) -> None:
    energy, flops, csv = tmp_path / "energy.parquet", tmp_path / "flops.parquet", tmp_path / "other.csv"
    dataset.collect_energy(rows(), flops_table()).to_parquet(energy)
    flops_table().to_parquet(flops)
    pd.DataFrame({"x": [1]}).to_csv(csv, index=False)
    a, b, c, d, e = (str(tmp_path / f"{n}.csv") for n in "abcde")
    args = {
        "crossval": ["--energy", energy, "--flops", flops, "--ops", tmp_path / "ops.parquet",
                     "--lomo-predictions", a, "--lomo-metrics", b, "--lomo-batch-metrics", c,
                     "--logo-predictions", d, "--logo-metrics", e,
                     "--nested-lomo-predictions", a, "--nested-lomo-metrics", b,
                     "--nested-logo-predictions", d, "--nested-logo-metrics", e],
        "fit": ["--energy", energy, "--lomo-predictions", a, "--lomo-metrics", b, "--laws", c,
                "--laws-table", d, "--terms-table", e, "--roofline-table", a],
        "anchors": ["--published", REPO / "resources/anchors/published.csv", "--energy", energy,
                    "--laws", a, "--energy-out", b, "--laws-out", c],
        "figure": ["lomo_predicted_vs_measured", "--metrics", a, "--out", tmp_path / "f.png"],
    }[command]
    args = [str(x) for x in args]
    args[args.index(swap) + 1] = str({"--flops": energy, "--ops": flops}.get(swap, csv))
    if command == "fit":  # the metrics it reads beside the predictions
        pd.DataFrame(columns=["target", "candidate", "gpu", "held_out", "p90_ape"]).to_csv(b, index=False)
    rc, err = run_cli(capsys, command, *args)
    assert rc == 2
    assert needle.format(energy=energy, flops=flops, csv=csv) in one_line(err), err


def flops_table(model: str = "tiny-sd", per_step: float = 2e12) -> pd.DataFrame:
    """A FLOPs table of one shape: text encoder and VAE once per image, the denoiser once per step."""
    base = {"model": model, "architecture": "unet", "family": "sd", "resolution": 32, "cfg": True, "batch": 1,
            "params": 1000, "params_nonembedding": 900, "call_batch": 2, "tokens": 77, "flops_analytic": 0,
            "kernels": 100, "bytes": 1000}
    return pd.DataFrame([
        base | {"stage": "text", "component": "text_encoder", "calls": 2, "per": "image", "flops": int(1e9)},
        base | {"stage": "denoise", "component": "unet", "calls": 1, "per": "step", "flops": int(per_step)},
        base | {"stage": "vae", "component": "vae", "calls": 1, "per": "image", "flops": int(3e9)},
    ])


def test_a_figure_drawn_from_a_flops_table_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = tmp_path / "flops.parquet"
    flops_table().to_parquet(table)
    rc, err = run_cli(capsys, "figure", "energy_vs_flops", "--energy", str(table), "--out",
                      str(tmp_path / "f.png"))
    assert rc == 2
    assert one_line(err) == (f"diffusion-energy figure: error: {table}: not an energy table "
                             "(results/energy.parquet, written by `collect`): no column(s) gpu, status, "
                             "energy_j (it is a FLOPs table: `collect` joins it with the measurements into "
                             "results/energy.parquet)")


def test_package_reference_on_a_folder_without_points_names_it(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc, err = run_cli(capsys, "package-reference", "--gpu", "h100", "--measurements", str(tmp_path),
                      "--out", str(tmp_path / "out"), "--config", str(REPO / "config" / "config.yaml"))
    assert rc == 2
    assert one_line(err) == (f"diffusion-energy package-reference: error: {tmp_path}: no point files of GPU "
                             f"kind 'h100' to package (looked for {tmp_path / 'h100'}/<model>/<precision>/"
                             "*.parquet)")


def test_the_quoted_sources_rows_record_a_relative_upstream_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same run in another folder writes the same table: no absolute path in upstream_file."""
    monkeypatch.chdir(REPO)
    frame = importing.import_source(CONFIG["public_sources"]["paper-2511.17031"], CONFIG["upstream_models"],
                                    CONFIG["gpu_kinds"])
    assert set(frame["upstream_file"].str.split(" line ").str[0]) == {"resources/anchors/published.csv"}


def test_a_yaml_error_in_the_workflow_config_gives_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("measure_gpus: auto\ngrids:\n  main: {models: [sd15\n"
                                                     "reference_dir: resources/measurements\n")
    proc = watched.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
                        "--directory", str(tmp_path)])
    said = proc.stdout + proc.stderr  # Snakemake prints a Snakefile's error on stdout
    assert proc.returncode != 0
    assert ("config/config.yaml:4:14: invalid YAML at line 4, column 14: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence that began at line 3, column 18)") in said, said[-2000:]


# --- counts past int64 ------------------------------------------------------------------------------


def test_flops_per_image_past_int64_stay_positive() -> None:
    points = pd.DataFrame([{"model": "tiny-sd", "resolution": 32, "cfg": True, "batch": 1, "steps": 10**7,
                            "precision": "fp16"}])
    costs = dataset.per_image_costs(points, flops_table(per_step=2e12))
    assert float(costs["flops"].iloc[0]) == pytest.approx(2e12 * 10**7 + 2e9 + 3e9, rel=1e-12)
    assert float(costs["flops"].iloc[0]) > 2**63


def test_a_point_with_a_huge_step_count_is_checked_and_listed_not_dropped() -> None:
    measured = rows(gpu="h100").assign(steps=10**7)
    energy = dataset.collect_energy(measured, flops_table(per_step=2e12))
    assert energy["flops"].dtype == np.float64 and float(energy["flops"].iloc[0]) > 2**63
    kept, left = exclusions.split(energy.assign(source="this-workflow"),
                                  gpu_datasheets.datasheets(CONFIG["gpu_kinds"]))
    assert kept.empty
    (line,) = left["all"]
    assert line.startswith("tiny-sd on h100 (this-workflow), 32 px, 10,000,000 steps, fp32, batch 1: "
                           "impossible on h100: "), line
    assert "faster than 1 x the datasheet peak 66.9 TFLOP/s" in line
