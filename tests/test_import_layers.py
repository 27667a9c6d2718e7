"""Imports run downward: no circle between the package's modules, no arrow up between its stages.

The imports are read from the source (``ast``), those inside functions too (a
lazy import up is still an arrow up); only ``if TYPE_CHECKING:`` blocks are left
out. A stage may import any stage below it, never one above; inside a stage
(``models``, ``sources``, ...) modules import each other, without a circle.
Registries (pipeline families, source readers) are filled by the modules that
register, which import the registry, never the other way round.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "workflow" / "diffusion_energy"

#: The stages from the bottom up: each imports only those before it (``diffusion_energy`` itself,
#: whose ``__init__`` offers the Python API, is on top).
LAYERS = ("errors", "package_data", "atomic", "concurrent_runs", "gpu_kinds", "models", "sources", "counting",
          "grid", "measurement", "laws", "figures", "prediction", "run_summary", "cli", "__init__")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _nodes(ast.Module(body=[child], type_ignores=[])))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _nodes(node)


def imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name imported from a package counts as its
    submodule where one exists, else as the package)."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        targets: set[str] = set()
        for node in _nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("diffusion_energy")}
                continue
            base = node.module or ""
            if node.level:
                prefix = here[: len(here) - (node.level - 1)]
                base = ".".join(prefix + ([node.module] if node.module else []))
            if not base.startswith("diffusion_energy"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
        edges[name] = {t for t in targets if t in known and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles (strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_is_in_a_stage() -> None:
    assert {stage(m) for m in modules()} <= set(LAYERS)


def test_no_import_circles() -> None:
    assert cycles(imports()) == []


def test_imports_run_downward() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    up = sorted(f"{a} -> {b}" for a, targets in imports().items() for b in targets
                if stage(a) != stage(b) and rank[stage(b)] > rank[stage(a)])
    assert up == []


def test_the_registries_are_filled_by_the_modules_that_register() -> None:
    from diffusion_energy.models import families
    from diffusion_energy.sources import importing, upstream

    edges = imports()
    readers = {"mlenergy_v2", "mlenergy_v3", "mlenergy_v3_video", "quoted"}
    for reader in readers:
        assert f"diffusion_energy.sources.{reader}" in edges["diffusion_energy.sources.importing"]
        assert "diffusion_energy.sources.upstream" in edges[f"diffusion_energy.sources.{reader}"]
    assert set(importing.readers()) == {"mlenergy-v2", "mlenergy-v3", "mlenergy-v3-video", "quoted-figures"}
    assert importing.readers() == upstream.READERS
    family_imports = {t for m, ts in edges.items() if m.startswith("diffusion_energy.models.families")
                      for t in ts}
    assert "diffusion_energy.models.zoo" not in family_imports
    assert {"sd", "flux", "wan"} <= set(families.names())


def test_the_checker_sees_a_circle_and_an_arrow_up() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges = imports()
    assert "diffusion_energy.gpu_kinds" in edges["diffusion_energy.sources.importing"]
    assert "diffusion_energy.sources.dataset" in edges["diffusion_energy.counting.features"]
