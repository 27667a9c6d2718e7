"""The conda environments of the rule families pin what pyproject.toml pins; the GPU
machine's prepared script calls only what the package has."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

#: PyPI name -> conda-forge name, where they differ.
CONDA_NAMES = {"torch": "pytorch"}
#: Conda packages that are the environment itself, not a dependency of the package.
CONDA_BASE = {"python", "pip"}
ENVS = ("analysis", "gpu")


def pyproject(repo_root: Path) -> dict:
    return tomllib.loads((repo_root / "pyproject.toml").read_text())


def pinned(repo_root: Path) -> dict[str, SpecifierSet]:
    """pyproject.toml's dependencies: canonical name -> specifier."""
    reqs = [Requirement(r) for r in pyproject(repo_root)["project"]["dependencies"]]
    return {canonicalize_name(r.name): r.specifier for r in reqs}


def env_file(repo_root: Path, env: str) -> dict:
    return yaml.safe_load((repo_root / "envs" / f"{env}.yaml").read_text())


def split_env(env: dict) -> tuple[list[str], list[str]]:
    """(conda specs, pip lines) of an environment file."""
    conda, pip = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip.extend(dep["pip"])
        else:
            conda.append(str(dep))
    return conda, pip


def conda_spec(spec: str) -> tuple[str, SpecifierSet, str]:
    """``"pytorch >=2.11 cpu_*"`` -> (name, version specifier, build); ``python=3.11`` too."""
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(=?[<>=!~]*[^\s]*)?\s*(\S*)", spec.strip())
    assert m, f"cannot parse conda spec {spec!r}"
    name, version, build = m.group(1), (m.group(2) or ""), m.group(3)
    if version.startswith("=") and not version.startswith("=="):
        version = f"=={version[1:]}.*" if version.count(".") < 2 else f"=={version[1:]}"
    return name, SpecifierSet(version.replace(" ", "")), build


def env_requirements(env: dict) -> dict[str, SpecifierSet]:
    """Every package an environment installs (PyPI names), with its specifier."""
    conda, pip = split_env(env)
    found: dict[str, SpecifierSet] = {}
    to_pypi = {v: k for k, v in CONDA_NAMES.items()}
    for spec in conda:
        name, version, _ = conda_spec(spec)
        if name in CONDA_BASE:
            continue
        key = canonicalize_name(to_pypi.get(name, name))
        assert key not in found, f"{key} listed twice"
        found[key] = version
    for line in pip:
        if line.startswith("-"):
            continue
        req = Requirement(line)
        key = canonicalize_name(req.name)
        assert key not in found, f"{key} listed twice"
        found[key] = req.specifier
    return found


@pytest.mark.parametrize("env", ENVS)
def test_env_pins_match_pyproject(repo_root: Path, env: str) -> None:
    assert env_requirements(env_file(repo_root, env)) == pinned(repo_root)


@pytest.mark.parametrize("env", ENVS)
def test_env_leaves_the_package_to_the_checkout(repo_root: Path, env: str) -> None:
    """Snakemake copies env files before creating them, so a relative ``-e ..`` would
    point elsewhere; the rules put the checkout's package on PYTHONPATH instead."""
    _, pip = split_env(env_file(repo_root, env))
    assert not [line for line in pip if line.startswith("-e")]
    common = (repo_root / "workflow" / "rules" / "common.smk").read_text()
    assert "shell.prefix(" in common and "PYTHONPATH" in common


@pytest.mark.parametrize("env", ENVS)
def test_env_python_satisfies_requires_python(repo_root: Path, env: str) -> None:
    conda, _ = split_env(env_file(repo_root, env))
    python = [conda_spec(s) for s in conda if conda_spec(s)[0] == "python"]
    assert len(python) == 1
    version = str(python[0][1]).removeprefix("==").removesuffix(".*")
    assert Version(version) in SpecifierSet(pyproject(repo_root)["project"]["requires-python"])


def test_analysis_env_has_cpu_torch_and_gpu_env_cuda_torch(repo_root: Path) -> None:
    conda, _ = split_env(env_file(repo_root, "analysis"))
    builds = [conda_spec(s)[2] for s in conda if conda_spec(s)[0] == "pytorch"]
    assert builds and builds[0].startswith("cpu")
    conda, pip = split_env(env_file(repo_root, "gpu"))
    assert not [s for s in conda if conda_spec(s)[0] == "pytorch"], "PyPI's torch wheels are CUDA builds"
    assert any(canonicalize_name(Requirement(p).name) == "torch" for p in pip if not p.startswith("-"))


def test_conda_spec_parser() -> None:
    assert conda_spec("pytorch >=2.11 cpu_*") == ("pytorch", SpecifierSet(">=2.11"), "cpu_*")
    assert conda_spec("python=3.11") == ("python", SpecifierSet("==3.11.*"), "")
    assert conda_spec("pip") == ("pip", SpecifierSet(""), "")


def test_the_device_script_calls_what_the_package_has(repo_root: Path) -> None:
    """scripts/device/ runs once on a lent GPU, with no second try: a stale import or
    subcommand there would cost the whole loan."""
    from diffusion_energy.cli.main import build_parser

    text = (repo_root / "scripts/device/campaign_run.sh").read_text()
    imports = re.findall(r"from (diffusion_energy[\w.]*) import (\w+)", text)
    for module, name in imports:
        exec(f"from {module} import {name}", {})  # raises ImportError if it moved
    commands = set(re.findall(r"(?:diffusion_energy\.cli|\bde) ([a-z][a-z-]+)", text))
    known = set(build_parser()._subparsers._group_actions[0].choices)
    assert {"campaign-run", "gpu-check"} <= commands <= known, commands - known
    options = {c: {o for a in build_parser()._subparsers._group_actions[0].choices[c]._actions
                   for o in a.option_strings} for c in commands}
    joined = text.replace("\\\n", " ")  # continued lines
    for command, flags in re.findall(r"diffusion_energy\.cli ([a-z-]+)([^\n]*)", joined):
        used = set(re.findall(r"(--[a-z][a-z-]+)", flags))
        assert used <= options[command], (command, used - options[command])
