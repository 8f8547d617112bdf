"""Frame sources: the real fixture clips, clips and images written here, rotation metadata and bad input."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from video_tags import set_mp4_rotation

from instanthmr_blender.video import frames
from instanthmr_blender.video.frames import FrameSourceError, open_source, rotate_frame

FIXTURE_CLIPS = [
    # name, width, height, fps, frame count
    ("two_people_walking.mp4", 1768, 994, 30.0, 230),
    ("one_person_lab.mp4", 1080, 1920, 60.0, 100),
    ("pedestrians.avi", 768, 576, 10.0, 795),
]


def write_video(path: Path, bgr_frames, fourcc: str, fps: float = 24.0) -> Path:
    height, width = bgr_frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path.suffix}"
    for frame in bgr_frames:
        writer.write(frame)
    writer.release()
    return path


def numbered_frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Frames whose mean brightness encodes their index (lossy codecs keep the mean)."""
    return [np.full((height, width, 3), 10 + 20 * i, np.uint8) for i in range(count)]


def index_from_brightness(rgb: np.ndarray) -> int:
    return int(round((float(rgb.mean()) - 10) / 20))


class WrappedCapture:
    """A real cv2.VideoCapture behind a Python object, so a test can change one method.

    (Subclassing cv2.VideoCapture itself corrupts memory when the instance is freed.)
    """

    _real_capture = cv2.VideoCapture

    def __init__(self, *args):
        self._inner = self._real_capture(*args)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


# -- the real clips ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, width, height, fps, count", FIXTURE_CLIPS)
def test_fixture_clip_info(fixtures_dir, name, width, height, fps, count):
    with open_source(fixtures_dir / "video" / name) as source:
        info = source.info
        assert (info.kind, info.width, info.height, info.frame_count, info.rotation) == (
            "video", width, height, count, 0,
        )
        assert info.fps == pytest.approx(fps)
        assert info.path.endswith(name)
        index, frame = next(source.frames(start=count - 1))
        assert index == count - 1
        assert frame.shape == (height, width, 3) and frame.dtype == np.uint8 and frame.flags.c_contiguous


def test_fixture_full_pass_stops_at_the_real_end(fixtures_dir):
    with open_source(fixtures_dir / "video" / "one_person_lab.mp4") as source:
        indices = [index for index, _ in source.frames()]
    assert indices == list(range(100))


def test_range_and_step_give_the_right_frames(fixtures_dir):
    path = fixtures_dir / "video" / "pedestrians.avi"
    reference = cv2.VideoCapture(str(path))
    expected = {}
    for index in range(60):
        ok, bgr = reference.read()
        assert ok
        expected[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    reference.release()

    with open_source(path) as source:
        assert source.count(10, 60, 7) == 8
        got = list(source.frames(start=10, end=60, step=7))
        assert [index for index, _ in got] == [10, 17, 24, 31, 38, 45, 52, 59]
        for index, frame in got:
            np.testing.assert_array_equal(frame, expected[index])
        # A second range on the same source seeks back correctly.
        again = list(source.frames(start=3, end=6))
        assert [index for index, _ in again] == [3, 4, 5]
        np.testing.assert_array_equal(again[1][1], expected[4])
        assert source.count() == 795 and source.count(step=100) == 8


def test_seek_fallback_when_the_backend_cannot_seek(fixtures_dir, monkeypatch):
    path = fixtures_dir / "video" / "pedestrians.avi"
    reference = cv2.VideoCapture(str(path))
    for _ in range(41):
        ok, bgr = reference.read()
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    class NoSeekCapture(WrappedCapture):
        def set(self, prop, value):
            return False if prop == cv2.CAP_PROP_POS_FRAMES else self._inner.set(prop, value)

    monkeypatch.setattr(frames.cv2, "VideoCapture", NoSeekCapture)
    with open_source(path) as source:
        (index, frame), = source.frames(start=40, end=41)
    assert index == 40
    np.testing.assert_array_equal(frame, expected)


# -- clips written here -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, fourcc", [(".avi", "FFV1"), (".mkv", "FFV1"), (".mov", "png ")])
def test_frames_are_rgb(tmp_path, suffix, fourcc):
    bgr = np.zeros((48, 64, 3), np.uint8)
    bgr[:] = (200, 60, 30)  # blue 200, green 60, red 30 as OpenCV writes it
    path = write_video(tmp_path / f"colour{suffix}", [bgr] * 3, fourcc)
    with open_source(path) as source:
        for _, rgb in source.frames():
            assert tuple(rgb[10, 10]) == (30, 60, 200)


def test_webm_and_mp4_open(tmp_path):
    for suffix, fourcc in ((".webm", "VP80"), (".mp4", "mp4v")):
        path = write_video(tmp_path / f"clip{suffix}", numbered_frames(6), fourcc, fps=25)
        with open_source(path) as source:
            assert (source.info.frame_count, source.info.fps) == (6, 25.0)
            assert [index_from_brightness(rgb) for _, rgb in source.frames()] == list(range(6))


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path, degrees):
    bgr = np.zeros((48, 64, 3), np.uint8)
    bgr[:24, :32] = (0, 0, 255)  # red top-left quadrant of the stored (landscape) frame
    path = write_video(tmp_path / "phone.mp4", [bgr] * 4, "mp4v")
    set_mp4_rotation(path, degrees)
    with open_source(path) as source:
        info = source.info
        assert info.rotation == degrees
        upright_shape = (64, 48) if degrees in (90, 270) else (48, 64)
        assert (info.height, info.width) == upright_shape
        frame_list = list(source.frames())
    assert len(frame_list) == 4
    rgb = frame_list[0][1]
    assert rgb.shape == (*upright_shape, 3)
    # Clockwise rotation carries the top-left corner to the top-right (90), bottom-right (180) or
    # bottom-left (270).
    height, width = upright_shape
    bottom, right = height - 5, width - 5
    corners = {"tl": rgb[4, 4], "tr": rgb[4, right], "bl": rgb[bottom, 4], "br": rgb[bottom, right]}
    red_corner = {90: "tr", 180: "br", 270: "bl"}[degrees]
    for name, pixel in corners.items():
        assert (pixel[0] > 200) == (name == red_corner), (name, pixel)


