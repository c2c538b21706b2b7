"""The package's layering (README "Architecture"): no import cycles between its packages,
function-local imports included, and every run-record file name defined in `workdir` alone."""

from __future__ import annotations

import ast
import os

import pytest

import transfusion_tf
from transfusion_tf import workdir

ROOT = os.path.dirname(transfusion_tf.__file__)


def _modules() -> dict[str, ast.Module]:
    """{dotted module name: parsed source} of every module of the package."""
    out = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                with open(path, encoding="utf-8") as f:
                    out[rel.removesuffix(".__init__")] = ast.parse(f.read(), filename=path)
    return out


def _part(module: str) -> str | None:
    """The package (or top-level module) of `transfusion_tf` a module belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "transfusion_tf" and len(parts) > 1 else None


def _edges() -> dict[str, set[str]]:
    """Which parts import which, every import statement counted (at any depth)."""
    edges: dict[str, set[str]] = {}
    for module, tree in _modules().items():
        source = _part(module)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "transfusion_tf":  # from transfusion_tf import workdir
                    targets = [f"transfusion_tf.{a.name}" for a in node.names]
                else:
                    targets = [node.module]
            else:
                continue
            for target in targets:
                part = _part(target)
                if part and source and part != source:
                    edges.setdefault(source, set()).add(part)
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle between parts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_packages_import_each_other_without_cycles():
    edges = _edges()
    assert "training" in edges and "data" in edges["training"]  # the scan sees imports
    assert _cycle(edges) is None, f"import cycle: {' -> '.join(_cycle(edges))}"


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("data", "models"),
        ("data", "training"),
        ("models", "init"),
        ("training", "export"),
        ("training", "analysis"),
        ("analysis", "training"),
        ("workdir", "training"),
    ],
)
def test_lower_layers_do_not_import_upper_ones(lower, upper):
    assert upper not in _edges().get(lower, set())


RUN_RECORD_FILES = (
    workdir.CONFIG_FILE,
    workdir.RESULTS_FILE,
    workdir.HISTORY_FILE,
    workdir.INIT_REPORT_FILE,
    workdir.TRAIN_SUBSET_FILE,
    workdir.VALID_PREDICTIONS_FILE,
)


def test_run_record_file_names_are_defined_in_workdir_alone():
    assert len(set(RUN_RECORD_FILES)) == len(RUN_RECORD_FILES)
    docstrings = set()
    owners: dict[str, set[str]] = {name: set() for name in RUN_RECORD_FILES}
    for module, tree in _modules().items():
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                docstrings.add(id(body[0].value))
        for node in ast.walk(tree):
            constant = isinstance(node, ast.Constant) and id(node) not in docstrings
            if constant and node.value in owners:
                owners[node.value].add(module)
    assert owners == {name: {"transfusion_tf.workdir"} for name in RUN_RECORD_FILES}
