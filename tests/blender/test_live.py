"""Live capture in real Blender through a loopback MJPEG stream (a real network-camera protocol): the operators, the
timer callback driving the live rig, Record turning into a built take, one capture at a time, a clean stop on
disable and on file load; and the headless `capture.py --stream URL --duration S`.

Module-mode Blender fires no timers: the tests call the timer callback `live_tick()` themselves, as Blender's
event loop does in the UI.
"""

import sys
import threading
import time
from pathlib import Path

import addon_utils
import bpy
import pytest
from capture_helpers import make_models
from conftest import ADDON_MODULE
from test_capture_cli import inspect_blend, installed_capture_script, run_capture

SERVED_SIDE = 320


@pytest.fixture(scope="module")
def served(fixtures_dir, installed_addon):
    import importlib

    addon_utils.enable(ADDON_MODULE, default_set=True)  # OpenCV comes from the extension's bundled wheel
    mjpeg = importlib.import_module("testkit.mjpeg_server")
    return mjpeg, mjpeg.encode_video(fixtures_dir / "video" / "one_person_lab.mp4", max_frames=60,
                                     max_side=SERVED_SIDE)


@pytest.fixture(scope="module")
def live_models(tmp_path_factory, served):
    return make_models(tmp_path_factory.mktemp("live-models"), people=1, image_size=served[1][2])


@pytest.fixture
def live_ops(addon, live_models):
    bpy.ops.wm.read_homefile(use_empty=True)
    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    prefs.model_folder = str(live_models)
    prefs.instanthmr_path = prefs.detector_path = ""
    scene = bpy.context.scene
    scene.instanthmr.min_track_length = 3
    scene.instanthmr.max_persons = 1
    scene.instanthmr_live.timeout = 2.0
    module = sys.modules[ADDON_MODULE + ".operators.live"]
    yield module
    module.stop_live()


