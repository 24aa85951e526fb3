"""The package's layout as docs/architecture.md draws it: which folder may import which, no import circle, small
modules. Read from the source (every ``import`` statement, also those inside functions), nothing is run."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "l2gnet_monai"

#: What each part of the package may import from the others (docs/architecture.md; each ``__init__`` says it too).
ALLOWED = {
    "networks": set(),
    "transforms": set(),
    "inference": set(),
    "data": set(),
    "losses": {"networks"},
    "planning": {"data"},
    "training": {"networks"},
    "visualize": {"networks", "planning"},
    "evaluation": {"networks", "data", "visualize"},
    "study": {"data", "evaluation", "networks", "planning", "visualize"},
    "cli": {"data", "evaluation", "planning", "study", "visualize"},
    "__init__": set(),
    "__main__": {"cli"},
    "_lazy": set(),
    "_files": set(),
    "_weights": set(),
}
#: Parts every part may import: the package's own plumbing, which imports nothing of the package.
SHARED = {"_lazy", "_files", "_weights"}
#: The longest module allowed, in lines ("no module over about 400 lines").
MAX_LINES = 420


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports (a name imported from a package counts as its module when it
    is one, else as the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("l2gnet_monai."):
                found.add(name)
    found.discard(_module_name(path))
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def test_every_part_imports_only_what_it_may() -> None:
    violations = defaultdict(set)
    for module, imported in _graph().items():
        for target in imported:
            if _part(target) != _part(module) and _part(target) not in ALLOWED[_part(module)] | SHARED:
                violations[module].add(target)
    assert not violations, f"imports across the layout's rules (docs/architecture.md): {dict(violations)}"


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                pytest.fail("import circle: " + " -> ".join([*path[path.index(target) :], target]))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_every_part_of_the_layout_is_known_and_no_module_is_long() -> None:
    modules = _modules()
    assert {_part(m) for m in modules} == set(ALLOWED), "a new part of the package: add it to ALLOWED and the docs"
    long = {name: n for name, path in modules.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_subpackage_says_what_it_owns_and_may_import() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc or "may import" in doc, f"{init} does not say what it may import"
