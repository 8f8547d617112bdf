"""The threaded capture pipeline on a real video with the contract stand-in models."""

import threading
from pathlib import Path

import numpy as np
import pytest

from instanthmr_blender.capture.loading import build_models
from instanthmr_blender.capture.offline import capture, run_capture
from instanthmr_blender.capture.settings import CaptureCancelled, CaptureError, CaptureSettings, Progress
from instanthmr_blender.pose.detector import OnnxRFDETR
from instanthmr_blender.pose.hmr import InstantHMR
from instanthmr_blender.take import Take
from instanthmr_blender.video.frames import FrameSourceError
from testkit.contract_models import DetectorBox, build_instanthmr_model, build_rfdetr_model

FRAMES = 24
# Where the stand-in detector "sees" two people in every frame (normalised cx, cy, w, h).
TWO_PEOPLE = (DetectorBox(0.30, 0.55, 0.10, 0.50, logit=3.0), DetectorBox(0.70, 0.55, 0.12, 0.55, logit=2.0))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return (
        build_rfdetr_model(folder / "rfdetr.onnx", resolution=48, boxes=TWO_PEOPLE),
        build_instanthmr_model(folder / "instanthmr.onnx", image_size=(994, 1768)),
    )


@pytest.fixture
def settings(fixtures_dir, models):
    return CaptureSettings(
        source=str(fixtures_dir / "video" / "two_people_walking.mp4"),
        end=FRAMES,
        detector_model=str(models[0]),
        hmr_model=str(models[1]),
        min_track_length=3,
        device="cpu",
        threads=1,
    )


def load(models, settings):
    detector = OnnxRFDETR(models[0], confidence=settings.det_confidence, device="cpu", threads=1)
    hmr = InstantHMR(models[1], device="cpu", max_batch=settings.max_persons + 1, threads=1)
    return detector, hmr


class CountingDetector:
    """Passes through to a real detector, counting frames; can be told to fail on its nth call."""

    def __init__(self, inner, fail_on_call=None):
        self.inner = inner
        self.confidence = inner.confidence
        self.calls = 0
        self.frames = 0
        self.fail_on_call = fail_on_call

    def detect(self, frames_rgb):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("boom: the detector broke")
        self.frames += len(frames_rgb)
        return self.inner.detect(frames_rgb)


def our_threads():
    return [t for t in threading.enumerate() if t.name.startswith("instanthmr-")]


def test_capture_builds_a_take_of_two_tracked_people(settings):
    updates = []
    take = capture(settings, progress=updates.append)
    assert isinstance(take, Take)
    take.validate()
    assert take.num_frames == FRAMES and list(take.frames) == list(range(FRAMES))
    assert list(take.track_ids) == [0, 1]
    assert take.valid.all()  # both people in every frame, ids stable
    assert take.image_size == (994, 1768)
    assert take.focal_length == pytest.approx(np.hypot(1768, 994))
    assert take.principal_point == (884.0, 497.0)
    # row 0 is the more confident (first-detected) person, on the left
    np.testing.assert_allclose(take.bbox[0, 0], [(0.30 - 0.05) * 1768, 0.30 * 994, 0.35 * 1768, 0.80 * 994], rtol=1e-5)
    assert (take.joints_2d[0, :, :, 0].mean(axis=1) < take.joints_2d[1, :, :, 0].mean(axis=1)).all()
    assert np.isfinite(take.joints_cam).all() and (take.joints_cam[..., 2] > 0).all()

    # progress rises by one frame at a time up to the total
    assert [u.frames_done for u in updates] == list(range(1, FRAMES + 1))
    assert all(isinstance(u, Progress) and u.frames_total == FRAMES for u in updates)
    assert updates[-1].eta_seconds == 0 and updates[-1].fps > 0
    assert updates[-1].decode_ms > 0 and updates[-1].detector_ms > 0 and updates[-1].hmr_ms > 0
    assert our_threads() == []


def test_same_input_same_take(models, settings):
    settings.detector_stride = 3
    first = run_capture(settings, detector=load(models, settings)[0], hmr=load(models, settings)[1])
    second = run_capture(settings, detector=load(models, settings)[0], hmr=load(models, settings)[1])
    for name in ("frames", "track_ids", "valid", "score", "bbox", "joints_cam", "cam_trans", "joints_2d",
                 "mhr_params", "shape_params"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name), err_msg=name)


