"""Live capture without a camera: a loopback HTTP server serves a fixture video as MJPEG at its real frame rate
(a real network-camera protocol), and the live pipeline runs on it with the contract-shaped models."""

import socket
import threading
import time

import numpy as np
import pytest

from instanthmr_blender.capture.live import (
    LiveCapture,
    LiveError,
    LivePersonSolver,
    LiveSettings,
    record_live,
    take_columns,
)
from instanthmr_blender.capture.loading import build_models
from instanthmr_blender.capture.settings import CaptureSettings
from instanthmr_blender.solve import build_rest, forward_kinematics, ground, solve_pose
from instanthmr_blender.solve import smooth as filters
from instanthmr_blender.solve.frame_solve import FramePoseSolver
from instanthmr_blender.solve.skeleton import BONE_INDEX, CAPTURE_RIG, MHR70_INDEX
from instanthmr_blender.video.live_source import LiveSource, LiveSourceError, parse_source
from testkit.contract_models import DetectorBox, build_instanthmr_model, build_rfdetr_model, load_sample_pose
from testkit.mjpeg_server import MjpegServer, encode_video, solid_frames, unused_port
from testkit.realnet_take import realnet_take

TIMEOUT = 1.5  # seconds: the live source's open / read timeout in these tests


@pytest.fixture(scope="module")
def served(fixtures_dir):
    """The first 60 frames of the lab clip (60 fps, portrait), scaled to 320 px high: (jpegs, fps, (H, W))."""
    return encode_video(fixtures_dir / "video" / "one_person_lab.mp4", max_frames=60, max_side=320)


@pytest.fixture(scope="module")
def capture_settings(served, tmp_path_factory):
    folder = tmp_path_factory.mktemp("live-models")
    detector = build_rfdetr_model(folder / "rfdetr.onnx", resolution=48, boxes=(DetectorBox(0.5, 0.5, 0.45, 0.85),))
    hmr = build_instanthmr_model(folder / "instanthmr.onnx", image_size=served[2])
    return CaptureSettings(source="", detector_model=str(detector), hmr_model=str(hmr), device="cpu", threads=1,
                           detector_stride=3, max_persons=1, min_track_length=3)


@pytest.fixture(scope="module")
def models(capture_settings):
    return build_models(capture_settings)


class SlowHMR:
    """InstantHMR that takes `delay` seconds longer per frame: the models are slower than the camera."""

    def __init__(self, inner, delay):
        self.inner, self.delay = inner, delay

    def predict(self, frame_rgb, boxes):
        time.sleep(self.delay)
        return self.inner.predict(frame_rgb, boxes)

    def __getattr__(self, name):  # the camera, the graph, the model path: the wrapped model's
        return getattr(self.inner, name)


def live_threads():
    return [t for t in threading.enumerate() if t.name.startswith("instanthmr-live")]


