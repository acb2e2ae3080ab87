"""The package's layers, read from its import graph (``ast`` only, nothing is imported).

Layers, bottom to top (see docs/architecture.md)::

    _core  <-  _rules  <-  _weights  <-  _frontend  <-  _replay  <-  _demo, integrations  <-  _cli

A module may import its own layer and the layers below it, never one above it or a
sibling on its level; module-level imports form no circle; the core imports nothing but
the standard library.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import earlystop

PACKAGE = Path(earlystop.__file__).resolve().parent

#: layer -> rank; modules directly in ``earlystop/`` (the public API) are on top.
LAYERS = {
    "_core": 0,
    "_rules": 1,
    "_weights": 2,
    "_frontend": 3,
    "_replay": 4,
    "_demo": 5,
    "integrations": 5,
    "_cli": 6,
}
TOP = 7


def module_name(path: Path) -> str:
    parts = ["earlystop", *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "<top>"


def rank(module: str) -> int:
    return LAYERS.get(layer(module), TOP)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str, *, module_level_only: bool) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import of ``module``, resolved to full names.

    With ``module_level_only``, imports inside functions and ``TYPE_CHECKING`` blocks
    (which do not run at import time) are left out.
    """
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imports_in(path.read_text(), package, module_level_only=module_level_only)


def imports_in(source: str, package: str, *, module_level_only: bool) -> Iterator[tuple[int, str]]:
    """The imports of a module of ``package`` whose text is ``source`` (see :func:`imports`)."""
    tree = ast.parse(source)

    def walk(nodes: list[ast.stmt]) -> Iterator[ast.stmt]:
        for node in nodes:
            yield node
            if module_level_only:
                if isinstance(node, ast.If) and not _is_type_checking(node):
                    yield from walk(node.body + node.orelse)
                elif isinstance(node, ast.Try):
                    yield from walk(node.body + node.orelse + node.finalbody)
                    for handler in node.handlers:
                        yield from walk(handler.body)
            else:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        yield from walk([child])

    for node in walk(tree.body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield node.lineno, submodule if submodule in MODULES else target


def internal_imports(module: str, *, module_level_only: bool) -> list[tuple[int, str]]:
    return [
        (line, target)
        for line, target in imports(module, module_level_only=module_level_only)
        if target == "earlystop" or target.startswith("earlystop.")
    ]


def wrong_imports(module: str, found: list[tuple[int, str]]) -> list[str]:
    here = rank(module)
    return [
        f"line {line}: {target} ({layer(target)})"
        for line, target in found
        if (target == "earlystop" or target.startswith("earlystop."))
        and (rank(target) > here or (rank(target) == here and layer(target) != layer(module)))
    ]


def test_every_layer_exists_and_holds_modules() -> None:
    for name in LAYERS:
        assert any(layer(m) == name for m in MODULES if m != f"earlystop.{name}"), name
    loose = [m for m in MODULES if layer(m) == "<top>"]
    assert sorted(loose) == ["earlystop", "earlystop.__main__"], "modules outside the layers"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    wrong = wrong_imports(module, internal_imports(module, module_level_only=False))
    assert not wrong, f"{module} ({layer(module)}) imports upward or sideways: {wrong}"


def test_core_imports_only_the_standard_library() -> None:
    for module in (m for m in MODULES if layer(m) == "_core"):
        for line, target in imports(module, module_level_only=False):
            top = target.split(".")[0]
            assert top in sys.stdlib_module_names or target.startswith("earlystop._core"), (
                f"{module} line {line} imports {target}"
            )


def test_no_circle_at_module_level() -> None:
    graph = {
        module: sorted(
            {t for _, t in internal_imports(module, module_level_only=True) if t != module}
        )
        for module in MODULES
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in graph.get(module, []):
            # importing a submodule imports its packages first; those are checked on their own
            if state.get(target) == 1:
                circle = [*path[path.index(target) :], target]
                raise AssertionError(f"import circle: {' -> '.join(circle)}")
            if state.get(target) is None and target in graph:
                visit(target)
        path.pop()
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module)


@pytest.mark.parametrize(
    ("module", "source", "flagged"),
    [
        ("earlystop._core.stopper", "from .._rules.smoothing import EMA\n", True),
        ("earlystop._core.stopper", "def f():\n    from earlystop._weights import keeper\n", True),
        ("earlystop._core.stopper", "import earlystop\n", True),
        ("earlystop._demo.app", "from ..integrations import lightning\n", True),
        ("earlystop._weights.keeper", "from .._cli.main import main\n", True),
        ("earlystop._core.stopper", "from .history import History\n", False),
        ("earlystop._cli.main", "from .._core.stopper import Stopper\n", False),
        ("earlystop._frontend.early_stopping", "from .._weights import keeper\n", False),
    ],
)
def test_the_checker_flags_upward_and_sideways_imports(
    module: str, source: str, flagged: bool
) -> None:
    """The rule is not vacuous: synthetic modules that break it are reported."""
    package = module.rpartition(".")[0]
    found = list(imports_in(source, package, module_level_only=False))
    assert bool(wrong_imports(module, found)) is flagged, found