def test_detector_stride_runs_the_detector_on_every_nth_frame_only(models, settings):
    settings.detector_stride = 4
    detector, hmr = load(models, settings)
    counting = CountingDetector(detector)
    take = run_capture(settings, detector=counting, hmr=hmr)
    assert counting.frames == FRAMES // 4
    # between detections the boxes follow the keypoints and keep the detector's size (no growth)
    assert take.valid.all()
    sizes = np.maximum(take.bbox[..., 2] - take.bbox[..., 0], take.bbox[..., 3] - take.bbox[..., 1])
    np.testing.assert_allclose(sizes, np.broadcast_to(sizes[:, :1], sizes.shape), rtol=0.01)


def test_cancel_half_way_stops_within_one_frame_and_joins_threads(models, settings):
    cancel = threading.Event()
    seen = []

    def progress(update):
        seen.append(update.frames_done)
        if update.frames_done == FRAMES // 2:
            cancel.set()

    detector, hmr = load(models, settings)
    with pytest.raises(CaptureCancelled, match=f"after {FRAMES // 2} frames"):
        run_capture(settings, detector=detector, hmr=hmr, progress=progress, cancel=cancel)
    assert max(seen) == FRAMES // 2
    assert our_threads() == []


def test_cancel_as_a_callable(models, settings):
    calls = []
    detector, hmr = load(models, settings)
    with pytest.raises(CaptureCancelled):
        run_capture(settings, detector=detector, hmr=hmr, cancel=lambda: calls.append(1) or len(calls) > 3)
    assert our_threads() == []


def test_an_exception_in_the_detector_reaches_the_caller(models, settings):
    detector, hmr = load(models, settings)
    settings.detector_batch = 1
    failing = CountingDetector(detector, fail_on_call=3)
    with pytest.raises(CaptureError, match=r"person detection failed at source frame 2 of `.*two_people_walking\.mp4`"
                                           r": RuntimeError: boom") as info:
        run_capture(settings, detector=failing, hmr=hmr)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert our_threads() == []


def test_an_exception_in_hmr_or_progress_joins_the_threads(models, settings):
    detector, hmr = load(models, settings)

    def broken_progress(update):
        raise KeyError("progress bar gone")

    with pytest.raises(KeyError):
        run_capture(settings, detector=detector, hmr=hmr, progress=broken_progress)
    assert our_threads() == []


def test_bad_inputs_are_clear_errors(models, settings, tmp_path):
    detector, hmr = load(models, settings)
    settings.source = str(tmp_path / "missing.mp4")
    with pytest.raises(FrameSourceError, match="missing.mp4"):
        run_capture(settings, detector=detector, hmr=hmr)
    settings.detector_stride = 0
    with pytest.raises(CaptureError, match="detector_stride = 0 must be 1 or more"):
        run_capture(settings, detector=detector, hmr=hmr)
    assert our_threads() == []


def test_an_exception_while_decoding_reaches_the_caller(models, settings, monkeypatch):
    """A source that breaks after a few frames (a damaged file): the error names the stage and frame."""
    from instanthmr_blender.capture import offline as pipeline
    from instanthmr_blender.video.frames import open_source

    real = open_source(settings.source)

    class BreakingSource:
        info = real.info

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            real.close()

        def count(self, start, end, step):
            return real.count(start, end, step)

        def frames(self, start, end, step):
            for index, rgb in real.frames(start, end, step):
                if index == 5:
                    raise OSError("corrupt packet")
                yield index, rgb

    monkeypatch.setattr(pipeline, "open_source", lambda path, fps: BreakingSource())
    detector, hmr = load(models, settings)
    with pytest.raises(CaptureError, match=r"reading frames failed at source frame 5 of .*: OSError: corrupt packet"):
        run_capture(settings, detector=detector, hmr=hmr)
    assert our_threads() == []