def tick_until(module, condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        module.live_tick()
        if condition():
            return True
        time.sleep(0.02)
    return False


def live_threads():
    return [t for t in threading.enumerate() if t.name.startswith(("instanthmr-live", "InstantHMR live"))]


def test_live_rig_follows_the_stream_and_a_recording_is_built_like_a_capture(live_ops, served, fixtures_dir, tmp_path):
    mjpeg, (frames, fps, _) = served
    scene = bpy.context.scene
    status = bpy.context.window_manager.instanthmr_live_status
    with mjpeg.MjpegServer(frames, fps, lifetime=90) as server:
        scene.instanthmr_live.source = server.url
        assert bpy.ops.instanthmr.live_start() == {"FINISHED"}
        assert bpy.app.timers.is_registered(live_ops.live_tick)
        # one capture at a time: a capture from video is refused while live runs
        capture = sys.modules[ADDON_MODULE + ".operators.capture"]
        scene.instanthmr.clip = str(fixtures_dir / "video" / "one_person_lab.mp4")
        with pytest.raises(capture.CaptureInputError, match="Live capture is running"):
            capture.start_capture(bpy.context)

        rig_name = "live.person00"
        assert tick_until(live_ops, lambda: bpy.data.objects.get(rig_name) is not None), status.status
        rig = bpy.data.objects[rig_name]
        assert rig.get("instanthmr_role") == "capture_rig" and rig.users_collection[0].name == "InstantHMR live"
        assert tick_until(live_ops, lambda: any(abs(pb.rotation_quaternion[0]) < 0.999 for pb in rig.pose.bones))
        assert "latency" in status.status and "fps" in status.status
        session = live_ops.current_session()
        assert session.live.stats().applied_latency_ms > 0
        scene.instanthmr_live.mirror = True
        assert tick_until(live_ops, lambda: rig.scale.x == -1.0)

        assert bpy.ops.instanthmr.live_record() == {"FINISHED"} and status.recording
        assert not bpy.ops.instanthmr.live_stop.poll()  # Stop waits until the recording is stopped
        tick_until(live_ops, lambda: False, seconds=1.5)
        assert bpy.ops.instanthmr.live_stop_recording() == {"FINISHED"}
        assert tick_until(live_ops, lambda: status.last_take != ""), status.status
    assert status.last_take.startswith("Recorded 1 people"), status.last_take
    take_path = Path(scene.instanthmr.take_path)
    assert take_path.is_file() and take_path.name.startswith("live_")
    built = [c for c in bpy.data.collections if c.name.startswith("InstantHMR live_")]
    assert len(built) == 1
    rigs = [o for o in built[0].objects if o.get("instanthmr_role") == "capture_rig"]
    assert len(rigs) == 1 and rigs[0].animation_data.action is not None
    assert scene.camera is not None and scene.camera.name in built[0].objects
    assert len(scene.instanthmr.people) == 1

    # the stream has ended: the timer notices, stops live capture and says why, in one line
    assert tick_until(live_ops, lambda: not live_ops.live_active(), seconds=10)
    assert status.status.startswith("Live capture stopped") and "\n" not in status.status
    assert not status.running and not live_threads()


def test_disabling_the_addon_or_loading_a_file_stops_live_capture(live_ops, served):
    mjpeg, (frames, fps, _) = served
    status = bpy.context.window_manager.instanthmr_live_status
    bpy.context.scene.instanthmr_live.source = f"http://127.0.0.1:{mjpeg.unused_port()}/video"
    assert bpy.ops.instanthmr.live_start() == {"FINISHED"}
    assert tick_until(live_ops, lambda: not live_ops.live_active(), seconds=10)
    assert status.status.startswith("Live capture failed: stream http://127.0.0.1") and "unreachable" in status.status

    with mjpeg.MjpegServer(frames, fps, lifetime=60) as server:
        bpy.context.scene.instanthmr_live.source = server.url
        assert bpy.ops.instanthmr.live_start() == {"FINISHED"}
        assert tick_until(live_ops, lambda: live_ops.current_session().live is not None)
        bpy.ops.wm.read_homefile(use_empty=True)  # load_pre stops it
        assert not live_ops.live_active() and not live_threads()

        bpy.context.scene.instanthmr_live.source = server.url
        assert bpy.ops.instanthmr.live_start() == {"FINISHED"}
        assert tick_until(live_ops, lambda: live_ops.current_session().live is not None)
        addon_utils.disable(ADDON_MODULE, default_set=True)
        assert not live_threads() and not bpy.app.timers.is_registered(live_ops.live_tick)
    addon_utils.enable(ADDON_MODULE, default_set=True)


def test_headless_stream_capture_records_for_the_duration_and_builds_the_scene(served, live_models, tmp_path):
    mjpeg, (frames, fps, _) = served
    out = tmp_path / "live.blend"
    with mjpeg.MjpegServer(frames, fps, lifetime=120) as server:
        result = run_capture(installed_capture_script(), "--stream", server.url, "--duration", "2",
                             "--model-dir", str(live_models), "--max-persons", "1", "--min-track-length", "3",
                             "--out", str(out), python=sys.executable)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "capture: recording from http://127.0.0.1" in result.stdout and "latency" in result.stdout
    assert f"wrote {out}" in result.stdout
    report = inspect_blend(out, tmp_path)
    assert len(report["rigs"]) == 1 and len(report["actions"]) == 1 and abs(report["fps"] - 30.0) < 1e-3
    assert 45 <= report["frame_range"][1] <= 75  # 2 s at 30 fps (frames placed by the camera clock)

    mjpeg_port = mjpeg.unused_port()
    failed = run_capture(installed_capture_script(), "--stream", f"http://127.0.0.1:{mjpeg_port}/video",
                         "--source-timeout", "1", "--model-dir", str(live_models), "--out", str(tmp_path / "x.blend"),
                         python=sys.executable)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith(f"capture: error: stream http://127.0.0.1:{mjpeg_port}")
    assert not (tmp_path / "x.blend").exists()

    refused = run_capture(installed_capture_script(), "--stream", f"http://127.0.0.1:{mjpeg_port}/video",
                          "--backend", "sam3d", "--model-dir", str(live_models), "--out", str(tmp_path / "y.blend"),
                          python=sys.executable)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        "capture: error: live capture runs InstantHMR only (SAM 3D Body is far too slow for it): "
        "pass --backend instanthmr")
