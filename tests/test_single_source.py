"""Every list lives in one place: a copy of one anywhere else in ``src/`` fails here.

* finding kinds: only ``graddoctor/diagnosis/findings.py`` (``KINDS``);
* module type names (``"Sigmoid"``, ``"ReLU"``, ``"LSTM"``...): only ``graddoctor/_modules.py``;
* figure kinds: only ``graddoctor/report/figures.py`` (``FIGURES``);
* remedy ids: never in ``graddoctor/diagnosis/`` (remedy choice reads the remedy registry).

The source is read with ``ast``: a copy is a literal collection (tuple, list, set, dict
keys) holding most of a list, or for figure kinds also a string naming several of them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from torch import nn

import graddoctor
from graddoctor._modules import families_of_type_name
from graddoctor.diagnosis.findings import KINDS
from graddoctor.remedies import available
from graddoctor.remedies.registry import remedies_for
from graddoctor.report import FIGURES

SRC = Path(graddoctor.__file__).parent
FILES = sorted(SRC.rglob("*.py"))

# a drifted copy may have lost a kind or two (the scenarios' copy lacked amp_scale_collapse)
KIND_COPY = len(KINDS) - 2
EXTRA_TYPE_NAMES = ("ElmanRNN", "LeakyRNN", "NonDynamicallyQuantizableLinear")
TYPE_NAMES = {name for name in (*dir(nn), *EXTRA_TYPE_NAMES) if families_of_type_name(name)}


def _relative(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _export_lists(tree: ast.AST) -> set[int]:
    """The ``__all__ = [...]`` literals: export lists name things, they copy no list."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    }


def _collections(tree: ast.AST):
    """Every literal collection but ``__all__``: its string elements (dict: its keys), and its line."""
    exports = _export_lists(tree)
    for node in ast.walk(tree):
        if id(node) in exports:
            continue
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        yield (
            node.lineno,
            [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)],
        )


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _copies(names: set[str], at_least: int, allowed: set[str]) -> list[str]:
    found = []
    for path in FILES:
        if _relative(path) in allowed:
            continue
        for line, strings in _collections(ast.parse(path.read_text())):
            hits = sorted(set(strings) & names)
            if len(hits) >= at_least:
                found.append(f"{_relative(path)}:{line}: {hits}")
    return found


def test_finding_kinds_are_listed_only_in_findings():
    assert _copies(set(KINDS), KIND_COPY, {"diagnosis/findings.py"}) == []


def test_module_type_names_are_listed_only_in_the_taxonomy():
    assert _copies(TYPE_NAMES, 2, {"_modules.py"}) == []


def test_figure_kinds_are_listed_only_in_the_registry():
    assert _copies(set(FIGURES), 3, {"report/figures.py"}) == []
    # nor written out in a message or help text
    distinctive = [kind for kind in FIGURES if "_" in kind]
    found = []
    for path in FILES:
        if _relative(path) == "report/figures.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
            ):
                named = [k for k in distinctive if re.search(rf"\b{k}\b", node.value)]
                if len(named) >= 2:
                    found.append(f"{_relative(path)}:{node.lineno}: {named}")
    assert found == []


def test_diagnosis_names_no_remedy():
    ids = set(available())
    found = []
    for path in sorted((SRC / "diagnosis").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ids:
                found.append(f"{_relative(path)}:{node.lineno}: {node.value!r}")
    assert found == []


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_remedies_declared_in_the_registry(kind):
    # the refinements of a kind are checked in tests/remedies/test_remedy_treats.py
    remedies = remedies_for(kind)
    assert remedies, f"no remedy declares that it treats {kind!r}"
    assert all(remedy.id in available() for remedy in remedies)