class TurnTaker:
    """Wraps a model's call, counting how many wrapped calls run at the same moment (held a few ms each, so
    calls that are allowed to overlap would)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = 0
        self.most_at_once = 0

    def wrap(self, call, sizes):
        def wrapped(first, *rest):
            with self.lock:
                self.active += 1
                self.most_at_once = max(self.most_at_once, self.active)
            try:
                threading.Event().wait(0.003)
                sizes.append(len(first) if not rest else len(rest[0]))
                return call(first, *rest)
            finally:
                with self.lock:
                    self.active -= 1

        return wrapped


def test_on_the_cpu_the_models_take_turns_and_run_only_real_rows(settings):
    """Both models on the CPU: never two model calls at once, one frame per detector call, no padded crops."""
    settings.detector_stride = 2
    detector, hmr = build_models(settings)
    assert detector.batch_size == 1 and not hmr.pad
    turns, detector_sizes, hmr_sizes = TurnTaker(), [], []
    detector.detect = turns.wrap(detector.detect, detector_sizes)
    hmr.predict = turns.wrap(hmr.predict, hmr_sizes)
    take = run_capture(settings, detector=detector, hmr=hmr)
    assert take.num_tracks == 2
    assert turns.most_at_once == 1
    assert detector_sizes == [1] * (FRAMES // 2)
    # two people (and the stand-in's two boxes on detector frames): never padded to max_persons + 1
    assert set(hmr_sizes) == {2} and len(hmr_sizes) == FRAMES


# --- Short clips, damaged videos, where the take says it came from ----------------------------------------------

def capture_with_summary(settings, models, detector=None):
    summaries = []
    default_detector, hmr = load(models, settings)
    take = run_capture(settings, detector=detector or default_detector, hmr=hmr, summary=summaries.append)
    assert len(summaries) == 1
    return take, summaries[0]


def write_frames(folder, count):
    import cv2

    folder.mkdir()
    image = np.full((994, 1768, 3), 90, np.uint8)
    for index in range(count):
        assert cv2.imwrite(str(folder / f"frame_{index:04d}.png"), image)
    return folder


@pytest.mark.parametrize("source", ["image", "sequence", "short range"])
def test_clips_shorter_than_the_minimum_track_length_keep_their_people(models, settings, tmp_path, source):
    """With the default minimum track length (5), a single image, a 3-image sequence and a 4-frame range
    still capture the two people seen in all of their frames: the length is clamped to the frames processed."""
    settings.min_track_length = CaptureSettings.min_track_length
    if source == "image":
        settings.source, settings.end = str(write_frames(tmp_path / "one", 1) / "frame_0000.png"), None
        expected = 1
    elif source == "sequence":
        settings.source, settings.end = str(write_frames(tmp_path / "seq", 3)), None
        expected = 3
    else:
        settings.start, settings.end = 100, 104
        expected = 4
    take, summary = capture_with_summary(settings, models)
    assert take.num_frames == expected and list(take.track_ids) == [0, 1] and take.valid.all()
    assert summary.min_track_length == expected and summary.short_tracks_dropped == 0
    assert summary.short_tracks_message("--min-track-length") == ""


class OnePersonAfterTwoFrames:
    """The stand-in detector, but the second person is only found in the first two detector calls."""

    def __init__(self, inner):
        self.inner, self.confidence, self.calls = inner, inner.confidence, 0

    def detect(self, frames_rgb):
        found = self.inner.detect(frames_rgb)
        out = []
        for item in found:
            self.calls += 1
            out.append(item if self.calls <= 2 else type(item)(item.boxes[:1], item.scores[:1]))
        return out


def test_people_dropped_as_too_short_are_counted_with_the_way_to_keep_them(models, settings):
    settings.min_track_length = 10
    detector, _ = load(models, settings)
    take, summary = capture_with_summary(settings, models, detector=OnePersonAfterTwoFrames(detector))
    assert take.num_tracks == 1
    assert summary.short_tracks_dropped == 1 and summary.min_track_length == 10
    message = summary.short_tracks_message("--min-track-length")
    assert message.startswith("1 person seen in fewer than 10 of the 24 frames left out")
    assert "--min-track-length" in message and "detected" not in message


def test_a_cut_off_video_says_how_many_frames_were_read(models, settings, fixtures_dir, tmp_path):
    """A copy of the clip with only the first 30% of its bytes: its header still lists 230 frames."""
    data = (fixtures_dir / "video" / "two_people_walking.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    settings.source, settings.end = str(cut), None
    take, summary = capture_with_summary(settings, models)
    assert summary.truncated and summary.header_frames == summary.frames_expected == 230
    assert summary.frames_read == summary.readable_frames == take.num_frames < 230
    assert list(take.frames) == list(range(take.num_frames))  # the take covers exactly what was captured
    message = summary.truncation_message()
    assert str(cut) in message and f"captured {take.num_frames} of the 230 frames" in message


def test_a_complete_capture_has_nothing_to_report(models, settings):
    take, summary = capture_with_summary(settings, models)
    assert not summary.truncated and summary.truncation_message() == ""
    assert summary.frames_read == summary.frames_expected == FRAMES


def test_the_take_records_the_clip_as_an_absolute_path(models, settings, fixtures_dir, monkeypatch):
    monkeypatch.chdir(fixtures_dir / "video")
    settings.source = "two_people_walking.mp4"
    take, _ = capture_with_summary(settings, models)
    # The working folder as the OS gives it (links resolved), so compare the files, not the spellings.
    assert Path(take.source).is_absolute()
    assert Path(take.source).resolve() == (fixtures_dir / "video" / "two_people_walking.mp4").resolve()
