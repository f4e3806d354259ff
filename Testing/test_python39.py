"""The module and its core run inside Slicer 5.8.1, whose Python is 3.9.10.

No Python 3.9 torch or slicer-core wheel is at hand here, so this is checked on the source: 3.9 grammar,
no 3.10+ standard-library call (vermin), and no ``X | Y`` of types evaluated at run time (annotations are
strings under ``from __future__ import annotations``; Slicer's parameterNodeWrapper evaluates its own).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import missing_tool

SHIPPED = Path(__file__).resolve().parents[1] / "MISSUSegmentation"
SLICER_5_8_PYTHON = (3, 9)


def shipped_sources() -> list[Path]:
    return sorted(p for p in SHIPPED.rglob("*.py") if ".egg-info" not in str(p))


def annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside a function or variable annotation."""
    inside = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            every = arguments.posonlyargs + arguments.args + arguments.kwonlyargs + [arguments.vararg, arguments.kwarg]
            annotations = [a.annotation for a in every if a is not None] + [node.returns]
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in filter(None, annotations):
            inside.update(id(n) for n in ast.walk(annotation))
    return inside


def looks_like_a_type(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Subscript):
        node = node.value
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    builtin = name in {"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set"}
    return builtin or (name[:1].isupper() and not name.isupper())  # CapWords, not a CONSTANT


def evaluated_annotations(tree: ast.AST) -> set[int]:
    """ids of the nodes in annotations that are evaluated even under ``from __future__ import annotations``:
    the fields of a ``@parameterNodeWrapper`` class (Slicer reads them with ``typing.get_type_hints``)."""
    evaluated = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any("parameterNodeWrapper" in ast.unparse(d) for d in node.decorator_list):
            for field in node.body:
                if isinstance(field, ast.AnnAssign):
                    evaluated.update(id(n) for n in ast.walk(field.annotation))
    return evaluated


def python310_unions(source: str) -> list[str]:
    """``X | Y`` of types that Python 3.9 would evaluate (and fail on)."""
    tree = ast.parse(source)
    in_annotation, evaluated = annotation_nodes(tree), evaluated_annotations(tree)
    lazy = "from __future__ import annotations" in source
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)):
            continue
        if id(node) in in_annotation:
            if not lazy or id(node) in evaluated:
                found.append(f"line {node.lineno}: {ast.unparse(node)} (an annotation that is evaluated)")
        elif looks_like_a_type(node.left) and looks_like_a_type(node.right):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_finds_what_python_39_rejects():
    assert python310_unions("def f(x: int | None): pass\n")
    assert python310_unions("from __future__ import annotations\nOptional = str | None\n")
    assert python310_unions("isinstance(3, int | str)\n")
    assert not python310_unions("from __future__ import annotations\ndef f(x: int | None) -> list[str] | None: pass\n")
    assert not python310_unions("flags = os.W_OK | os.X_OK\nkeys = KEYS | EXTRA\n")
    wrapped = "from __future__ import annotations\n@parameterNodeWrapper\nclass P:\n    path: Path | None\n"
    assert python310_unions(wrapped)  # Slicer's parameterNodeWrapper evaluates its fields' annotations


@pytest.mark.parametrize("path", shipped_sources(), ids=lambda p: str(p.relative_to(SHIPPED)))
def test_grammar_and_unions_of_python_39(path: Path):
    source = path.read_text(encoding="utf-8")
    ast.parse(source, filename=str(path), feature_version=SLICER_5_8_PYTHON)
    assert not python310_unions(source), f"{path}: Python 3.9 fails on {python310_unions(source)}"


def test_no_standard_library_call_newer_than_python_39():
    try:
        import vermin  # noqa: F401
    except ImportError:
        missing_tool("vermin (pip install -e '.[test]')")
    target = "-t={}.{}-".format(*SLICER_5_8_PYTHON)
    run = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())"]
    result = subprocess.run([*run, "-q", "--no-tips", "--violations", target, str(SHIPPED)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