def test_rotate_frame_directly():
    image = np.repeat(np.arange(2 * 3, dtype=np.uint8).reshape(2, 3, 1), 3, axis=2)
    np.testing.assert_array_equal(rotate_frame(image, 0), image)
    assert rotate_frame(image, 90)[:, :, 0].tolist() == [[3, 0], [4, 1], [5, 2]]
    assert rotate_frame(image, 180)[:, :, 0].tolist() == [[5, 4, 3], [2, 1, 0]]
    assert rotate_frame(image, -90)[:, :, 0].tolist() == [[2, 5], [1, 4], [0, 3]]
    with pytest.raises(ValueError):
        rotate_frame(image, 45)


def test_truncated_file_stops_at_the_real_end(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (20, 48, 64, 3), dtype=np.uint8)
    path = write_video(tmp_path / "full.avi", list(noise), "MJPG")
    cut = tmp_path / "cut.avi"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # cut mid-recording: the header still says 20 frames
    with open_source(cut) as source:
        assert source.info.frame_count == 20
        got = [index for index, _ in source.frames()]
        assert 0 < len(got) < 20 and got == list(range(len(got)))
        assert source.info.frame_count == len(got)  # corrected once the real end was found
    with open_source(cut) as source, pytest.raises(FrameSourceError, match="past the last readable frame"):
        list(source.frames(start=18))


def test_missing_frame_count_is_counted(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.avi", numbered_frames(7), "MJPG")

    class NoCountCapture(WrappedCapture):
        def get(self, prop):
            return 0.0 if prop == cv2.CAP_PROP_FRAME_COUNT else self._inner.get(prop)

    monkeypatch.setattr(frames.cv2, "VideoCapture", NoCountCapture)
    with open_source(path) as source:
        assert source.info.frame_count == 7
        assert [index_from_brightness(rgb) for _, rgb in source.frames()] == list(range(7))


def test_a_newer_frames_call_supersedes_the_old_generator(fixtures_dir):
    with open_source(fixtures_dir / "video" / "pedestrians.avi") as source:
        first = source.frames(0, 10)
        next(first)
        second = source.frames(5, 8)
        assert [index for index, _ in second] == [5, 6, 7]
        with pytest.raises(FrameSourceError, match="newer frames"):
            next(first)


# -- image sequences and images ----------------------------------------------------------------------


def colour(index: int) -> np.ndarray:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:] = (index * 10, 255 - index * 10, 7)
    return rgb


def test_folder_sequence_sorted_naturally(tmp_path):
    for number in range(1, 13):
        write_png(tmp_path / f"frame_{number}.png", colour(number))
    (tmp_path / "notes.txt").write_text("not an image")
    write_png(tmp_path / ".hidden.png", colour(0))
    with open_source(tmp_path, fps=24) as source:
        info = source.info
        assert (info.kind, info.width, info.height, info.fps) == ("sequence", 30, 20, 24)
        assert info.frame_count == 12
        got = list(source.frames(start=1, step=4))
    assert [index for index, _ in got] == [1, 5, 9]
    for index, rgb in got:
        np.testing.assert_array_equal(rgb, colour(index + 1))  # index 0 is frame_1.png


