"""The engine (`instanthmr_blender/`) must run without Blender: no module of it may import bpy, bmesh or mathutils."""

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "instanthmr_blender"
FORBIDDEN = {"bpy", "bmesh", "mathutils"}


def blender_imports(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, module) for every import of a Blender module, including `from bpy.types import X` and
    imports nested in functions; comments and strings do not count because the source is parsed."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in {
            "__import__", "import_module"
        } and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            names = [node.args[0].value]
        else:
            continue
        found.extend((node.lineno, name) for name in names if name.split(".")[0] in FORBIDDEN)
    return found


def test_the_engine_exists():
    assert (ENGINE / "__init__.py").is_file()


@pytest.mark.parametrize("path", sorted(ENGINE.rglob("*.py")), ids=lambda p: str(p.relative_to(ENGINE)))
def test_engine_module_imports_no_blender_module(path):
    offenders = blender_imports(path.read_text(encoding="utf-8"), str(path))
    assert not offenders, f"{path.name} imports Blender: {offenders}"


@pytest.mark.parametrize("source,expected", [
    ("import bpy", ["bpy"]),
    ("import numpy, mathutils.geometry", ["mathutils.geometry"]),
    ("from bmesh.types import BMesh", ["bmesh.types"]),
    ("def f():\n    import bpy.utils\n", ["bpy.utils"]),
    ("import importlib\nimportlib.import_module('bpy')", ["bpy"]),
    ("__import__('mathutils')", ["mathutils"]),
    ("# import bpy\nx = 'import bpy'\n", []),
    ("from . import bpy_helpers\nimport bpycompat", []),
])
def test_the_checker_sees_real_imports_and_ignores_comments(source, expected):
    assert [name for _, name in blender_imports(source)] == expected
