"""capture.py as users run it: a separate headless Blender process, from the source checkout and from the
installed extension, with a clear one-line failure and a non-zero status when something is missing."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import ADDON_ID, REPO_ROOT

# A source checkout runs in the dev venv (bpy + the runtime libraries): the README's first command.
DEV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


def run_capture(script: Path, *args: str, user_dir: Path | None = None, python=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if user_dir is not None:
        env["BLENDER_USER_RESOURCES"] = str(user_dir)
    return subprocess.run([str(python or DEV_PYTHON), str(script), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_help_lists_the_options(tmp_path):
    result = run_capture(REPO_ROOT / "capture.py", "--help", user_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    for option in ("--out", "--model", "--detector-model", "--model-dir"):
        assert option in result.stdout


def test_source_checkout_registers_the_extension_and_names_the_missing_models(tmp_path, fixtures_dir):
    clip = fixtures_dir / "video" / "one_person_lab.mp4"
    result = run_capture(REPO_ROOT / "capture.py", str(clip), user_dir=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("capture: error: model files missing")
    assert "instanthmr.onnx" in message and "rfdetr" in message
    assert str(tmp_path) in message  # the model folder it looked in: the extension's user folder


def test_installed_extension_capture_script_works_the_same(installed_addon, fixtures_dir):
    installed = Path(os.environ["BLENDER_USER_RESOURCES"]) / "extensions" / "user_default" / ADDON_ID
    clip = fixtures_dir / "video" / "one_person_lab.mp4"
    result = run_capture(installed / "capture.py", str(clip), "--model-dir", str(REPO_ROOT / "no-such-dir"),
                         python=sys.executable)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "model files missing" in result.stderr and "no-such-dir" in result.stderr


def test_missing_clip_is_one_clear_line(tmp_path):
    result = run_capture(REPO_ROOT / "capture.py", str(tmp_path / "nope.mp4"), user_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"capture: error: {tmp_path / 'nope.mp4'}: no such file or folder"
