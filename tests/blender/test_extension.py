"""The extension as users get it: built with Blender's tool, installed from the zip, enabled, cycled."""

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import addon_utils
import bpy
import build_extension
import pytest
from conftest import ADDON_ID, ADDON_MODULE, REPO_ROOT


def _addon_classes() -> list[type]:
    """Every class the add-on's modules list for registration (each Blender-side module exposes `classes`)."""
    found = []
    for name, module in sorted(sys.modules.items()):
        if name.startswith(ADDON_MODULE + ".") and module is not None:
            found.extend(getattr(module, "classes", ()))
    return found


def _user_site_packages() -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return Path(os.environ["BLENDER_USER_RESOURCES"]) / "extensions" / ".local" / "lib" / version / "site-packages"


def test_installed_from_zip_into_isolated_user_folder(addon):
    installed = Path(os.environ["BLENDER_USER_RESOURCES"]) / "extensions" / "user_default" / ADDON_ID
    assert (installed / "blender_manifest.toml").is_file()
    assert Path(addon.__file__).resolve().parent == installed.resolve()
    assert ADDON_MODULE in bpy.context.preferences.addons


def test_every_class_registers(addon):
    classes = _addon_classes()
    names = {cls.__name__ for cls in classes}
    # The product's entry points must be among them.
    assert {"VIEW3D_PT_instanthmr_capture", "INSTANTHMR_OT_check_models", "INSTANTHMR_AP_preferences"} <= names
    for cls in classes:
        assert cls.is_registered, f"{cls.__name__} is not registered"
    assert hasattr(bpy.types, "VIEW3D_PT_instanthmr_capture")
    assert bpy.ops.instanthmr.check_models.poll()


def test_disable_enable_disable_cycles_cleanly(addon):
    for _ in range(2):
        classes = _addon_classes()
        addon_utils.disable(ADDON_MODULE, default_set=True, handle_error=_raise)
        assert ADDON_MODULE not in bpy.context.preferences.addons
        assert not hasattr(bpy.types, "VIEW3D_PT_instanthmr_capture")
        assert not any(cls.is_registered for cls in classes)
        addon_utils.enable(ADDON_MODULE, default_set=True, handle_error=_raise)
        assert all(cls.is_registered for cls in _addon_classes())
    addon_utils.disable(ADDON_MODULE, default_set=True, handle_error=_raise)
    assert not hasattr(bpy.types, "VIEW3D_PT_instanthmr_capture")


def test_reload_registers_the_new_classes(addon):
    old_panel = sys.modules[ADDON_MODULE + ".ui.panel"].VIEW3D_PT_instanthmr_capture
    addon_utils.disable(ADDON_MODULE, default_set=True, handle_error=_raise)
    importlib.reload(sys.modules[ADDON_MODULE])
    addon_utils.enable(ADDON_MODULE, default_set=True, handle_error=_raise)
    new_panel = sys.modules[ADDON_MODULE + ".ui.panel"].VIEW3D_PT_instanthmr_capture
    assert new_panel is not old_panel
    assert new_panel.is_registered and not old_panel.is_registered


def test_bundled_wheels_import_from_the_extension_site_packages(addon, tmp_path):
    import cv2
    import numpy as np
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    site = _user_site_packages().resolve()
    for module in (onnxruntime, cv2):
        assert Path(module.__file__).resolve().is_relative_to(site), f"{module.__name__} from {module.__file__}"

    # And they work inside Blender: run a tiny model and an image operation.
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])], "add",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])],
    )
    model_path = tmp_path / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), model_path)
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    a = np.array([1.0, 2.0], np.float32)
    (c,) = session.run(None, {"a": a, "b": a})
    np.testing.assert_allclose(c, [2.0, 4.0])
    image = np.zeros((8, 8, 3), np.uint8)
    assert cv2.resize(image, (4, 4)).shape == (4, 4, 3)


def test_check_models_operator_names_the_missing_files(addon, capfd, tmp_path):
    # An empty model folder of its own: other tests point the preferences at folders holding models.
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.model_folder = str(tmp_path / "models")
    prefs.instanthmr_path = prefs.detector_path = ""
    assert bpy.ops.instanthmr.check_models() == {"FINISHED"}
    out = capfd.readouterr()
    text = out.out + out.err
    assert "Missing model files" in text and "instanthmr.onnx" in text


def test_manifest_validates_and_zips_hold_only_the_extension(built_zips):
    build_extension.validate()
    platforms = {"linux_x64", "windows_x64", "macos_arm64", "macos_x64"}
    assert {p.stem.rsplit("-", 1)[-1] for p in built_zips} == platforms
    for zip_path in built_zips:
        names = zipfile.ZipFile(zip_path).namelist()
        assert "blender_manifest.toml" in names and "__init__.py" in names and "capture.py" in names
        for forbidden in ("tests/", "testkit/", "tools/", "docs/", ".ci/", ".git", "__pycache__", "pyproject.toml",
                          ".venv"):
            assert not any(forbidden in n for n in names), f"{zip_path.name} contains {forbidden}"
        wheels = [n for n in names if n.endswith(".whl")]
        assert any("onnxruntime" in w and "cp311" in w for w in wheels)
        assert any("onnxruntime" in w and "cp313" in w for w in wheels)
        assert any("opencv_python_headless" in w for w in wheels)
        tag = {"linux_x64": "linux", "windows_x64": "win_amd64", "macos_arm64": "arm64", "macos_x64": "x86_64"}
        platform = zip_path.stem.rsplit("-", 1)[-1]
        assert all(tag[platform] in w for w in wheels), f"{zip_path.name} holds another platform's wheel"


@pytest.mark.parametrize("outcome,status", [("pass", 0), ("fail", 1)])
def test_process_exits_with_the_real_status_after_rigify(outcome, status):
    probe = Path(__file__).with_name("rigify_exit_probe.py")
    env = dict(os.environ, INSTANTHMR_PROBE_OUTCOME=outcome)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the test process hung at exit after Rigify")
    assert result.returncode == status, result.stdout[-2000:] + result.stderr[-2000:]


def _raise(exc):
    raise exc
