"""The documentation: the site builds with ``mkdocs build --strict``; every repository path the README,
the pages, the config, the profiles and the tests name exists (an output under results/ or logs/ is one
the workflow writes); no file outside the repository is cited; the README stays short; the reference
pages name every config key and package module; LICENSE and CITATION.cff are what they claim."""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import io
import json
import re
import subprocess
import sys
import tokenize
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import REPO_ROOT

from diffusion_energy.figures import FIGURE_NAMES

#: Top-level entries that are not the repository's own files.
NOT_REPOSITORY = {".git", ".venv", ".snakemake", ".pytest_cache", ".ruff_cache", "__pycache__", "site",
                  "build", ".whl", "results", "logs", "report.html"}
#: What the workflow writes under results/ and logs/ (fnmatch patterns; ``*`` spans folders).
OUTPUTS = (
    "results/", "logs/",
    "results/public/*.parquet", "results/flops.parquet", "results/flops_ops.parquet",
    "results/measurements/", "results/measurements/*", "results/measurements.parquet",
    "results/energy.parquet", "results/summary.txt", "results/laws/laws.json", "results/laws/modalities.json",
    "results/laws/parallel.json",
    "results/tables/", "results/tables/*.csv", "results/laws/", "results/figures/", "results/figures/*.pdf",
    "results/figures/*.png", "results/benchmarks/*",
    "logs/measure/*", "logs/slurm", "logs/slurm/*", "logs/sources/*", "logs/figures/*", "logs/analysis/*",
    "logs/collect/*", "logs/flops/*", "logs/summary.log", "logs/summary_measurements.log",
    # the measurement campaign's commands (campaign-run, campaign-merge of a simulated run)
    "results/campaign/", "results/campaign/*", "results/simulated-measurements/",
    "results/simulated-measurements/*", "logs/campaign/*",
)
#: Paths named because they must not exist, and why.
ABSENT_ON_PURPOSE = {"profiles/default": "Snakemake loads it into every run, a cluster run too"}
#: The tables the rules write (workflow/rules/fit.smk, modalities.smk).
TABLES = {"laws", "law_terms", "roofline", "anchors_energy", "anchors_laws", "nested_lomo_predictions",
          "nested_lomo_metrics", "nested_logo_predictions", "nested_logo_metrics", "lomo_predictions",
          "lomo_metrics", "lomo_batch_metrics", "logo_predictions", "logo_metrics", "modality_predictions",
          "modality_metrics", "multi_gpu_predictions", "multi_gpu_metrics"}
#: Files outside the repository that must never be cited (the project's shared notes, this machine's
#: folders): a clean clone does not have them.
OUTSIDE = ("DESIGN" + ".md", "NOTES" + ".md", "STYLE" + ".md", "../" + "shared", "/work" + "/")


def top_level() -> list[str]:
    return sorted(p.name for p in REPO_ROOT.iterdir()
                  if p.name not in NOT_REPOSITORY and not p.name.endswith(".egg-info"))


def path_pattern() -> re.Pattern[str]:
    """A path that starts at a top-level folder of the repository (or results/, logs/), not inside a URL
    or another path; templates ({gpu}, <name>, *) are kept whole."""
    roots = "|".join(re.escape(n) for n in [*top_level(), "results", "logs"] if (REPO_ROOT / n).is_dir()
                     or n in ("results", "logs"))
    return re.compile(rf"(?<![\w./~:>}}@-])((?:{roots})/(?:[\w.{{}}<>*,/-]*[\w}}>*/])?)")


#: A Markdown file or a module path named without its folder (``DATASHEET.md``, ``sources/plausibility.py``).
BARE_MD = re.compile(r"(?<![\w./<{-])([\w-]+\.md)\b")
MODULE_PATH = re.compile(r"(?<![\w./<{-])((?:\w+/)+\w+\.py)\b")


def documents() -> dict[str, str]:
    """File -> the text whose paths must exist: README and pages whole, the config and the profiles
    whole, the tests' docstrings and comments (their code builds bad inputs on purpose)."""
    texts = {"README.md": (REPO_ROOT / "README.md").read_text()}
    for path in sorted((REPO_ROOT / "docs").rglob("*.md")):
        texts[str(path.relative_to(REPO_ROOT))] = path.read_text()
    texts["config/config.yaml"] = (REPO_ROOT / "config" / "config.yaml").read_text()
    for path in sorted((REPO_ROOT / "profiles").glob("*/profile.yaml")):
        texts[str(path.relative_to(REPO_ROOT))] = path.read_text()
    for path in sorted((REPO_ROOT / "tests").glob("*.py")):
        texts[str(path.relative_to(REPO_ROOT))] = prose_of(path.read_text())
    return texts