def wait_for(condition, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def settings_for(url, capture_settings, **kw):
    return LiveSettings(url, capture_settings, timeout=TIMEOUT, calibration_frames=4, **kw)


def test_sources_are_camera_indices_or_stream_urls():
    assert parse_source("0") == 0 and parse_source(" 2 ") == 2
    assert parse_source("rtsp://192.168.1.20:8554/live") == "rtsp://192.168.1.20:8554/live"
    with pytest.raises(LiveSourceError, match="neither a camera index") as error:
        parse_source("webcam")
    assert "\n" not in str(error.value)


def test_unreachable_url_fails_in_one_line_within_the_timeout():
    url = f"http://127.0.0.1:{unused_port()}/stream.mjpg"
    began = time.monotonic()
    with pytest.raises(LiveSourceError) as error:
        LiveSource(url, timeout=TIMEOUT)
    assert time.monotonic() - began < TIMEOUT + 1.5
    message = str(error.value)
    assert "\n" not in message and url in message and "unreachable" in message


def test_a_server_that_never_answers_fails_within_the_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/stream.mjpg"
        began = time.monotonic()
        with pytest.raises(LiveSourceError) as error:
            LiveSource(url, timeout=TIMEOUT)
        assert time.monotonic() - began < TIMEOUT + 2.0
    assert "\n" not in str(error.value)


def test_an_absent_camera_fails_in_one_line():
    with pytest.raises(LiveSourceError, match="camera 63 could not be opened") as error:
        LiveSource(63, timeout=TIMEOUT)
    assert "\n" not in str(error.value) and "in use by another program" in str(error.value)


def test_live_capture_from_the_stream_solves_poses_and_reports_latency(served, capture_settings, models):
    with MjpegServer(served[0], served[1], lifetime=20) as server:
        live = LiveCapture(settings_for(server.url, capture_settings), detector=models[0], hmr=models[1]).start()
        try:
            assert live.source.info.width == served[2][1] and live.source.info.height == served[2][0]
            posed = wait_for(lambda: (p := live.latest()) is not None and p.person() is not None
                             and p.person().quats is not None, 10)
            assert posed, live.error
            time.sleep(0.5)
            pose, stats = live.latest(), live.stats()
        finally:
            live.stop()
    person = pose.person()
    assert person.quats.shape == (len(CAPTURE_RIG), 4) and np.isfinite(person.quats).all()
    assert np.allclose(np.linalg.norm(person.quats, axis=1), 1.0, atol=1e-6)
    assert person.rest is not None and np.isfinite(person.root_location).all()
    assert pose.camera_matrix_world.shape == (4, 4)
    assert stats.processed > 4 and stats.posed > 0 and stats.grabbed >= stats.processed
    assert stats.fps > 0 and stats.source_fps > 0
    assert stats.latency_ms > 0 and stats.hmr_ms > 0 and stats.detector_ms > 0 and stats.solve_ms > 0
    assert pose.ready_time > pose.grab_time
    assert "latency" in stats.text() and "fps" in stats.text()
    assert not live.running and not live_threads()
    assert not live.source._capture.isOpened()  # the stream was closed
    assert live.error == ""


def test_slow_models_drop_stale_frames_instead_of_queueing_them(served, capture_settings, models):
    with MjpegServer(served[0], served[1], lifetime=20) as server:
        live = LiveCapture(settings_for(server.url, capture_settings), detector=models[0],
                           hmr=SlowHMR(models[1], 0.15)).start()
        try:
            assert wait_for(lambda: live.stats().processed >= 6, 15), live.error
        finally:
            live.stop()
    stats = live.stats()
    assert stats.dropped > 0
    picks = list(live.picks)
    # every frame the models took was the newest one that had arrived: nothing waits in a queue
    assert all(sequence == newest for sequence, newest in picks)
    sequences = [sequence for sequence, _ in picks]
    assert np.all(np.diff(sequences) > 0) and np.any(np.diff(sequences) > 1)
    # every frame that arrived was processed or dropped (one may still wait in the newest-frame slot)
    assert stats.grabbed - stats.processed - stats.dropped in (0, 1)


def test_recording_gives_a_take_whose_timing_matches_the_stream(served, capture_settings, models):
    with MjpegServer(served[0], served[1], lifetime=20) as server:
        live = LiveCapture(settings_for(server.url, capture_settings, take_fps=30.0), detector=models[0],
                           hmr=models[1]).start()
        try:
            assert wait_for(lambda: live.stats().processed >= 3, 10), live.error
            started = time.monotonic()
            live.start_recording()
            time.sleep(1.5)
            take = live.stop_recording()
            stopped = time.monotonic()
        finally:
            live.stop()
        sent = np.array(server.sent_times)
    served_seconds = np.count_nonzero((sent >= started) & (sent <= stopped)) / served[1]
    take_seconds = (take.frames[-1] - take.frames[0] + 1) / take.fps
    assert take.fps == 30.0 and take.num_tracks == 1
    assert abs(take_seconds - served_seconds) < 0.25, (take_seconds, served_seconds)
    assert take.valid.sum() >= 10 and np.all(np.diff(take.frames) > 0)
    assert take.image_size == served[2] and take.source.startswith("stream http://127.0.0.1")
    # the camera and the provenance of an offline capture: the model's own camera, the file that made the take
    camera = models[1].camera(served[2])
    assert (take.focal_length, take.principal_point) == (camera.focal_length, camera.principal_point)
    assert take.model_info["file"] == models[1].model_path.name and len(take.model_info["sha256"]) == 64
    with pytest.raises(LiveError, match="nothing was recorded"):
        live.stop_recording()


def test_take_columns_resample_uneven_frames_onto_the_take_grid():
    times = np.array([10.0, 10.031, 10.045, 10.2, 10.21, 10.5])
    frames, kept = take_columns(times, 30.0)
    # 10.031 and 10.045 both round to frame 1 (the later is kept), 10.2 and 10.21 to frame 6
    assert frames.tolist() == [0, 1, 6, 15] and kept.tolist() == [0, 2, 4, 5]


def test_a_stream_that_dies_ends_the_capture_with_one_line_within_the_timeout(capture_settings, models):
    with MjpegServer(solid_frames(), 30.0, stall_after=15, lifetime=20) as server:
        live = LiveCapture(settings_for(server.url, capture_settings), detector=models[0], hmr=models[1]).start()
        try:
            assert wait_for(lambda: not live.running, TIMEOUT + 4.0)
        finally:
            live.stop()
    assert "stopped sending frames" in live.error and "\n" not in live.error
    assert live.stats().grabbed == 15 and not live_threads()


def test_record_live_records_for_the_duration_and_keeps_a_partial_take_when_the_stream_dies(
        served, capture_settings, models):
    with MjpegServer(served[0], served[1], lifetime=20) as server:
        recording = record_live(settings_for(server.url, capture_settings), 1.0, detector=models[0], hmr=models[1])
    assert recording.error == "" and recording.take.num_tracks == 1
    assert 0.7 <= recording.take.frames[-1] / recording.take.fps <= 1.3
    with MjpegServer(served[0], served[1], stall_after=45, lifetime=20) as server:
        recording = record_live(settings_for(server.url, capture_settings), 30.0, detector=models[0], hmr=models[1])
    assert "stopped sending frames" in recording.error and recording.take.num_frames > 3
    with pytest.raises(LiveSourceError):
        record_live(settings_for(f"http://127.0.0.1:{unused_port()}/x", capture_settings), 1.0, detector=models[0],
                    hmr=models[1])


def test_the_streaming_one_euro_filter_is_the_causal_filter():
    rng = np.random.default_rng(3)
    signal = np.cumsum(rng.normal(0, 0.01, (40, 70, 3)), axis=0)
    signal[10:12, 5] = np.nan
    stream = filters.keypoint_stream("medium")
    live = np.stack([stream.step(sample, 1 / 30) for sample in signal])
    offline = filters.smooth_keypoints(signal, 30, "medium", "one_euro")
    assert np.allclose(live, offline, equal_nan=True)


def _realnet_world(fixtures_dir, step):
    """The real-network take's person in world space (its own floor), every `step`-th of its 60 frames a second
    (the reference solve costs 40-150 ms a frame: the tests take few)."""
    take = realnet_take(fixtures_dir, step)
    joints = np.where(take.valid[0][:, None, None], take.joints_cam[0].astype(np.float64), np.nan)
    return ground.camera_to_world(joints, ground.estimate_floor(joints[None]).camera_matrix_world)


def test_the_fast_frame_solve_is_the_offline_solve_of_that_frame(fixtures_dir):
    # real-network keypoints (body, feet, knuckles; fingers absent) and the full 70 keypoints of the sample pose
    # with keypoints removed at random, so every fallback is taken (eyes for ears, shoulders for the neck, the
    # next side reference, bones unknown in the frame)
    realnet = _realnet_world(fixtures_dir, 3)
    sample = ground.camera_to_world(load_sample_pose().joints_3d.astype(np.float64) + [0.1, 0.0, 3.0], np.eye(4))
    rng = np.random.default_rng(5)
    holes = np.repeat(sample[None], 20, axis=0) + rng.normal(0, 0.02, (20, 70, 3))
    holes[rng.random((20, 70)) < 0.15] = np.nan
    for world in (realnet, holes):
        rest, spine = build_rest(world, 30.0, symmetric_lengths=False)
        fast = FramePoseSolver(rest, spine["spine_lengths"])
        for frame in range(len(world)):
            quats, root, keyed, root_keyed = solve_pose(rest, world[frame : frame + 1], spine["spine_lengths"], 0, 30)
            fast.reset()  # a one-frame clip: no roll carried from the frame before
            got = fast.solve(world[frame])
            assert np.array_equal(got[2], keyed[0]) and got[3] == root_keyed[0]
            assert np.allclose(got[0], quats[0], atol=1e-9) and np.allclose(got[1], root[0], atol=1e-9), frame
    assert 0 < keyed.sum() < keyed.size  # some bones were unknown in the last frame with holes


def _below_the_spine(bone: int) -> bool:
    """The pelvis and the legs: bones the spine bow (smoothed over time offline, per frame live) does not move."""
    while bone > 0:
        if CAPTURE_RIG[bone].name == "spine.01":
            return False
        bone = BONE_INDEX[CAPTURE_RIG[bone].parent]
    return True


def _same_rotations(a, b):
    """Quaternions (..., 4) equal up to sign (the offline solve makes signs continuous over time)."""
    return np.allclose(np.minimum(np.abs(a - b).max(-1), np.abs(a + b).max(-1)), 0.0, atol=1e-9)


def test_the_live_pose_is_the_offline_solve_with_smoothing_off(fixtures_dir):
    # Live frames carry the hinge rolls over like the offline solve's rows: the pelvis and the legs (with knees
    # passing through straight) and the root location are the offline solve of the same frames; the spine bow
    # and the bones above it differ by the offline 0.1 s smoothing of the neck distance, which looks ahead.
    world = _realnet_world(fixtures_dir, 2)
    camera = np.eye(4)
    joints_cam = ground.world_to_camera(world, camera)
    settings = LiveSettings("0", CaptureSettings(source=""), smoothing="off", calibration_frames=10)
    solver = LivePersonSolver(settings, lambda _: camera)
    live = [solver.update(joints_cam[frame], frame / 30.0) for frame in range(len(world))]
    first = next(frame for frame, solved in enumerate(live) if solved is not None)
    quats, root, keyed, root_keyed = solve_pose(solver.rest, world[first:], solver.frame_solver.spine_lengths, 0, 30)
    legs = [bone for bone in range(solver.rest.num_bones) if _below_the_spine(bone)]
    knees = [BONE_INDEX[name] for name in ("thigh.L", "shin.L", "thigh.R", "shin.R")]
    assert set(knees) < set(legs) and keyed[:, knees].mean() > 0.9
    live_quats = np.stack([solved[0] for solved in live[first:]])
    assert _same_rotations(live_quats[:, legs], quats[:, legs])
    assert np.allclose(np.stack([solved[1] for solved in live[first:]])[root_keyed], root[root_keyed], atol=1e-9)
    # one frame at a time with nothing carried (every frame its own one-frame clip) would differ at the knees
    alone = np.stack([solve_pose(solver.rest, world[frame : frame + 1], solver.frame_solver.spine_lengths, 0, 30)[0][0]
                      for frame in range(first, len(world), 4)])
    assert not _same_rotations(alone[:, legs], quats[::4, legs])


def test_the_live_solve_reproduces_the_keypoints_directions():
    pose = load_sample_pose()
    joints_cam = pose.joints_3d.astype(np.float64) + np.array([0.1, 0.0, 3.0])
    settings = LiveSettings("0", CaptureSettings(source=""), smoothing="off", calibration_frames=3,
                            symmetric_lengths=False)
    camera = ground.estimate_floor(np.repeat(joints_cam[None, None], 3, axis=1), mode="none").camera_matrix_world
    solver = LivePersonSolver(settings, lambda _: camera)
    results = [solver.update(joints_cam, 0.1 * i) for i in range(4)]
    assert results[:2] == [None, None] and results[2] is not None
    quats, root = results[3]
    heads, tails = forward_kinematics(solver.rest, quats[None], root[None])
    world = ground.camera_to_world(joints_cam, camera)
    for bone, (head_kp, tail_kp) in {"shin.L": ("left_knee", "left_ankle"),
                                     "forearm.R": ("right_elbow", "right_wrist")}.items():
        b = BONE_INDEX[bone]
        wanted = world[MHR70_INDEX[tail_kp]] - world[MHR70_INDEX[head_kp]]
        got = tails[0, b] - heads[0, b]
        cosine = wanted @ got / np.linalg.norm(wanted) / np.linalg.norm(got)
        assert np.degrees(np.arccos(min(cosine, 1.0))) < 0.5


def test_only_the_followed_person_is_solved_and_follow_can_change_while_running(served, capture_settings,
                                                                                 tmp_path):
    from dataclasses import replace

    two = (DetectorBox(0.3, 0.5, 0.3, 0.8, logit=3.0), DetectorBox(0.7, 0.5, 0.3, 0.8, logit=2.0))
    settings = replace(capture_settings, max_persons=2,
                       detector_model=str(build_rfdetr_model(tmp_path / "two.onnx", resolution=48, boxes=two)))
    detector, hmr = build_models(settings)
    with MjpegServer(served[0], served[1], lifetime=20) as server:
        live = LiveCapture(settings_for(server.url, settings, follow=1), detector=detector, hmr=hmr).start()
        try:
            def solved(track_id):
                pose = live.latest()
                return pose is not None and len(pose.persons) == 2 and pose.person(track_id).quats is not None
            assert wait_for(lambda: solved(1), 10), live.error
            assert live.latest().person(0).quats is None
            live.follow = 0
            assert wait_for(lambda: solved(0), 10), live.error
            assert live.latest().person(1).quats is None
        finally:
            live.stop()


def test_live_settings_out_of_range_are_named():
    with pytest.raises(LiveError, match="live setting timeout = 0 must be more than 0 seconds"):
        LiveSettings("0", CaptureSettings(source=""), timeout=0).check()
    with pytest.raises(LiveError, match="smoothing"):
        LiveSettings("0", CaptureSettings(source=""), smoothing="heavy").check()
