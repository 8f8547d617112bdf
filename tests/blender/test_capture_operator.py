"""The capture operator's lifecycle in real Blender: start, pump, progress rising, cancel half-way, errors,
one capture at a time, worker stopped by disable or file load, rebuild from take, export.

Module-mode Blender has no event loop (no timers, no modal events), so the tests drive the main-thread pump
themselves, exactly as the modal timer does in the UI.
"""

import sys
import threading
import time
from pathlib import Path

import addon_utils
import bpy
import numpy as np
import pytest
from capture_helpers import make_models
from conftest import ADDON_MODULE

VIDEO = "two_people_walking.mp4"


@pytest.fixture(scope="module")
def models(tmp_path_factory, installed_addon):
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def capture_ops(addon, models, tmp_path):
    """The add-on's capture module, with preferences pointing at the stand-in models and a clean scene."""
    bpy.ops.wm.read_homefile(use_empty=True)
    if not addon_utils.check(ADDON_MODULE)[1]:
        addon_utils.enable(ADDON_MODULE, default_set=True)
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.model_folder = str(models)
    prefs.instanthmr_path = prefs.detector_path = ""
    module = sys.modules[ADDON_MODULE + ".operators.capture"]
    yield module
    module.cancel_capture(wait=10.0)
    module.pump(bpy.context)


def set_clip(fixtures_dir, tmp_path, name=VIDEO, end=0):
    settings = bpy.context.scene.instanthmr
    settings.clip = str(fixtures_dir / "video" / name)
    settings.frame_end = end
    settings.take_path = str(tmp_path / "take.npz")
    return settings


def pump_until_done(module, timeout=300.0, on_progress=None):
    deadline = time.monotonic() + timeout
    factors = []
    while time.monotonic() < deadline:
        state, message = module.pump(bpy.context)
        factors.append(bpy.context.window_manager.instanthmr_progress.factor)
        if state != "RUNNING":
            return state, message, factors
        if on_progress is not None:
            on_progress(module.current_job())
        time.sleep(0.02)
    pytest.fail("the capture did not finish in time")


def scene_state():
    return sorted(obj.name for obj in bpy.data.objects), sorted(c.name for c in bpy.data.collections)


def test_capture_runs_in_the_background_with_rising_progress_and_builds_the_scene(capture_ops, fixtures_dir, tmp_path):
    settings = set_clip(fixtures_dir, tmp_path, end=40)
    assert bpy.ops.instanthmr.capture() == {"FINISHED"}  # module mode: starts the worker, returns at once
    job = capture_ops.current_job()
    assert job is not None and job.running and job.thread is not threading.current_thread()
    state, message, factors = pump_until_done(capture_ops)
    assert state == "FINISHED", message
    assert factors[-1] == 1.0 and factors == sorted(factors) and len(set(factors)) > 2
    progress = bpy.context.window_manager.instanthmr_progress
    assert not progress.running and "take saved to" in progress.status
    take_path = Path(settings.take_path)
    assert take_path.is_file()
    rigs = [o for o in bpy.data.objects if o.get("instanthmr_role") == "capture_rig"]
    assert len(rigs) == 2 and len(settings.people) == 2
    assert all(item.first_frame == 1 and item.last_frame == 40 for item in settings.people)
    assert bpy.context.scene.camera is not None and bpy.context.scene.camera.data.background_images[0].clip
    assert threading.active_count() == 1 or not any(t.name.startswith("InstantHMR") for t in threading.enumerate())


def test_status_line_has_frames_fps_eta_and_stage_times(capture_ops, fixtures_dir, tmp_path):
    set_clip(fixtures_dir, tmp_path, end=30)
    capture_ops.start_capture(bpy.context)
    seen = []
    pump_until_done(capture_ops, on_progress=lambda job: seen.append(capture_ops.status_text(job.progress)))
    running = [line for line in seen if "frames" in line]
    assert running, seen
    assert all(key in running[-1] for key in ("fps", "ETA", "detector", "HMR", "ms"))


def test_second_capture_is_refused_while_one_runs(capture_ops, fixtures_dir, tmp_path):
    set_clip(fixtures_dir, tmp_path, name="pedestrians.avi")
    capture_ops.start_capture(bpy.context)
    assert not bpy.ops.instanthmr.capture.poll()
    with pytest.raises(capture_ops.CaptureInputError, match="already running"):
        capture_ops.start_capture(bpy.context)
    capture_ops.cancel_capture(wait=10.0)
    assert pump_until_done(capture_ops)[0] == "CANCELLED"
    assert bpy.ops.instanthmr.capture.poll()