def prose_of(source: str) -> str:
    """The docstrings and comments of a Python file."""
    parts = [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            parts.append(ast.get_docstring(node) or "")
    return "\n".join(parts)


def as_glob(path: str) -> str:
    """Templates become wildcards: ``{gpu}`` and ``<name>`` -> ``*``."""
    return re.sub(r"\{[^}]*\}|<[^>]*>", "*", path)


def missing(path: str) -> str | None:
    """Why a named path is not in the repository (nor an output the workflow writes), or None."""
    pattern = as_glob(path)
    if pattern.startswith(("results/", "logs/")):
        if not any(fnmatch.fnmatchcase(pattern, p) or fnmatch.fnmatchcase(path, p) for p in OUTPUTS):
            return "not an output the workflow writes"
        name = Path(pattern).stem
        if pattern.endswith("/"):
            return None
        if pattern.startswith("results/tables/") and "*" not in name and name not in TABLES:
            return "no rule writes this table"
        if pattern.startswith("results/figures/") and "*" not in name and name not in FIGURE_NAMES:
            return "no such figure"
        return None
    if path in ABSENT_ON_PURPOSE:
        return None if not (REPO_ROOT / path).exists() else f"exists, but {ABSENT_ON_PURPOSE[path]}"
    if "*" in pattern:
        return None if list(REPO_ROOT.glob(pattern.rstrip("/"))) else "matches no file"
    return None if (REPO_ROOT / path).exists() else "no such file"


def named_paths(text: str) -> set[str]:
    return set(path_pattern().findall(text))


def test_path_finder_reads_the_forms_the_docs_use() -> None:
    text = ("`results/measurements/{gpu}/{model}/{precision}/{res}px_{steps}steps_cfg{0,1}_b{batch}.parquet`,"
            " see config/models/<name>.yaml. Not https://github.com/x/resources/y nor <workdir>/logs/slurm/a "
            "(workflow/diffusion_energy/jobsize.py), docs/cluster.md:")
    assert named_paths(text) == {
        "results/measurements/{gpu}/{model}/{precision}/{res}px_{steps}steps_cfg{0,1}_b{batch}.parquet",
        "config/models/<name>.yaml", "workflow/diffusion_energy/jobsize.py", "docs/cluster.md"}
    assert missing("workflow/diffusion_energy/jobsize.py") == "no such file"
    assert missing("docs/cluster.md") == "no such file"
    assert missing("config/models/<name>.yaml") is None
    assert missing("results/measurements/{gpu}/{model}/a.parquet") is None
    assert missing("results/tables/lomo_metric.csv") == "no rule writes this table"
    assert missing("results/figures/energy_vs_flop.pdf") == "no such figure"
    assert missing("results/energies.parquet") == "not an output the workflow writes"
    assert BARE_MD.findall("as in DESIGN.md, not <gpu>.md") == ["DESIGN.md"]


def test_every_path_the_docs_configs_and_tests_name_exists() -> None:
    files = [p for p in REPO_ROOT.rglob("*") if p.is_file() and p.relative_to(REPO_ROOT).parts[0]
             not in NOT_REPOSITORY]
    names = {p.name for p in files}
    modules = {str(p.relative_to(REPO_ROOT)) for p in files if p.suffix == ".py"}
    bad = []
    for doc, text in documents().items():
        bad += [f"{doc}: {path} ({why})" for path in sorted(named_paths(text)) if (why := missing(path))]
        bad += [f"{doc}: {name} (no file of that name)" for name in sorted(set(BARE_MD.findall(text)))
                if name not in names]
        bad += [f"{doc}: {module} (no such module)" for module in sorted(set(MODULE_PATH.findall(text)))
                if not any(m == module or m.endswith("/" + module) for m in modules)]
    assert not bad, "\n".join(bad)


def test_no_file_outside_the_repository_is_cited() -> None:
    suffixes = {".md", ".py", ".yaml", ".yml", ".smk", ".rst", ".toml", ".cff", ".sh", ".txt"}
    texts = [p for p in REPO_ROOT.rglob("*")
             if p.is_file() and (p.suffix in suffixes or p.name == "Snakefile")
             and p.relative_to(REPO_ROOT).parts[0] not in NOT_REPOSITORY and p != Path(__file__)]
    bad = [f"{p.relative_to(REPO_ROOT)}: {name}" for p in texts for name in OUTSIDE
           if name in p.read_text(errors="replace")]
    assert not bad, "state the fact with its original source instead:\n" + "\n".join(bad)


def test_readme_is_short_and_keeps_the_two_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.DOTALL)
    main = ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e . "
            "&& snakemake --cores all --workflow-profile profiles/local")
    assert blocks[0] == main, "the README's first command is the install + main job"
    assert main in (REPO_ROOT / "docs" / "tutorials" / "predict.md").read_text()
    assert "docs/figures/energy_vs_flops.png" in readme


