"""capture.py as users run it: a separate headless Blender process, from the source checkout and from the
installed extension, with a clear one-line failure and a non-zero status when something is missing."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from capture_helpers import make_models
from conftest import ADDON_ID, REPO_ROOT

# A source checkout runs in the dev venv (bpy + the runtime libraries): the README's first command.
DEV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


def run_capture(script: Path, *args: str, user_dir: Path | None = None, python=None,
                cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if user_dir is not None:
        env["BLENDER_USER_RESOURCES"] = str(user_dir)
    return subprocess.run([str(python or DEV_PYTHON), str(script), *args], cwd=cwd, env=env,
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


def test_single_image_and_short_range_capture_with_the_defaults(models, fixtures_dir, tmp_path):
    """The default minimum track length (5) must not drop everyone from a clip shorter than it."""
    frame = tmp_path / "frame.png"
    write_png(frame, np.full((994, 1768, 3), 90, np.uint8))
    result = run_capture(installed_capture_script(), "--image", str(frame), "--model-dir", str(models),
                         "--out", str(tmp_path / "image.blend"), python=sys.executable)
    assert result.returncode == 0, result.stderr
    assert "2 people tracked over 1 frames" in result.stdout and "warning" not in result.stdout
    assert inspect_blend(tmp_path / "image.blend", tmp_path)["frame_range"] == [1, 1]
    video = fixtures_dir / "video" / "two_people_walking.mp4"
    result = run_capture(installed_capture_script(), str(video), "--start", "100", "--end", "104", "--model-dir",
                         str(models), "--out", str(tmp_path / "range.blend"), python=sys.executable)
    assert result.returncode == 0, result.stderr
    report = inspect_blend(tmp_path / "range.blend", tmp_path)
    assert report["frame_range"] == [101, 104] and len(report["rigs"]) == 2


def test_cut_off_video_warns_and_its_take_finds_the_clip_from_anywhere(addon, models, fixtures_dir, tmp_path):
    """A copy with only the first 30% of the bytes: the header still says 230 frames, 60 are readable."""
    data = (fixtures_dir / "video" / "two_people_walking.mp4").read_bytes()
    clips, takes, elsewhere = tmp_path / "clips", tmp_path / "takes", tmp_path / "elsewhere"
    for folder in (clips, takes, elsewhere):
        folder.mkdir()
    (clips / "cut.mp4").write_bytes(data[: int(len(data) * 0.3)])
    result = run_capture(installed_capture_script(), "cut.mp4", "--model-dir", str(models), "--out",
                         str(tmp_path / "cut.blend"), "--save-take", str(takes / "cut.npz"), python=sys.executable,
                         cwd=clips)  # the clip as typed, relative to the working folder
    assert result.returncode == 0, result.stderr
    warning = next(line for line in result.stdout.splitlines() if line.startswith("capture: warning:"))
    assert f"{clips / 'cut.mp4'}` stopped after 60 readable frames" in warning
    assert "captured 60 of the 230 frames" in warning
    report = inspect_blend(tmp_path / "cut.blend", tmp_path)
    assert report["frame_range"] == [1, 60] and report["background"] == 1  # the scene covers what was captured

    # Re-solved from another folder: the take holds the clip's absolute path, so the background is found. The
    # second person's hips made unusable (without the neck alone they would still be solved, from the
    # shoulders): the solve leaves them out, and says who and why.
    take_module = sys.modules[addon.__name__ + ".instanthmr_blender.take"]
    index = sys.modules[addon.__name__ + ".instanthmr_blender.solve.skeleton"].MHR70_INDEX
    take = take_module.load_take(takes / "cut.npz")
    take.joints_cam[1, :, [index["left_hip"], index["right_hip"]]] = np.nan
    take_module.save_take(take, takes / "hipless.npz")
    again = run_capture(installed_capture_script(), "--take", str(takes / "hipless.npz"), "--out",
                        str(tmp_path / "again.blend"), python=sys.executable, cwd=elsewhere)
    assert again.returncode == 0, again.stdout + again.stderr
    warnings = [line for line in again.stdout.splitlines() if "warning" in line]
    assert warnings == ["capture: warning: cut.person01 left out: it never shows both hips: the body cannot be "
                        "placed (keep the hips in frame)"]
    report = inspect_blend(tmp_path / "again.blend", tmp_path)
    assert report["background"] == 1 and report["rigs"] == ["cut.person00"]
    # Take and clip moved together: found next to the take. The clip gone: a warning, no background.
    for name in ("cut.mp4", "cut.npz"):
        shutil.move(str((clips if name.endswith("mp4") else takes) / name), elsewhere / name)
    moved = run_capture(installed_capture_script(), "--take", str(elsewhere / "cut.npz"), "--out",
                        str(tmp_path / "moved.blend"), python=sys.executable, cwd=tmp_path)
    assert moved.returncode == 0 and "warning" not in moved.stdout, moved.stdout + moved.stderr
    (elsewhere / "cut.mp4").unlink()
    lost = run_capture(installed_capture_script(), "--take", str(elsewhere / "cut.npz"), "--out",
                       str(tmp_path / "lost.blend"), python=sys.executable, cwd=tmp_path)
    assert lost.returncode == 0, lost.stderr
    assert (f"capture: warning: the take's clip {clips / 'cut.mp4'} was not found (nor next to the take): "
            "the camera has no background") in lost.stdout
    assert [inspect_blend(tmp_path / f"{n}.blend", tmp_path)["background"] for n in ("moved", "lost")] == [1, 0]


def run_and_act(script: Path, args: list[str], marker: str, action, user_dir: Path):
    """Run capture.py, call `action(process)` once a stdout line contains `marker`; returns (status, out, err)."""
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(user_dir))
    # A suite started in the background by a shell without job control inherits SIGINT ignored, and so would
    # capture.py: give it the default disposition, as a terminal would, so Ctrl-C reaches it.
    process = subprocess.Popen([sys.executable, str(script), *args], env=env, cwd=REPO_ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            action(process)
            break
    out, err = process.communicate(timeout=300)
    return process.returncode, "".join(seen) + out, err


def kept_take(line: str) -> Path:
    """The take a one-line failure names (`... kept in the take PATH: ...`)."""
    return Path(line.split("kept in the take ", 1)[1].split(": ", 1)[0])


def test_an_output_folder_lost_during_the_capture_keeps_the_take(addon, models, fixtures_dir, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    video = fixtures_dir / "video" / "two_people_walking.mp4"
    status, out, err = run_and_act(installed_capture_script(), [str(video), "--model-dir", str(models), "--end",
                                                                 "60", "--out", str(out_dir / "walk.blend")],
                                   "frames ·", lambda process: shutil.rmtree(out_dir), tmp_path / "user")
    assert status == 1, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and ".blend@" not in out + err, out + err
    assert lines[0].startswith(f"capture: error: could not write {out_dir / 'walk.blend'} (")
    take = kept_take(lines[0])
    assert f"rebuild it without running the models with capture.py --take {take} --out" in lines[0]
    loaded = sys.modules[addon.__name__ + ".instanthmr_blender.take"].load_take(take)
    assert loaded.num_tracks == 2 and loaded.num_frames == 60


def test_ctrl_c_exits_130_with_one_line_and_keeps_the_take(addon, models, fixtures_dir, tmp_path):
    video = fixtures_dir / "video" / "two_people_walking.mp4"
    interrupt = lambda process: process.send_signal(signal.SIGINT)  # noqa: E731
    # During the capture: nothing was made, nothing is written.
    status, out, err = run_and_act(installed_capture_script(), [str(video), "--model-dir", str(models), "--out",
                                                                 str(tmp_path / "a.blend")],
                                   "frames ·", interrupt, tmp_path / "user")
    assert status == 130, out + err
    assert err.strip().splitlines() == ["capture: interrupted (Ctrl-C): stopped during the capture: nothing was "
                                        "written"]
    # During an export: the take already saved is kept and named, no half-written file is left.
    (tmp_path / "exports").mkdir()
    status, out, err = run_and_act(installed_capture_script(), [str(video), "--model-dir", str(models), "--out",
                                                                 str(tmp_path / "b.blend"), "--save-take",
                                                                 str(tmp_path / "b.npz"), "--export",
                                                                 str(tmp_path / "exports" / "b.glb")],
                                   "capture: exporting", interrupt, tmp_path / "user")
    assert status == 130, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"capture: interrupted (Ctrl-C): the capture is kept in the take {tmp_path / 'b.npz'}")
    assert not (tmp_path / "a.blend").exists() and not (tmp_path / "b.blend").exists()
    leftovers = [p.name for p in (tmp_path / "exports").iterdir() if p.name != "b.glb"]
    assert leftovers == []  # no staging folder or partial file (b.glb only if it was complete before the signal)


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

    return import_module(addon.__name__ + ".cli").main([str(a) for a in argv])


def last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_bad_inputs_fail_with_one_clear_line(addon, models, fixtures_dir, tmp_path, capsys):
    from testkit.contract_models import build_wrong_size_model, write_corrupt_model

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
        # every numeric option out of range, named as typed
        ([video, "--frame-skip", "0"], "--frame-skip must be 1 or more"),
        ([video, "--max-persons", "0"], "--max-persons must be 1 or more"),
        ([video, "--det-confidence", "2.0"], "--det-confidence must be from 0 up to (not including) 1"),
        ([video, "--detector-stride", "0"], "--detector-stride must be 1 or more"),
        ([video, "--threads", "-1"], "--threads must be 0 (automatic) or more"),
        ([video, "--min-track-length", "0"], "--min-track-length must be 1 or more"),
        ([video, "--start", "-1"], "--start must be 0 or more"),
        ([video, "--start", "9", "--end", "4"], "--end 4 must be greater than --start 9"),
        ([video, "--fps", "0"], "--fps must be a positive number"),
        ([video, "--retarget-scale", "-2"], "--retarget-scale must be a positive number"),
        ([video, "--frame-skip", "x"], "argument --frame-skip: invalid int value"),
        # every output location, checked before the models (the model folder here is empty: not reached)
        ([video, "--model-dir", tmp_path / "empty", "--out", tmp_path / "empty"], "is a folder"),
        ([video, "--model-dir", tmp_path / "empty", "--out", tmp_path / "out.txt"], "give a name ending in .blend"),
        ([video, "--model-dir", tmp_path / "empty", "--out", tmp_path / "no" / "a.blend"], "does not exist"),
        ([video, "--model-dir", tmp_path / "empty", "--out", "/sys/a.blend"], "cannot write in /sys"),
        ([video, "--model-dir", tmp_path / "empty", "--save-take", "/sys/a.npz"], "--save-take /sys/a.npz: cannot"),
        ([video, "--model-dir", tmp_path / "empty", "--export", tmp_path / "no" / "a.bvh"], "--export"),
    ]
    for argv, expected in cases:
        status = headless(addon, argv)
        line = last_error(capsys)
        assert status == 2, (argv, status, line)
        assert line.startswith("capture: error: ") and expected in line, (argv, line)
        assert "Traceback" not in line and "usage:" not in line


def test_help_lists_every_option(addon, capsys):
    assert headless(addon, ["--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--model", "--device", "--detector", "--detector-model", "--detector-variant", "--det-confidence",
                   "--max-persons", "--detector-stride", "--no-batch-persons", "--frame-skip", "--image", "--take",
                   "--save-take", "--out", "--export", "--smoothing", "--foot-lock"):
        assert option in text, option


def test_an_error_after_ctrl_c_counts_as_the_interrupt(addon):
    # Blender 5.2 can turn a Ctrl-C that lands in its operator argument parsing into an unrelated error
    # ('enum "GLB" not found'): the command line notes the SIGINT itself, so that still exits 130.
    import importlib

    blender_io = importlib.import_module(addon.__name__ + ".cli.blender_io")
    unrelated = RuntimeError('Converting py args to operator properties: enum "GLB" not found')
    # As in a terminal, whatever disposition this test run inherited (a background job ignores SIGINT).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = blender_io.watch_sigint()
    try:
        assert not blender_io.was_interrupted(unrelated)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert blender_io.was_interrupted(unrelated)
    finally:
        blender_io.unwatch_sigint(previous)
    assert signal.getsignal(signal.SIGINT) is previous
    blender_io.watch_sigint()  # each command starts with no Ctrl-C noted
    blender_io.unwatch_sigint(previous)
    signal.signal(signal.SIGINT, inherited)
    assert not blender_io.was_interrupted(unrelated)


def test_int8_precision_on_the_command_line(addon, fixtures_dir, tmp_path, capsys):
    """--precision int8 runs the INT8 file with its report printed, and refuses, in one line before any work, a
    missing one or one measured on another model."""
    import hashlib
    from importlib import import_module

    import bpy

    quantized = import_module(addon.__name__ + ".instanthmr_blender.models.int8")
    models = make_models(tmp_path / "models")
    model = models / "instanthmr.onnx"
    video = fixtures_dir / "video" / "two_people_walking.mp4"
    argv = [video, "--model-dir", models, "--end", "6", "--precision", "int8"]
    assert headless(addon, [*argv, "--out", tmp_path / "a.blend"]) == 2
    line = last_error(capsys)
    assert line.startswith("capture: error: INT8 InstantHMR chosen, but `instanthmr.int8.onnx`")
    assert "tools/quantize_hmr.py" in line
    assert not (tmp_path / "a.blend").exists()

    shutil.copyfile(model, quantized.int8_model_path(model))  # a runnable stand-in for the INT8 file
    report = quantized.FidelityReport(
        model=model.name, model_sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
        model_bytes=model.stat().st_size, int8_model="instanthmr.int8.onnx", clip="me.mp4", calibration_crops=30,
        held_out_crops=70, fp32_ms=90.0, int8_ms=45.0, provider="CPUExecutionProvider", mm_3d_mean=7.5,
        mm_3d_p95=16.0, mm_3d_aligned_mean=5.0, mm_3d_aligned_p95=11.0, px_2d_mean=1.2, px_2d_p95=2.5,
        jitter_fp32_mm=3.0, jitter_int8_mm=3.3)
    report.save(quantized.report_path(model))
    out = tmp_path / "int8.blend"
    assert headless(addon, [*argv, "--out", out]) == 0, last_error(capsys)
    printed = capsys.readouterr().out
    assert report.summary() in printed and f"wrote {out}" in printed
    rigs = [o for o in bpy.data.objects if o.type == "ARMATURE" and "instanthmr_model_file" in o]
    assert rigs and all(o["instanthmr_model_file"] == "instanthmr.int8.onnx" for o in rigs)

    report.model_sha256 = "0" * 64  # measured on another file of the same size: only the hash tells
    report.save(quantized.report_path(model))
    assert headless(addon, [*argv, "--out", tmp_path / "b.blend"]) == 2
    assert "measured on another model than `instanthmr.onnx`" in last_error(capsys)
    assert not (tmp_path / "b.blend").exists()
