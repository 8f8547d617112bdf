"""A moving camera through the command line, in real Blender, on clips rendered with a known camera and person
(testkit/handheld_clip.py, rendered once per suite and cached): the camera solved from the video (one Blender
line: the solve is the heavy part), a camera the user already has (every line), and a still camera under `auto`
built exactly as under `static` (every line). Each checks that the rig projects onto the person in every frame
through the animated capture camera, and the people's place in the world against the truth."""

import os
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest
from capture_helpers import AddonApi, bone_keypoints, evaluated_joints, fresh_scene
from conftest import ADDON_ID

from testkit import world_figures
from testkit.handheld_clip import rendered_case

HIPS = (9, 10)
# The solve runs once per suite, on the line CI's quick runs use too.
SOLVE_LINE = (4, 5)


def headless(addon, argv) -> int:
    from importlib import import_module

    return import_module(addon.__name__ + ".cli").main([str(a) for a in argv])


def last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def capture_objects(scene):
    rigs = [o for o in scene.objects if o.get("instanthmr_role") == "capture_rig"]
    camera = next(o for o in scene.objects if o.get("instanthmr_role") == "capture_camera")
    return rigs, camera


def rig_keypoints(rig, scene, frames, api) -> np.ndarray:
    """(F, 70, 3) the rig's evaluated keypoints (bone ends that are MHR70 keypoints) at source frames."""
    kp_heads, kp_tails = bone_keypoints(rig, api)
    out = np.full((len(frames), 70, 3), np.nan)
    for row, frame in enumerate(frames):
        heads, tails = evaluated_joints(rig, scene, int(frame) + 1)
        for ends, kps in ((heads, kp_heads), (tails, kp_tails)):
            out[row, kps[kps >= 0]] = ends[kps >= 0]
    return out


def projected(camera, scene, frames, points, focal, principal) -> np.ndarray:
    """(F, K, 2) pixels of world points (F, K, 3) through the capture camera as Blender evaluates it per frame."""
    out = np.full(points.shape[:2] + (2,), np.nan)
    for row, frame in enumerate(frames):
        scene.frame_set(int(frame) + 1)
        matrix = np.array(camera.matrix_world)
        local = (points[row] - matrix[:3, 3]) @ matrix[:3, :3]
        cam = local * np.array([1.0, -1.0, -1.0])
        out[row] = cam[:, :2] / cam[:, 2:3] * focal + np.asarray(principal)
    return out


def reprojection_px(rig, camera, scene, take, api) -> np.ndarray:
    """Per frame, the median distance (px) between the rig's keypoints seen through the capture camera and the
    take's 2D keypoints."""
    frames = take.frames
    world = rig_keypoints(rig, scene, frames, api)
    pixels = projected(camera, scene, frames, world, take.focal_length, take.principal_point)
    errors = np.linalg.norm(pixels - take.joints_2d[0], axis=-1)
    return np.nanmedian(errors, axis=1)


def world_errors(rig, scene, take, truth, api) -> tuple[float, float, float]:
    predicted = rig_keypoints(rig, scene, take.frames, api)
    known = np.isfinite(truth["joints_world"][0, :, 0]) & np.isfinite(predicted[0, :, 0])
    w = world_figures.w_mpjpe(predicted[:, known], truth["joints_world"][:, known])
    wa = world_figures.wa_mpjpe(predicted[:, known], truth["joints_world"][:, known])
    root = world_figures.root_path_error(predicted[:, list(HIPS)].mean(axis=1),
                                         truth["joints_world"][:, list(HIPS)].mean(axis=1))
    return w, wa, root


@pytest.fixture(scope="module")
def cases():
    return {kind: rendered_case(kind) for kind in ("handheld", "still")}


def blender_camera_matrices(camera_world: np.ndarray, scale: float) -> np.ndarray:
    """The truth's world-from-camera (OpenCV axes) as Blender camera matrices, the world scaled (as an
    unscaled camera solve would give it)."""
    out = np.tile(np.eye(4), (len(camera_world), 1, 1))
    out[:, :3, :3] = camera_world[:, :3, :3] @ np.diag([1.0, -1.0, -1.0])
    out[:, :3, 3] = camera_world[:, :3, 3] * scale
    return out


def write_camera_blend(path: Path, matrices: np.ndarray | None, *, first_frame: int = 1, name: str = "Tracked"):
    """A .blend holding one camera keyed with `matrices` from `first_frame` (None: not animated)."""
    from mathutils import Matrix

    scene = fresh_scene()
    data = bpy.data.cameras.new(name)
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    if matrices is not None:
        obj.rotation_mode = "QUATERNION"
        for row, matrix in enumerate(matrices):
            obj.matrix_world = Matrix(matrix.tolist())
            obj.keyframe_insert("location", frame=first_frame + row)
            obj.keyframe_insert("rotation_quaternion", frame=first_frame + row)
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    fresh_scene()


