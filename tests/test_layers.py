"""The package's layers, checked by reading every module's imports with `ast` (nothing is imported).

Layers, lowest first. A module may import from its own layer and from the layers below, never from above:

0. ground floor: `llama3med.io` (medical image files, de-identification, JSONL, atomic writes) and the
   top-level helpers that import nothing of the package: `folders` (model folders, the cache and data-root
   variables), `extras` (optional dependencies), `progress`, `runtime` (process settings), `generation`
   (decoding settings) and `llama3med/__init__.py`;
1. `llama3med.model`: configuration, modeling, processing, the builders, presets, pretrained weights, the feature
   caches and the Auto-class registration;
2. `llama3med.api`: the public Python API over a model folder (load, ask, chat, batches). It is its own layer,
   not a peer of the applications: it uses the model only, and `eval` and `serve` build on it;
3. the applications, peers of one another: `train`, `eval`, `serve`, `instruct`. A peer imports another peer
   only along an edge listed in `PEER_IMPORTS`, so that each such dependency is a decision and the peers stay
   acyclic (today: `serve` uses `eval`'s benchmark loaders for `llama3med predict`);
4. `llama3med.experiments`: the probe data set, the demo, the scales experiment, the linear probe;
5. `llama3med.cli`, the `llama3med` command;
6. `llama3med/__main__.py` (`python -m llama3med`), which only runs the command.

Every import counts: at module level, inside functions (the lazy imports that keep the CLI fast) and under
`if TYPE_CHECKING:`, since each is a dependency a reader has to follow. A new subpackage or top-level module
fails `test_every_part_of_the_package_has_a_layer` until it is placed here.

Beyond layering: no import cycle between the parts above (subpackages and top-level modules), nor between
modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "llama3med"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

LAYERS: dict[str, int] = {
    "io": 0, "folders": 0, "extras": 0, "progress": 0, "runtime": 0, "generation": 0, "__init__": 0,
    "model": 1,
    "api": 2,
    "train": 3, "eval": 3, "serve": 3, "instruct": 3,
    "experiments": 4,
    "cli": 5,
    "__main__": 6,
}
PEER_IMPORTS = {("serve", "eval")}


@dataclass(frozen=True)
class Import:
    """One `import` statement's target in module `importer`, as a dotted module (or module.name) path."""

    importer: str
    target: str
    line: int


def module_name(path: Path) -> str:
    """`llama3med/model/modeling.py` -> `llama3med.model.modeling`; a package's `__init__.py` -> the package."""
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(source: str, module: str, is_package: bool) -> Iterator[Import]:
    """Every import of `source` (module-level, in functions, under TYPE_CHECKING), relative ones resolved.
    `from a.b import c` yields `a.b.c` (c may be a module or a name in a.b; `part_of` handles both)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield Import(module, f"{base}.{alias.name}" if alias.name != "*" else base, node.lineno)


def package_modules() -> dict[str, Path]:
    """{dotted module name: file} for every module of the package."""
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def package_imports() -> list[Import]:
    """Imports of package modules by package modules (third-party ones dropped)."""
    found = []
    for module, path in package_modules().items():
        for imported in imports_in(path.read_text(encoding="utf-8"), module, path.name == "__init__.py"):
            if imported.target == PACKAGE or imported.target.startswith(PACKAGE + "."):
                found.append(imported)
    return found


def part_of(dotted: str) -> str:
    """The layered part a dotted path belongs to: `llama3med.model.x` -> `model`, `llama3med.api` -> `api`,
    `llama3med` or `llama3med.__version__` -> `__init__`."""
    parts = dotted.split(".")
    if len(parts) == 1:
        return "__init__"
    name = parts[1]
    if (PACKAGE_DIR / name).is_dir() or (PACKAGE_DIR / f"{name}.py").is_file():
        return name
    return "__init__"  # a name defined in llama3med/__init__.py


def imported_module(dotted: str, modules: dict[str, Path]) -> str:
    """The module an import target names: itself, or for `from m import name`, m."""
    return dotted if dotted in modules else dotted.rpartition(".")[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return package_imports()


def test_the_walker_sees_lazy_type_checking_and_relative_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import llama3med.io.images\n"
        "from . import sibling\n"
        "from ..model.modeling import Model\n"
        "if TYPE_CHECKING:\n"
        "    from llama3med.train.recipe import Recipe\n"
        "def later():\n"
        "    from llama3med.cli import main\n"
    )
    found = {(i.target, i.line) for i in imports_in(source, "llama3med.eval.runner", is_package=False)}
    assert {("llama3med.io.images", 2), ("llama3med.eval.sibling", 3), ("llama3med.model.modeling.Model", 4),
            ("llama3med.train.recipe.Recipe", 6), ("llama3med.cli.main", 8)} <= found
    assert {i.target for i in imports_in("from .x import y\n", "llama3med.model", is_package=True)} == {"llama3med.model.x.y"}
    assert [part_of(t) for t in ("llama3med", "llama3med.__version__", "llama3med.api.X", "llama3med.model.x")] == [
        "__init__", "__init__", "api", "model"
    ]


def test_the_walker_finds_the_imports_the_package_is_built_on(imports: list[Import]) -> None:
    edges = {(part_of(i.importer), part_of(i.target)) for i in imports}
    assert {("model", "io"), ("api", "model"), ("train", "model"), ("eval", "api"), ("cli", "experiments")} <= edges


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {part_of(module) for module in package_modules()}
    assert parts - set(LAYERS) == set(), "place the new part of the package in LAYERS (and say why in the docstring)"
    assert set(LAYERS) - parts == set(), "a part in LAYERS no longer exists: remove it"


def test_no_module_imports_from_a_higher_layer(imports: list[Import]) -> None:
    upward = [
        f"{i.importer}:{i.line} ({part_of(i.importer)}, layer {LAYERS[part_of(i.importer)]}) imports {i.target} "
        f"({part_of(i.target)}, layer {LAYERS[part_of(i.target)]})"
        for i in imports
        if LAYERS[part_of(i.target)] > LAYERS[part_of(i.importer)]
    ]
    assert upward == []


def test_peers_import_each_other_only_along_the_listed_edges(imports: list[Import]) -> None:
    sideways = {
        (part_of(i.importer), part_of(i.target)): f"{i.importer}:{i.line} imports {i.target}"
        for i in imports
        if part_of(i.importer) != part_of(i.target) and LAYERS[part_of(i.target)] == LAYERS[part_of(i.importer)]
    }
    assert {edge: where for edge, where in sideways.items() if edge not in PEER_IMPORTS} == {}
    assert PEER_IMPORTS - set(sideways) == set(), "a listed peer edge is no longer used: remove it from PEER_IMPORTS"


def test_no_import_cycle_between_parts_of_the_package(imports: list[Import]) -> None:
    graph: dict[str, set[str]] = {}
    for i in imports:
        if part_of(i.importer) != part_of(i.target):
            graph.setdefault(part_of(i.importer), set()).add(part_of(i.target))
    assert cycles(graph) == []


def test_no_import_cycle_between_modules(imports: list[Import]) -> None:
    modules = package_modules()
    graph: dict[str, set[str]] = {}
    for i in imports:
        target = imported_module(i.target, modules)
        if target != i.importer:
            graph.setdefault(i.importer, set()).add(target)
    assert cycles(graph) == []


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
