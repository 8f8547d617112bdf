"""capture.py as users run it: a separate headless Blender process, from the source checkout and from the
installed extension, with a clear one-line failure and a non-zero status when something is missing."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from capture_helpers import make_models
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


# --- End to end with contract-shaped models, as a separate headless Blender process --------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory, installed_addon):
    return make_models(tmp_path_factory.mktemp("cli-models"))


def installed_capture_script() -> Path:
    return Path(os.environ["BLENDER_USER_RESOURCES"]) / "extensions" / "user_default" / ADDON_ID / "capture.py"


def inspect_blend(path: Path, tmp_path: Path) -> dict:
    """Open a written .blend in another Blender process and report what it holds."""
    script = tmp_path / "blend_report.py"  # not inspect.py: it would shadow the standard module
    script.write_text(
        "import bpy, json, sys\n"
        f"bpy.ops.wm.open_mainfile(filepath={str(path)!r})\n"
        "scene = bpy.context.scene\n"
        "rigs = [o for o in scene.objects if o.get('instanthmr_role') == 'capture_rig']\n"
        "cam = scene.camera\n"
        "print('REPORT' + json.dumps({'rigs': [o.name for o in rigs],\n"
        "  'actions': [o.animation_data.action.name for o in rigs if o.animation_data and o.animation_data.action],\n"
        "  'frame_range': [scene.frame_start, scene.frame_end], 'fps': scene.render.fps / scene.render.fps_base,\n"
        "  'camera': cam.name if cam else None, 'lens': cam.data.lens if cam else None,\n"
        "  'background': len(cam.data.background_images) if cam else 0,\n"
        "  'resolution': [scene.render.resolution_x, scene.render.resolution_y]}))\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "inspect-user")))
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT"))
    return json.loads(line[len("REPORT"):])


@pytest.mark.parametrize("clip,size,fps,frames", [
    ("two_people_walking.mp4", (1768, 994), 30.0, 24),
    ("one_person_lab.mp4", (1080, 1920), 60.0, 24),
    ("pedestrians.avi", (768, 576), 10.0, 24),
])
def test_headless_capture_of_each_fixture_video(models, fixtures_dir, tmp_path, clip, size, fps, frames):
    out = tmp_path / "capture.blend"
    result = run_capture(installed_capture_script(), str(fixtures_dir / "video" / clip), "--model-dir", str(models),
                         "--end", str(frames), "--out", str(out), "--save-take", str(tmp_path / "take.npz"),
                         python=sys.executable)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"capture: {frames}/{frames} frames" in result.stdout  # text progress reached the end
    assert f"wrote {out}" in result.stdout and f"wrote {tmp_path / 'take.npz'}" in result.stdout
    report = inspect_blend(out, tmp_path)
    assert len(report["rigs"]) == 2 and len(report["actions"]) == 2
    assert report["frame_range"] == [1, frames] and abs(report["fps"] - fps) < 1e-3
    assert report["resolution"] == list(size) and report["background"] == 1
    assert abs(report["lens"] - math.hypot(*size) * 36 / size[0]) < 1e-3  # the implicit focal length


def test_headless_resolve_from_take_skips_the_models(models, fixtures_dir, tmp_path):
    take = tmp_path / "walk.npz"
    first = run_capture(installed_capture_script(), str(fixtures_dir / "video" / "two_people_walking.mp4"),
                        "--model-dir", str(models), "--end", "12", "--save-take", str(take),
                        "--out", str(tmp_path / "a.blend"), python=sys.executable)
    assert first.returncode == 0, first.stderr
    again = run_capture(installed_capture_script(), "--take", str(take), "--model-dir", str(tmp_path / "no-models"),
                        "--smoothing", "off", "--foot-lock", "off", "--out", str(tmp_path / "b.blend"),
                        "--export", str(tmp_path / "b.fbx"), python=sys.executable)
    assert again.returncode == 0, again.stderr
    assert "loaded take" in again.stdout and "frames ·" not in again.stdout  # no capture progress: no models ran
    assert (tmp_path / "b.blend").is_file() and (tmp_path / "b.fbx").is_file()


def test_headless_single_image(models, fixtures_dir, tmp_path):
    frame = tmp_path / "frame.png"
    write_png(frame, np.full((994, 1768, 3), 90, np.uint8))
    result = run_capture(installed_capture_script(), "--image", str(frame), "--model-dir", str(models),
                         "--min-track-length", "1", "--out", str(tmp_path / "image.blend"), python=sys.executable)
    assert result.returncode == 0, result.stderr
    assert inspect_blend(tmp_path / "image.blend", tmp_path)["frame_range"] == [1, 1]


def write_png(path: Path, rgb) -> None:
    """A PNG written with Blender's image API (the test venv has no OpenCV of its own)."""
    import bpy

    height, width = rgb.shape[:2]
    image = bpy.data.images.new("frame", width, height)
    pixels = rgb[::-1].astype(np.float32) / 255.0
    rgba = np.concatenate([pixels, np.ones((height, width, 1), np.float32)], axis=2)
    image.pixels.foreach_set(rgba.ravel())
    image.filepath_raw = str(path)
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)


def headless(addon, argv):
    """The installed add-on's command line, in this process (the same code capture.py hands over to)."""
    from importlib import import_module

    return import_module(addon.__name__ + ".headless").main([str(a) for a in argv])


def last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_bad_inputs_fail_with_one_clear_line(addon, models, fixtures_dir, tmp_path, capsys):
    from contract_models import build_wrong_size_model, write_corrupt_model

    video = fixtures_dir / "video" / "two_people_walking.mp4"
    (tmp_path / "empty").mkdir()
    (tmp_path / "notvideo.mp4").write_text("this is not a video")
    wrong = build_wrong_size_model(tmp_path / "wrong.onnx")
    corrupt = write_corrupt_model(tmp_path / "corrupt.onnx")
    (tmp_path / "bad.npz").write_bytes(b"not a take")
    cases = [
        ([tmp_path / "nope.mp4"], "no such file or folder"),
        ([tmp_path / "notvideo.mp4", "--model-dir", models], "notvideo.mp4"),
        ([tmp_path / "empty", "--model-dir", models], "empty"),
        ([video, "--model-dir", models, "--start", "5000"], "5000"),
        ([video, "--model-dir", tmp_path / "empty"], "model files missing"),
        ([video, "--model-dir", models, "--model", wrong], "wrong.onnx"),
        ([video, "--model-dir", models, "--model", corrupt], "corrupt.onnx"),
        ([video, "--model-dir", models, "--detector-model", wrong], "wrong.onnx"),
        (["--take", tmp_path / "bad.npz"], "bad.npz"),
        (["--take", tmp_path / "missing.npz"], "missing.npz"),
        ([video, "--model-dir", models, "--export", tmp_path / "out.xyz"], "unknown export format"),
        ([], "nothing to capture"),
    ]
    for argv, expected in cases:
        status = headless(addon, argv)
        line = last_error(capsys)
        assert status == 2, (argv, status, line)
        assert line.startswith("capture: error: ") and expected in line, (argv, line)
        assert "Traceback" not in line


def test_help_lists_every_option(addon, capsys):
    assert headless(addon, ["--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--model", "--device", "--detector", "--detector-model", "--detector-variant", "--det-confidence",
                   "--max-persons", "--detector-stride", "--no-batch-persons", "--frame-skip", "--image", "--take",
                   "--save-take", "--out", "--export", "--smoothing", "--foot-lock"):
        assert option in text, option