def test_a_scene_camera_gives_the_path(addon, cases, tmp_path, capsys):
    api = AddonApi(addon)
    case = cases["handheld"]
    truth = np.load(case.truth)
    blend = tmp_path / "tracked.blend"
    write_camera_blend(blend, blender_camera_matrices(truth["camera_world"], 0.37))
    out = tmp_path / "scene-camera.blend"
    status = headless(addon, [case.clip, "--take", case.take, "--camera-path", f"{blend}:Tracked", "--out", out])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "camera: the path of" in captured.out
    scene = bpy.context.scene
    (rig,), camera = capture_objects(scene)
    assert camera.animation_data and camera.animation_data.action
    take = api.take.load_take(case.take)
    per_frame = reprojection_px(rig, camera, scene, take, api)
    assert np.all(per_frame < 12.0), per_frame.max()  # the rig sits on the person in every frame
    w, wa, root = world_errors(rig, scene, take, truth, api)
    print(f"scene camera: W-MPJPE100 {w * 1000:.0f} mm, WA-MPJPE100 {wa * 1000:.0f} mm, root path {root:.2%}")
    assert w < 0.25 and wa < 0.08 and root < 0.03


def test_a_scene_camera_that_cannot_serve_is_one_line(addon, cases, tmp_path, capsys):
    case = cases["handheld"]
    truth = np.load(case.truth)
    still = tmp_path / "still.blend"
    write_camera_blend(still, None)
    short = tmp_path / "short.blend"
    write_camera_blend(short, blender_camera_matrices(truth["camera_world"][:40], 1.0))
    runs = [
        ([f"{still}:Tracked"], "has no animation"),
        ([f"{short}:Tracked"], "is keyed over frames 1-40 but the take needs 1-150"),
        ([f"{still}:Nope"], "has no object `Nope`"),
        ([str(tmp_path / "missing.blend") + ":Tracked"], "is not a file"),
        ([str(still)], "name the camera as FILE.blend:OBJECT"),
    ]
    for extra, message in runs:
        status = headless(addon, [case.clip, "--take", case.take, "--camera-path", *extra,
                                  "--out", tmp_path / "x.blend"])  # fmt: skip
        line = last_error(capsys)
        assert status == 2 and message in line, (extra, line)
        assert line.startswith("capture: error:") and "Traceback" not in line


def test_a_still_camera_under_auto_is_built_as_under_static(addon, cases, tmp_path, capsys):
    api = AddonApi(addon)
    case = cases["still"]
    take = api.take.load_take(case.take)
    built = {}
    for mode in ("static", "auto"):
        out = tmp_path / f"{mode}.blend"
        status = headless(addon, [case.clip, "--take", case.take, "--camera-motion", mode, "--out", out])
        captured = capsys.readouterr()
        assert status == 0, captured.err
        scene = bpy.context.scene
        (rig,), camera = capture_objects(scene)
        assert not (camera.animation_data and camera.animation_data.action)
        built[mode] = rig_keypoints(rig, scene, take.frames[::10], api)
        if mode == "auto":
            assert "the camera is still" in captured.out
    difference = np.nanmax(np.linalg.norm(built["auto"] - built["static"], axis=-1))
    assert difference < 0.001


@pytest.mark.skipif(bpy.app.version[:2] != SOLVE_LINE, reason="the camera solve runs on one Blender line per suite")
def test_handheld_clip_solved_through_capture_py(addon, cases, tmp_path):
    api = AddonApi(addon)
    case = cases["handheld"]
    truth = np.load(case.truth)
    script = Path(os.environ["BLENDER_USER_RESOURCES"]) / "extensions" / "user_default" / ADDON_ID / "capture.py"
    out, saved = tmp_path / "handheld.blend", tmp_path / "handheld.take.npz"
    result = subprocess.run([sys.executable, str(script), str(case.clip), "--take", str(case.take),
                             "--camera-motion", "solve", "--save-take", str(saved), "--out", str(out)],
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "camera: solved" in result.stdout and "camera: placing frames" in result.stdout
    take = api.take.load_take(saved)
    path = take.camera_path
    assert path is not None and path.registered.mean() >= 0.95
    bpy.ops.wm.open_mainfile(filepath=str(out))
    scene = bpy.context.scene
    (rig,), camera = capture_objects(scene)
    per_frame = reprojection_px(rig, camera, scene, take, api)
    assert np.all(per_frame < 12.0), per_frame.max()
    w, wa, root = world_errors(rig, scene, take, truth, api)
    print(f"solved camera: W-MPJPE100 {w * 1000:.0f} mm, WA-MPJPE100 {wa * 1000:.0f} mm, root path {root:.2%}")
    assert w < 0.15 and wa < 0.06 and root < 0.01


def test_camera_motion_options_that_cannot_work_are_one_line(addon, cases, tmp_path, capsys):
    import shutil

    case = cases["handheld"]
    lonely = tmp_path / "lonely.npz"  # a take whose clip is nowhere to be found
    shutil.copy(case.take, lonely)
    api = AddonApi(addon)
    take = api.take.load_take(lonely)
    take.source = str(tmp_path / "gone.mp4")
    api.take.save_take(take, lonely)
    runs = [
        (["--take", lonely, "--camera-motion", "solve"], "the take's clip was not found"),
        (["--camera", "0", "--camera-motion", "solve"], "are for recorded clips, not live capture"),
        ([case.clip, "--take", case.take, "--camera-path", tmp_path / "x.blend:Cam", "--camera-motion", "static"],
         "leave out --camera-motion static"),
    ]
    for argv, message in runs:
        status = headless(addon, [*argv, "--out", tmp_path / "x.blend"])
        line = last_error(capsys)
        assert status == 2 and message in line, (argv, line)