def test_cancel_half_way_stops_within_a_frame_and_leaves_the_scene_unchanged(capture_ops, fixtures_dir, tmp_path):
    settings = set_clip(fixtures_dir, tmp_path, name="pedestrians.avi")
    before = scene_state()
    job = capture_ops.start_capture(bpy.context)
    deadline = time.monotonic() + 60
    while (job.progress is None or job.progress.frames_done < 10) and time.monotonic() < deadline:
        capture_ops.pump(bpy.context)
        time.sleep(0.01)
    assert job.progress.frames_done < job.progress.frames_total
    assert bpy.ops.instanthmr.cancel_capture() == {"FINISHED"}
    frames_at_cancel = job.progress.frames_done
    job.thread.join(10.0)
    assert not job.thread.is_alive()
    assert job.progress.frames_done <= frames_at_cancel + 1
    state, message, _ = pump_until_done(capture_ops)
    assert state == "CANCELLED" and "not changed" in message
    assert scene_state() == before
    assert not Path(settings.take_path).exists()


def test_an_error_in_the_worker_is_reported_cleanly(capture_ops, fixtures_dir, tmp_path, models):
    from testkit.contract_models import build_wrong_size_model

    wrong = build_wrong_size_model(tmp_path / "wrong.onnx")
    bpy.context.preferences.addons[ADDON_MODULE].preferences.instanthmr_path = str(wrong)
    set_clip(fixtures_dir, tmp_path, end=10)
    before = scene_state()
    capture_ops.start_capture(bpy.context)
    state, message, _ = pump_until_done(capture_ops)
    assert state == "FAILED"
    assert "wrong.onnx" in message and "224" in message  # names the file and the mismatch
    assert bpy.context.window_manager.instanthmr_progress.status.startswith("Capture failed:")
    assert scene_state() == before


def test_missing_models_are_refused_before_starting(capture_ops, fixtures_dir, tmp_path):
    bpy.context.preferences.addons[ADDON_MODULE].preferences.model_folder = str(tmp_path / "empty")
    set_clip(fixtures_dir, tmp_path)
    # An operator's ERROR report reaches a Python caller as a RuntimeError carrying the message.
    with pytest.raises(RuntimeError, match="Model files missing: instanthmr.onnx .expected at .*empty"):
        bpy.ops.instanthmr.capture()
    assert capture_ops.current_job() is None


def test_disabling_the_addon_stops_the_worker(capture_ops, fixtures_dir, tmp_path):
    set_clip(fixtures_dir, tmp_path, name="pedestrians.avi")
    job = capture_ops.start_capture(bpy.context)
    addon_utils.disable(ADDON_MODULE, default_set=True)
    try:
        assert not job.thread.is_alive()
        assert job.cancel_event.is_set()
    finally:
        addon_utils.enable(ADDON_MODULE, default_set=True)


def test_loading_another_file_stops_the_worker(capture_ops, fixtures_dir, tmp_path):
    set_clip(fixtures_dir, tmp_path, name="pedestrians.avi")
    job = capture_ops.start_capture(bpy.context)
    bpy.ops.wm.read_homefile(use_empty=True)
    assert not job.thread.is_alive() and job.cancel_event.is_set()
    assert capture_ops.current_job() is None


def test_rebuild_from_take_applies_new_settings_without_models(capture_ops, fixtures_dir, tmp_path):
    settings = set_clip(fixtures_dir, tmp_path, end=40)
    capture_ops.start_capture(bpy.context)
    assert pump_until_done(capture_ops)[0] == "FINISHED"
    rig = next(o for o in bpy.data.objects if o.get("instanthmr_role") == "capture_rig")
    first = [tuple(pb.rotation_quaternion) for pb in rig.pose.bones]
    # No model is needed any more: point the preferences at nothing.
    bpy.context.preferences.addons[ADDON_MODULE].preferences.model_folder = str(tmp_path / "gone")
    settings.smoothing = "off"
    settings.people[1].keep = False
    assert bpy.ops.instanthmr.rebuild_from_take() == {"FINISHED"}
    rigs = [o for o in bpy.data.objects if o.get("instanthmr_role") == "capture_rig"]
    assert [o["instanthmr_track_id"] for o in rigs] == [settings.people[0].track_id]
    bpy.context.scene.frame_set(1)
    assert len(first) == len(rigs[0].pose.bones)
    with pytest.raises(RuntimeError, match="missing.npz"):
        bpy.ops.instanthmr.rebuild_from_take(filepath=str(tmp_path / "missing.npz"))
    # A person the solve cannot use, and a clip that is gone: both named, the others rebuilt.
    take_module = sys.modules[ADDON_MODULE + ".instanthmr_blender.take"]
    index = sys.modules[ADDON_MODULE + ".instanthmr_blender.solve.skeleton"].MHR70_INDEX
    take = take_module.load_take(settings.take_path)
    take.joints_cam[1, :, [index["left_hip"], index["right_hip"]]] = np.nan
    take.source = str(tmp_path / "gone.mp4")
    take_module.save_take(take, tmp_path / "hipless.npz")
    rebuild = sys.modules[ADDON_MODULE + ".operators.take"].rebuild_from_take
    built, warnings = rebuild(bpy.context, str(tmp_path / "hipless.npz"))
    assert len(built.rigs) == 1
    assert warnings == [f"the take's clip {tmp_path / 'gone.mp4'} was not found (nor next to the take): the camera "
                        "has no background",
                        "gone.person01 left out: it never shows both hips: the body cannot be placed (keep the "
                        "hips in frame)"]


