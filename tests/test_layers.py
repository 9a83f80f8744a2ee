"""The house's layers (docs/architecture.md): who may import whom, and no import cycles.

Run alone with `./run test tests/test_layers.py`. Imports are read from the source with `ast`
(module level and inside functions; `if TYPE_CHECKING:` blocks are annotations, not imports).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("pipeline", "assets", "resources")

# Layer -> module prefixes in it; lower layers first. A module may import its own layer and
# the layers listed as allowed for it, nothing else of ours.
LAYERS: dict[str, tuple[str, ...]] = {
    "core": ("pipeline.core", "pipeline"),  # `pipeline` itself: the package marker, empty
    "storage": ("pipeline.storage",),
    "settings": ("pipeline.settings",),
    "services": ("pipeline.uploads", "pipeline.uploader", "pipeline.sample", "pipeline.reprocess"),
    "dagster": ("resources", "assets", "pipeline.definitions", "pipeline.jobs",
                "pipeline.partitions", "pipeline.sensors", "pipeline.schedules"),
    "interfaces": ("pipeline.cli", "pipeline.api", "pipeline.demo"),
}
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "storage": {"core", "storage"},
    "settings": {"core", "settings"},
    "services": {"core", "storage", "settings", "services"},
    "dagster": {"core", "storage", "settings", "services", "dagster"},
    "interfaces": {"core", "storage", "settings", "services", "dagster", "interfaces"},
}
# Only these layers may import Dagster (the core, storage and services run in notebooks and on
# dask workers without it).
DAGSTER_LAYERS = {"dagster", "interfaces"}


def modules() -> dict[str, Path]:
    found = {}
    for top in OURS:
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def layer_of(module: str) -> str:
    best = max(((prefix, layer) for layer, prefixes in LAYERS.items() for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".") or
                module.startswith(prefix + "_") and prefix != "pipeline"), key=lambda p: len(p[0]), default=None)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py "
                             "and to docs/architecture.md")
    return best[1]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in `path`, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(nodes: list[ast.stmt] | list[ast.AST]) -> Iterator[tuple[str, int]]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.orelse)
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, node.lineno
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    yield (f"{base}.{alias.name}" if f"{base}.{alias.name}" in ALL else base), node.lineno
            yield from walk(list(ast.iter_child_nodes(node)))

    yield from walk(ast.parse(path.read_text()).body)


ALL = modules()


def ours(name: str) -> str | None:
    """The module of ours that `name` refers to (the longest known prefix), or None."""
    while name:
        if name in ALL:
            return name
        name = name.rpartition(".")[0]
    return None


def test_layers__every_module_imports_only_what_its_layer_may() -> None:
    problems = []
    for module, path in ALL.items():
        layer = layer_of(module)
        for name, line in imports(path, module):
            where = f"{path.relative_to(REPO)}:{line}"
            if name.split(".")[0] == "dagster" or name.startswith("dagster_"):
                if layer not in DAGSTER_LAYERS:
                    problems.append(f"{where}: the {layer} layer imports {name}")
                continue
            target = ours(name)
            if target is not None and layer_of(target) not in ALLOWED[layer]:
                problems.append(f"{where}: {module} ({layer}) imports {target} ({layer_of(target)})")
    assert problems == [], "\n".join(problems)


def test_layers__no_import_cycles() -> None:
    graph = {m: {t for n, _ in imports(p, m) if (t := ours(n)) and t != m} for m, p in ALL.items()}
    # A package imports its own submodules in __init__ (re-exports); that is not a cycle.
    for module in graph:
        graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(("module", "layer"), [
    ("pipeline.core.mosaic", "core"), ("pipeline.storage.s3", "storage"),
    ("resources.object_store", "dagster"), ("pipeline.cli", "interfaces"),
])
def test_layers__modules_are_placed(module: str, layer: str) -> None:
    assert layer_of(module) == layer
