"""Prediction without the workflow: what ships with the package, the Python API, a non-editable install.

That the shipped laws and counts equal a fresh run's is checked with the default
run (tests/test_shipped_data.py); here: the shipped counts are the ones the meta
device gives, only for the architecture file they were made from; the shipped
scheduler answers are the schedulers' own; ``predict_energy`` answers with a
frozen dataclass naming its law, data and laws file; and a wheel installed
elsewhere answers in an empty folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from diffusion_energy import package_data
from diffusion_energy.counting import flops, lookup
from diffusion_energy.models import schedulers, zoo


def test_every_subpackage_is_listed_for_setuptools(repo_root: Path) -> None:
    listed = set(tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folder = repo_root / "workflow"
    found = {".".join(p.parent.relative_to(folder).parts)
             for p in (folder / "diffusion_energy").rglob("__init__.py")}
    assert listed == found | {"diffusion_energy.architectures"}


def test_the_shipped_files_are_there_and_name_the_zoo_files_they_were_made_from(repo_root: Path) -> None:
    assert all(package_data.path(name).is_file() for name in package_data.FILES), "snakemake package_data"
    facts = package_data.zoo_facts()
    for name, sha in facts["architectures"].items():
        assert package_data.file_sha256(repo_root / "config" / "models" / f"{name}.yaml") == sha, \
            f"config/models/{name}.yaml changed since its counts were shipped: snakemake package_data"
    shipped = pd.read_parquet(package_data.path(package_data.FLOPS))
    assert set(shipped["model"]) == set(facts["architectures"])
    usual = {m for m in zoo.available_models() if not zoo.load_spec(m).test_only}
    assert usual <= set(facts["architectures"]), "every zoo architecture is answered without counting"


def test_the_shipped_scheduler_answers_are_the_schedulers_own() -> None:
    facts = package_data.zoo_facts()
    assert facts["diffusers"] == schedulers._diffusers_version()
    keys = {}
    for name in zoo.available_models():
        spec = zoo.load_spec(name)
        if not spec.test_only:
            keys[schedulers.config_key(spec.scheduler_class, spec.scheduler_config)] = spec
    assert set(keys) == set(facts["schedulers"])
    for spec in keys.values():
        config = json.dumps(dict(spec.scheduler_config), sort_keys=True, default=str)
        for steps in (1, 2, 25, 50, 61, 1000):
            asked = schedulers.timesteps(spec.scheduler_class, config, steps, spec.name)
            assert spec.denoiser_evaluations(steps) == asked, (spec.name, steps)
        assert spec.denoiser_evaluations(5000) == schedulers.timesteps(
            spec.scheduler_class, config, 1000, spec.name) + 4000


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)[sorted(frame.columns)]


def test_a_shipped_count_is_the_meta_devices() -> None:
    spec = zoo.load_spec("sd15")
    shapes = [(512, True, 1), (768, True, 1)]
    shipped = lookup.shipped_counts(spec, shapes)
    assert shipped is not None
    table, ops = flops.count_shapes(spec, shapes)
    keys = ["resolution", "frames", "cfg", "batch", "stage", "component"]
    pd.testing.assert_frame_equal(_sorted(shipped[0], keys), _sorted(table, keys), check_dtype=False)
    op_keys = [*keys, "op", "flops", "bytes"]
    pd.testing.assert_frame_equal(_sorted(shipped[1], op_keys), _sorted(ops, op_keys), check_dtype=False)


def test_a_count_is_shipped_only_for_its_own_architecture_file_and_shape(tmp_path: Path) -> None:
    source = zoo.load_spec("sd15").source
    assert source is not None
    edited = tmp_path / "sd15.yaml"
    edited.write_text(source.read_text() + "\n# edited\n")
    assert lookup.shipped_counts(zoo.load_spec(edited), [(512, True, 1)]) is None
    assert lookup.shipped_counts(zoo.load_spec("sd15"), [(512, True, 3)]) is None
    assert lookup.shipped_counts(zoo.load_spec("tiny-sd"), [(32, True, 1)]) is None


def test_predict_energy_answers_with_a_frozen_dataclass(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusion_energy import PredictedEnergy, predict_energy

    monkeypatch.chdir(tmp_path)  # no results/ here: the laws shipped with the package answer
    answer = predict_energy("sd35-medium", resolution=1024, steps=28, gpu="h100", batch=4)
    assert isinstance(answer, PredictedEnergy) and answer.per == "image" and answer.frames == 1
    assert answer.low_j < answer.energy_j < answer.high_j and answer.level == pytest.approx(0.9)
    assert answer.laws_file.startswith(str(package_data.path(package_data.LAWS)))
    assert "shipped with the package" in answer.laws_file and "pooled" in answer.law
    assert "single-GPU points" in answer.data
    assert answer.stack == "diffusers" and answer.source == "mlenergy-v2"
    assert answer.energy_wh == pytest.approx(answer.energy_j / 3600)
    with pytest.raises(dataclasses.FrozenInstanceError):
        answer.energy_j = 0.0  # type: ignore[misc]
    cli = subprocess.run([sys.executable, "-m", "diffusion_energy.cli", "predict", "--model", "sd35-medium",
                          "--resolution", "1024", "--steps", "28", "--gpu", "h100", "--batch", "4", "--json"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(cli.stdout) == answer.as_dict()
    video = predict_energy("cogvideox1.5-5b", steps=50, gpu="h100")
    assert video.per == "video" and video.frames == 81 and video.low_j < video.energy_j < video.high_j
    assert "modalities.json" in video.laws_file and "laws: " in video.text


def test_predict_names_the_workflows_laws_when_the_folder_has_them(tmp_path: Path) -> None:
    laws = tmp_path / "results" / "laws"
    laws.mkdir(parents=True)
    shutil.copy(package_data.path(package_data.LAWS), laws / "laws.json")
    out = subprocess.run([sys.executable, "-m", "diffusion_energy.cli", "predict", "--model", "sd21",
                          "--resolution", "768", "--steps", "25", "--gpu", "a100"],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "laws: results/laws/laws.json (this folder's workflow results)" in out


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_predicts_in_an_empty_folder(tmp_path: Path, repo_root: Path) -> None:
    """``pip install .`` (not editable): the wheel holds the package, its data and the zoo; its copy
    answers from an empty folder, with this environment's dependencies."""
    shutil.copytree(repo_root, tmp_path / "src", ignore=shutil.ignore_patterns(
        ".git", ".venv", "results", "logs", ".snakemake", "build", "*.egg-info", "__pycache__", "docs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(tmp_path / "src"), "-w", str(tmp_path / "dist")], check=True, capture_output=True,
                   timeout=600)
    site, empty = tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "diffusion_energy" / "architectures" / "sd15.yaml").is_file()
    env = {"PYTHONPATH": str(site), "PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    code = ("import diffusion_energy, json; from diffusion_energy import predict_energy; "
            "a = predict_energy('flux-dev', resolution=1024, steps=28, gpu='h100'); "
            "print(json.dumps([diffusion_energy.__file__, a.energy_j, a.laws_file]))")
    run = subprocess.run([sys.executable, "-c", code], cwd=empty, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    where, energy, laws = json.loads(run.stdout)
    assert where.startswith(str(site)) and energy > 0 and laws.startswith(str(site))
    cli = subprocess.run([sys.executable, "-m", "diffusion_energy.cli", "predict", "--model",
                          "wan2.1-t2v-1.3b", "--steps", "50", "--gpu", "h100", "--gpus", "4"],
                         cwd=empty, env=env, capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert f"laws: {site}" in cli.stdout and "J/video" in cli.stdout and "on 4 x h100" in cli.stdout