def test_export_operator_writes_the_files(capture_ops, fixtures_dir, tmp_path):
    settings = set_clip(fixtures_dir, tmp_path, end=20)
    capture_ops.start_capture(bpy.context)
    assert pump_until_done(capture_ops)[0] == "FINISHED"
    settings.export_path = str(tmp_path / "out" / "walk.bvh")
    assert bpy.ops.instanthmr.export() == {"FINISHED"}
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["walk.person00.bvh", "walk.person01.bvh"]
    assert bpy.ops.instanthmr.export(filepath=str(tmp_path / "out" / "walk.fbx")) == {"FINISHED"}
    assert (tmp_path / "out" / "walk.fbx").stat().st_size > 1000
    with pytest.raises(RuntimeError, match="unknown export format .xyz"):
        bpy.ops.instanthmr.export(filepath=str(tmp_path / "out" / "walk.xyz"))
    with pytest.raises(RuntimeError, match=r"/sys/walk.bvh: cannot write in /sys \(Permission denied\)"):
        bpy.ops.instanthmr.export(filepath="/sys/walk.bvh")


def test_take_round_trips_through_the_saved_file(capture_ops, fixtures_dir, tmp_path):
    settings = set_clip(fixtures_dir, tmp_path, end=15)
    capture_ops.start_capture(bpy.context)
    assert pump_until_done(capture_ops)[0] == "FINISHED"
    take_module = sys.modules[ADDON_MODULE + ".instanthmr_blender.take"]
    take = take_module.load_take(settings.take_path)
    assert take.joints_cam.shape == (2, 15, 70, 3) and np.isfinite(take.joints_cam[take.valid]).all()
    assert take.source.endswith(VIDEO)


def test_clip_picker_lists_videos_and_images_and_sets_the_clip(addon, fixtures_dir, tmp_path):
    bpy.ops.wm.read_homefile(use_empty=True)
    glob = bpy.ops.instanthmr.choose_clip.get_rna_type().properties["filter_glob"].default
    assert all(f"*{ext}" in glob for ext in (".mp4", ".mov", ".avi", ".mkv", ".webm", ".png", ".jpg"))
    video = fixtures_dir / "video" / "one_person_lab.mp4"
    assert bpy.ops.instanthmr.choose_clip(filepath=str(video)) == {"FINISHED"}
    assert bpy.context.scene.instanthmr.clip == str(video)
    frame = tmp_path / "seq" / "frame_0001.png"
    frame.parent.mkdir()
    frame.write_bytes(b"not decoded here")
    assert bpy.ops.instanthmr.choose_clip(filepath=str(frame), sequence=True) == {"FINISHED"}
    assert bpy.context.scene.instanthmr.clip == str(frame.parent)
    with pytest.raises(RuntimeError, match="no such file"):
        bpy.ops.instanthmr.choose_clip(filepath=str(tmp_path / "missing.mp4"))


def test_an_unwritable_take_path_is_refused_before_starting(capture_ops, fixtures_dir, tmp_path):
    settings = set_clip(fixtures_dir, tmp_path)
    settings.take_path = "/sys/take.npz"  # refuses new files even to root
    with pytest.raises(RuntimeError, match=r"Take path /sys/take.npz: cannot write in /sys \(Permission denied\)"):
        bpy.ops.instanthmr.capture()
    assert capture_ops.current_job() is None


