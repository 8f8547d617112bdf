"""Engine tier: plain Python, numpy, onnxruntime and OpenCV only. Blender must never be imported here."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("INSTANTHMR_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))
BLENDER_MODULES = ("bpy", "bmesh", "mathutils")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared real-data fixtures (`../shared/fixtures`), referenced in place, never copied."""
    if not (FIXTURES / "README.md").is_file():
        pytest.fail(f"shared fixtures not found at {FIXTURES}; set INSTANTHMR_FIXTURES")
    return FIXTURES


@pytest.fixture
def export_tool():
    """`tools/export_rfdetr_onnx.py`, freshly loaded (it is a script, not a package module)."""
    path = REPO_ROOT / "tools" / "export_rfdetr_onnx.py"
    spec = importlib.util.spec_from_file_location("export_rfdetr_onnx", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_sessionfinish(session, exitstatus):
    # The engine must work without Blender: if anything in this tier pulled a Blender module in,
    # fail the run even when every test passed.
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLENDER_MODULES)
    if leaked:
        print(f"\nengine tier imported Blender modules: {', '.join(leaked)}", file=sys.stderr)
        session.exitstatus = 1
