"""MkDocs hooks (mkdocs.yml ``hooks:``): pages that print what the code says, so no option is typed by hand.

``<!-- cli-help -->`` in a page becomes the ``--help`` of ``diffusion-energy`` and of every subcommand,
taken from the parser the command line builds (``diffusion_energy.cli.main.build_parser``).
``<!-- columns: module.NAME -->`` becomes a table of the columns a module declares: a dict of
column -> meaning (``diffusion_energy.sources.schema.MEASUREMENT_COLUMNS``) or a list of names.
``<!-- api: diffusion_energy.laws -->`` becomes one mkdocstrings block per module of that package,
found in its folder, so a module added or renamed is documented without editing a page.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
from pathlib import Path
from typing import Any

CLI_MARKER = "<!-- cli-help -->"
COLUMNS_MARKER = re.compile(r"<!-- columns: ([\w.]+)\.(\w+) -->")
API_MARKER = re.compile(r"<!-- api: ([\w.]+) -->")
#: Where the package's source lives (mkdocs.yml gives mkdocstrings the same path).
PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "workflow"
#: Help is wrapped at this width whatever the terminal that builds the site.
HELP_COLUMNS = "100"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference() -> str:
    """The top-level help, then one section per subcommand with its help as printed."""
    os.environ["COLUMNS"] = HELP_COLUMNS
    from diffusion_energy.cli.main import build_parser

    parser = build_parser()
    parts = ["```text", parser.format_help().rstrip(), "```"]
    for name, sub in _subcommands(parser).items():
        parts += ["", f"## `{name}`", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(parts)


def columns_table(module: str, name: str) -> str:
    """A markdown table of ``module.name``: column and meaning, or the columns in order."""
    columns = getattr(importlib.import_module(module), name)
    if isinstance(columns, dict):
        rows = [f"| `{col}` | {meaning.replace('|', '/')} |" for col, meaning in columns.items()]
        return "\n".join(["| column | meaning |", "|---|---|", *rows])
    return "\n".join(["| column |", "|---|", *(f"| `{col}` |" for col in columns)])


def modules_of(package: str) -> list[str]:
    """Every module of ``package`` (not its subpackages' modules), in name order, from its folder."""
    folder = PACKAGE_ROOT.joinpath(*package.split("."))
    names = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    return [f"{package}.{name}" for name in names]


def api_blocks(package: str) -> str:
    """The package's own docstring (where it has one), then each module's members."""
    init = PACKAGE_ROOT.joinpath(*package.split("."), "__init__.py")
    blocks = []
    if init.read_text().lstrip().startswith('"""'):
        blocks.append(f"::: {package}\n    options:\n      members: false\n      show_root_heading: false")
    blocks += [f"::: {module}" for module in modules_of(package)]
    return "\n\n".join(blocks)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    markdown = API_MARKER.sub(lambda m: api_blocks(m.group(1)), markdown)
    return COLUMNS_MARKER.sub(lambda m: columns_table(m.group(1), m.group(2)), markdown)