def test_a_cut_off_video_and_a_take_folder_lost_at_the_end_are_reported_not_lost(capture_ops, fixtures_dir,
                                                                                  tmp_path):
    """A copy with only the first 30% of the bytes (60 of the 230 frames its header lists), and the take's
    folder replaced by a file while the capture runs: the capture finishes, says both, keeps the take."""
    data = (fixtures_dir / "video" / VIDEO).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    settings = bpy.context.scene.instanthmr
    settings.clip, settings.frame_end = str(cut), 0
    settings.take_path = str(tmp_path / "takes" / "cut.npz")
    job = capture_ops.start_capture(bpy.context)
    (tmp_path / "takes").rmdir()
    (tmp_path / "takes").write_text("not a folder any more")
    state, message, _ = pump_until_done(capture_ops)
    assert state == "FINISHED", message
    assert f"`{cut}` stopped after 60 readable frames" in message and "captured 60 of the 230 frames" in message
    assert f"could not save the take to {tmp_path / 'takes' / 'cut.npz'}" in message
    assert "saved it to" in message and Path(settings.take_path).is_file()
    assert job.saved == Path(settings.take_path) and job.saved != tmp_path / "takes" / "cut.npz"
    scene = bpy.context.scene
    assert (scene.frame_start, scene.frame_end) == (1, 60)
    assert scene.camera.data.background_images[0].clip is not None


def test_the_panels_lens_and_the_chosen_model_reach_the_capture_settings(capture_ops, fixtures_dir, tmp_path, models):
    settings = set_clip(fixtures_dir, tmp_path)
    built, _ = capture_ops.capture_settings(bpy.context)
    assert (built.focal_px, built.lens_mm, built.hmr_model) == (None, None, str(models / "instanthmr.onnx"))
    settings.lens_mode, settings.lens_mm, settings.sensor_width_mm = "mm", 26.0, 36.0
    built, _ = capture_ops.capture_settings(bpy.context)
    assert (built.lens_mm, built.sensor_width_mm, built.focal_px) == (26.0, 36.0, None)
    settings.lens_mode, settings.focal_px = "px", 1234.5
    built, _ = capture_ops.capture_settings(bpy.context)
    assert (built.focal_px, built.lens_mm) == (1234.5, None)
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.hmr_size, prefs.hmr_fit = "small", "1"
    try:
        with pytest.raises(capture_ops.CaptureInputError, match="instanthmr-small-fit1.onnx"):
            capture_ops.capture_settings(bpy.context)  # not in the model folder: named before anything starts
    finally:
        prefs.hmr_size, prefs.hmr_fit = "first_release", "0"
        settings.lens_mode = "model"


def test_the_camera_decision_is_part_of_the_result(capture_ops, fixtures_dir, tmp_path):
    set_clip(fixtures_dir, tmp_path, end=30)
    capture_ops.start_capture(bpy.context)
    state, message, _ = pump_until_done(capture_ops)
    assert state == "FINISHED", message
    assert "Camera: the background moves" in message and "the camera is still" in message
    camera = bpy.context.scene.camera
    assert not (camera.animation_data and camera.animation_data.action)  # a tripod clip: the camera stays put


def animated_camera(name: str, frames: int | None):
    data = bpy.data.cameras.new(name)
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    for frame in range(1, (frames or 0) + 1):
        obj.location = (0.02 * frame, -5.0, 1.5)
        obj.keyframe_insert("location", frame=frame)
    return obj


def test_a_scene_camera_that_cannot_serve_is_refused_before_starting(capture_ops, fixtures_dir, tmp_path):
    from importlib import import_module

    errors = import_module(ADDON_MODULE + ".settings.capture")
    settings = set_clip(fixtures_dir, tmp_path, end=30)
    settings.camera_object = animated_camera("Still", None)
    with pytest.raises(errors.CaptureInputError, match="has no animation"):
        capture_ops.start_capture(bpy.context)
    settings.camera_object = animated_camera("Short", 10)
    with pytest.raises(errors.CaptureInputError, match="keyed over frames 1-10 but the take needs 1-30"):
        capture_ops.start_capture(bpy.context)
    assert capture_ops.current_job() is None


def test_a_scene_camera_is_read_over_the_capture_frames(capture_ops, fixtures_dir, tmp_path):
    settings = set_clip(fixtures_dir, tmp_path, end=30)
    settings.frame_step = 2
    settings.camera_object = animated_camera("Tracked", 30)
    request_settings, _ = capture_ops.capture_settings(bpy.context)
    frames, path = capture_ops.read_scene_camera(bpy.context, request_settings)
    assert frames.tolist() == list(range(0, 30, 2)) and path.method == "scene-camera"
    np.testing.assert_allclose(path.center[:, 0], 0.02 * (frames + 1), atol=1e-6)  # scene frame = source frame + 1
    picked = capture_ops.scene_path_for_take(frames, path, frames[3:7])
    np.testing.assert_allclose(picked.center, path.center[3:7])
