"""The package's layers, as ``docs/architecture.md`` draws them: no module imports a layer above its own, frontends
do not import each other's groups, and no import cycle exists anywhere.

Every ``import`` and ``from ... import`` of the package counts, inside functions too (a function-level import is
still a dependency, only a later one); imports under ``if TYPE_CHECKING:`` do not (annotations only). Importing
``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` too; those implicit parent imports are Python's, not the
module's, and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "rerank_plugins"
ROOT = Path(__file__).resolve().parents[2]

# Each layer: its rank (imports go to a lower rank, or stay inside the same group) and the modules in it, by
# prefix. A module belongs to the group of its longest matching prefix.
LAYERS: dict[str, tuple[int, tuple[str, ...]]] = {
    # plain data and checks; the request types; the batching policy. No torch at import.
    "base": (
        0,
        (
            "checks",
            "hub",
            "quiet",
            "registry",
            "windows",
            "cache",
            "core.requests",
            "core.batching",
            "scoring.truncation",
            "scoring.padding",
        ),
    ),
    # what a family is (FamilySpec, resolution) and the families' modules: the maths.
    "families": (1, ("families", "resolution", "scoring", "quantization", "backends")),
    # the request core: the one scoring loop and the queue of concurrent requests.
    "core": (2, ("core",)),
    # the model: CrossEncoder, the package's root (which re-exports it), sentence-transformers' evaluator with a
    # listwise model, the model card that checks a trainer's data (with training.checks), loading one for a frontend.
    "model": (3, ("cross_encoder", "", "evaluation", "model_card", "training.checks", "loading", "pair_requests")),
    # frontends: each turns its own input into requests.
    "frontends": (4, ("adapters", "langchain", "llama_index", "haystack", "trec", "ray", "serve")),
    # beside the frontends: training objectives and offline test models (no frontend imports them).
    "tools": (4, ("training", "testing")),
    # the command line, on top of everything.
    "cli": (5, ("cli", "__main__")),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports (a ``from X import y`` of a submodule ``y`` counts as ``X.y``)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names if alias.name.split(".")[0] == PACKAGE)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[: len(package) - (child.level - 1)]
                    base = ".".join([*package, *([base] if base else [])])
                if base.split(".")[0] == PACKAGE:
                    for alias in child.names:
                        submodule = f"{base}.{alias.name}"
                        found.add(submodule if submodule in known else base)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    found.discard(name)
    return found


def layer_of(name: str) -> str:
    relative = name.removeprefix(PACKAGE).removeprefix(".")
    best, best_length = None, -1
    for layer, (_, prefixes) in LAYERS.items():
        for prefix in prefixes:
            matches = relative == prefix or (prefix and relative.startswith(prefix + "."))
            if matches and len(prefix) > best_length:
                best, best_length = layer, len(prefix)
    assert best is not None, f"{name} is in no layer: add it to LAYERS here and to docs/architecture.md"
    return best


GRAPH = {name: imports_of(name, path, set(modules())) for name, path in modules().items()}


def test_every_module_has_a_layer() -> None:
    unplaced = []
    for name in GRAPH:
        try:
            layer_of(name)
        except AssertionError:
            unplaced.append(name)
    assert not unplaced, f"modules in no layer (add them to LAYERS and docs/architecture.md): {unplaced}"


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for name, imported in sorted(GRAPH.items()):
        layer = layer_of(name)
        rank = LAYERS[layer][0]
        for target in sorted(imported):
            other = layer_of(target)
            if LAYERS[other][0] > rank or (LAYERS[other][0] == rank and other != layer):
                upward.append(f"{name} ({layer}) imports {target} ({other})")
    assert not upward, "\n".join(upward)


def test_no_import_cycle() -> None:
    """Tarjan's strongly connected components: any with more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in GRAPH:
                continue
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            connect(node)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from rerank_plugins.cli import main\n", {"rerank_plugins.cli"}),
        ("def f():\n    from rerank_plugins import cli\n", {"rerank_plugins.cli"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import rerank_plugins.cli\n", set()),
        ("from . import options\n", {"rerank_plugins.serve.options"}),
    ],
)
def test_the_import_reader_sees_what_it_must(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    known = {"rerank_plugins.cli", "rerank_plugins.serve.options"}
    assert imports_of("rerank_plugins.serve.module", path, known) == expected


def test_no_private_name_is_imported_from_another_module() -> None:
    """A name starting with ``_`` is its module's own: another module that needs it needs a public name."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                found += [
                    f"{name}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not found, found