def test_printf_pattern(tmp_path):
    for number in (3, 4, 5, 10):
        write_png(tmp_path / f"img_{number:04d}.png", colour(number))
    write_png(tmp_path / "img_07.png", colour(24))  # two digits: not part of img_%04d.png
    write_png(tmp_path / "other_0006.png", colour(24))
    with open_source(tmp_path / "img_%04d.png") as source:
        assert source.info.kind == "sequence" and source.info.frame_count == 4
        got = list(source.frames())
    for (_, rgb), number in zip(got, (3, 4, 5, 10)):
        np.testing.assert_array_equal(rgb, colour(number))
    assert [index for index, _ in got] == [0, 1, 2, 3]


def test_single_image(tmp_path):
    path = write_png(tmp_path / "still.png", colour(5))
    with open_source(path, fps=12.5) as source:
        assert (source.info.kind, source.info.frame_count, source.info.fps, source.info.rotation) == (
            "image", 1, 12.5, 0,
        )
        (index, rgb), = source.frames()
    assert index == 0
    np.testing.assert_array_equal(rgb, colour(5))


def test_jpeg_image_is_rgb(tmp_path):
    path = tmp_path / "still.jpg"
    cv2.imwrite(str(path), np.full((16, 16, 3), (255, 0, 0), np.uint8))  # pure blue in BGR
    with open_source(path) as source:
        (_, rgb), = source.frames()
    assert rgb[8, 8, 2] > 240 and rgb[8, 8, 0] < 15


# -- bad input ----------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FrameSourceError, match="does not exist"):
        open_source(tmp_path / "nope.mp4")


def test_not_a_video_or_image(tmp_path):
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    with pytest.raises(FrameSourceError, match="not a video or image"):
        open_source(text)


def test_garbage_with_a_video_extension(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(FrameSourceError, match="fake.mp4"):
        open_source(fake)


def test_video_with_zero_frames(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "empty.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 24, (64, 48))
    writer.release()
    with pytest.raises(FrameSourceError, match="empty.avi"):
        open_source(tmp_path / "empty.avi")


def test_empty_folder_and_folder_without_images(tmp_path):
    with pytest.raises(FrameSourceError, match="contains no images"):
        open_source(tmp_path)
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(FrameSourceError, match="contains no images"):
        open_source(tmp_path)


def test_pattern_without_matches(tmp_path):
    write_png(tmp_path / "img_1.png", colour(1))
    with pytest.raises(FrameSourceError, match="no files match"):
        open_source(tmp_path / "img_%04d.png")
    with pytest.raises(FrameSourceError, match="does not exist"):
        open_source(tmp_path / "missing_folder" / "img_%04d.png")


def test_damaged_image(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(FrameSourceError, match="broken.png"):
        open_source(tmp_path / "broken.png")


def test_sequence_with_a_bad_frame_fails_naming_it(tmp_path):
    write_png(tmp_path / "f_1.png", colour(1))
    write_png(tmp_path / "f_2.png", np.zeros((10, 10, 3), np.uint8))
    (tmp_path / "f_3.png").write_bytes(b"junk")
    with open_source(tmp_path) as source:
        frames_iter = source.frames()
        next(frames_iter)
        with pytest.raises(FrameSourceError, match="f_2.png.*same size"):
            next(frames_iter)
        with pytest.raises(FrameSourceError, match="f_3.png"):
            list(source.frames(start=2))


@pytest.mark.parametrize(
    "start, end, step, message",
    [
        (-1, None, 1, "outside"),
        (5, None, 1, "outside"),
        (0, 6, 1, "past the end"),
        (3, 3, 1, "empty frame range"),
        (3, 2, 1, "empty frame range"),
        (0, None, 0, "step"),
        (0.5, None, 1, "whole numbers"),
    ],
)
def test_invalid_ranges(tmp_path, start, end, step, message):
    for number in range(5):
        write_png(tmp_path / f"f{number}.png", colour(number))
    with open_source(tmp_path) as source:
        with pytest.raises(FrameSourceError, match=message):
            source.frames(start, end, step)  # raised at the call, before iterating
        with pytest.raises(FrameSourceError, match=message):
            source.count(start, end, step)


def test_range_outside_a_video(fixtures_dir):
    with open_source(fixtures_dir / "video" / "one_person_lab.mp4") as source:
        with pytest.raises(FrameSourceError, match="one_person_lab.mp4"):
            source.frames(start=100)
        with pytest.raises(FrameSourceError, match="has 100 frames"):
            source.frames(end=101)


def test_closed_source_refuses(fixtures_dir):
    source = open_source(fixtures_dir / "video" / "pedestrians.avi")
    running = source.frames()
    next(running)
    source.close()
    assert source.closed
    with pytest.raises(FrameSourceError, match="closed"):
        next(running)
    with pytest.raises(FrameSourceError, match="closed"):
        source.frames()


@pytest.mark.parametrize("fps", [0, -5, float("nan"), "30"])
def test_bad_fps(tmp_path, fps):
    path = write_png(tmp_path / "still.png", colour(1))
    with pytest.raises(FrameSourceError, match="fps"):
        open_source(path, fps=fps)