def test_config_reference_names_every_config_key() -> None:
    schema = yaml.safe_load((REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]
    keys = set(props) | set(props["protocol"]["properties"]) | set(props["analysis"]["properties"])
    kind = props["gpu_kinds"]["additionalProperties"]["properties"]
    keys |= set(kind) | set(kind["datasheet"]["properties"])
    page = (REPO_ROOT / "docs" / "reference" / "config.md").read_text()
    assert not [k for k in sorted(keys) if f"`{k}`" not in page and f"`analysis.{k}`" not in page]


def test_layout_names_every_module_of_the_package() -> None:
    page = (REPO_ROOT / "docs" / "reference" / "layout.md").read_text()
    package = REPO_ROOT / "workflow" / "diffusion_energy"
    modules = {p.stem for p in package.rglob("*.py") if not p.stem.startswith("_")}
    assert not [m for m in sorted(modules) if f"`{m}`" not in page]


def load_script(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_validation_page_takes_every_printed_table(tmp_path: Path) -> None:
    readme_tables = load_script("readme_tables")
    page = REPO_ROOT / "docs" / "reference" / "validation.md"
    found = {name: (title, f"| {name} |\n|---|") for name, (title, _) in readme_tables.TABLES.items()}
    written = readme_tables.write_tables(page, found)
    for name in readme_tables.TABLES:
        assert f"<!-- tables:{name} -->\n| {name} |\n|---|\n<!-- /tables:{name} -->" in written
    short = tmp_path / "page.md"
    short.write_text("<!-- tables:lomo -->\nold\n<!-- /tables:lomo -->\n")
    with pytest.raises(SystemExit, match="tables:sources"):
        readme_tables.write_tables(short, found)


def test_license_is_the_apache_license_pyproject_names() -> None:
    text = (REPO_ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text
    assert 'license = { text = "Apache-2.0" }' in (REPO_ROOT / "pyproject.toml").read_text()


def test_citation_file_is_valid_cff_1_2_0() -> None:
    """Against the format's own schema (tests/data/cff/schema-1.2.0.json, citation-file-format 1.2.0)."""
    schema = json.loads((REPO_ROOT / "tests" / "data" / "cff" / "schema-1.2.0.json").read_text())
    cff = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
    jsonschema.validate(cff, schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    assert cff["authors"] == [{"name": "diffusion-energy contributors"}] and cff["license"] == "Apache-2.0"
    assert cff["version"] == tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    ids = {i["value"] for ref in cff["references"] for i in ref.get("identifiers", [])}
    assert {"arXiv:2511.17031", "arXiv:2505.06371"} <= ids


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """Every page in the nav, every link and anchor resolved, the API reference read from the docstrings,
    the CLI help and table columns printed from the code (scripts/docs_hooks.py)."""
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    cli = (tmp_path / "reference" / "cli" / "index.html").read_text()
    assert "usage: diffusion-energy predict" in cli
    api = (tmp_path / "reference" / "api" / "laws" / "index.html").read_text()
    assert "diffusion_energy.laws.roofline" in api
    outputs = (tmp_path / "reference" / "outputs" / "index.html").read_text()
    assert "counter_period_s" in outputs
    assert (tmp_path / "figures" / "energy_vs_flops.png").is_file()
