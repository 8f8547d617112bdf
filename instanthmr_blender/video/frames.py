"""Frames from a video file, an image-sequence folder, a printf pattern or one image.

Every source yields `(source frame index, RGB uint8 (H, W, 3))`, one frame at a time, upright (phone-video
rotation metadata applied), so nothing downstream ever sees BGR, a sideways frame or a whole clip in memory.
"""

from __future__ import annotations

import math
import operator
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from .formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

# A container fps outside this range is a broken header, not a real frame rate.
_PLAUSIBLE_FPS = (0.1, 1000.0)
# "%d", "%4d", "%04d": the frame-number placeholder of an image-sequence pattern such as "img_%04d.png".
_PRINTF_PLACEHOLDER = re.compile(r"%(0?)(\d*)d")


class FrameSourceError(ValueError):
    """A video, folder or image that cannot be read; the message names the input and what to do."""


@dataclass(frozen=True)
class SourceInfo:
    """What a frame source holds. `width`/`height` are those of the yielded (upright) frames, in pixels."""

    path: str
    kind: str  # "video" | "sequence" | "image"
    width: int
    height: int
    fps: float  # videos: the container's frame rate; images and sequences: the fps given to open_source
    frame_count: int  # frames in the source (1 for an image)
    rotation: int  # degrees clockwise applied to honour phone-video rotation metadata (0/90/180/270)


def rotate_frame(frame: np.ndarray, degrees_clockwise: int) -> np.ndarray:
    """Rotate an (H, W, C) image clockwise by 0, 90, 180 or 270 degrees; returns a contiguous array."""
    degrees = int(degrees_clockwise) % 360
    if degrees == 0:
        return frame
    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    if degrees not in codes:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {degrees_clockwise}")
    return cv2.rotate(frame, codes[degrees])


def natural_sort_key(name: str) -> tuple:
    """Sort key that orders "frame2.png" before "frame10.png" (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", name.lower())
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part) for part in parts)


def is_printf_pattern(path: str | os.PathLike) -> bool:
    """True when the file name holds exactly one frame-number placeholder such as `%04d`."""
    return len(_PRINTF_PLACEHOLDER.findall(os.path.basename(os.fspath(path)))) == 1


class FrameSource:
    """A readable source of RGB frames; use as a context manager (close() releases the decoder).

    Frame indices are positions in the source: 0 is the first frame of a video, the first file of a
    sequence (whatever number its name carries) or the image itself.
    """

    info: SourceInfo

    def __init__(self, info: SourceInfo) -> None:
        self.info = info
        self._closed = False
        # Each frames() call bumps this, so a generator from an earlier call notices it was superseded
        # (they share one decoder position) instead of yielding frames from the wrong place.
        self._generation = 0

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def frames(
        self, start: int = 0, end: int | None = None, step: int = 1
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield `(source frame index, RGB uint8 (H, W, 3) contiguous)` for `range(start, end, step)`.

        `end` is exclusive (None: to the end of the source). Frames are decoded one at a time; skipped
        frames of a video are grabbed, not decoded into images. An invalid range raises FrameSourceError
        here, before iteration. If the file turns out to be shorter than its header says, iteration stops
        at the last readable frame and `info.frame_count` is corrected.
        """
        start, end, step = self._check_range(start, end, step)
        self._generation += 1
        return self._iterate(start, end, step, self._generation)

    def count(self, start: int = 0, end: int | None = None, step: int = 1) -> int:
        """How many frames `frames(start, end, step)` yields (by the reported frame count)."""
        start, end, step = self._check_range(start, end, step)
        return len(range(start, end, step))

    def _check_range(self, start, end, step) -> tuple[int, int, int]:
        if self._closed:
            raise FrameSourceError(f"`{self.info.path}` was already closed: open it again to read frames")
        total = self.info.frame_count
        try:
            start = operator.index(start)
            step = operator.index(step)
            end = total if end is None else operator.index(end)
        except TypeError as error:
            raise FrameSourceError(
                f"frame range for `{self.info.path}` must be whole numbers: {error}"
            ) from None
        if step < 1:
            raise FrameSourceError(f"frame step must be 1 or more, got {step}")
        if start < 0 or start >= total:
            raise FrameSourceError(
                f"start frame {start} is outside `{self.info.path}`, which has frames 0 to {total - 1}"
            )
        if end > total:
            raise FrameSourceError(
                f"end frame {end} is past the end of `{self.info.path}`, which has {total} frames "
                f"(end is exclusive: use at most {total}, or leave it empty for the whole clip)"
            )
        if end <= start:
            raise FrameSourceError(
                f"empty frame range: end frame {end} must be greater than start frame {start}"
            )
        return start, end, step

    def _iterate(self, start: int, end: int, step: int, generation: int) -> Iterator[tuple[int, np.ndarray]]:
        raise NotImplementedError

    def _check_current(self, generation: int) -> None:
        if self._closed:
            raise FrameSourceError(f"`{self.info.path}` was closed while its frames were being read")
        if generation != self._generation:
            raise FrameSourceError(
                f"a newer frames() call on `{self.info.path}` took over the decoder: "
                "read one range at a time, or open the source twice"
            )


class VideoFrameSource(FrameSource):
    """A video file decoded by OpenCV (FFmpeg backend), honouring rotation metadata of phone videos."""

    def __init__(self, path: Path, fallback_fps: float) -> None:
        self._path = path
        self._capture = self._open_capture()
        # OpenCV reports the rotation tag but (in the PyPI wheels) does not apply it by default. Rotate
        # ourselves so the behaviour does not depend on the build; if the backend insists on rotating,
        # trust it and do not rotate twice.
        rotation = _normalise_rotation(self._capture.get(cv2.CAP_PROP_ORIENTATION_META))
        self._capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        backend_rotates = bool(self._capture.get(cv2.CAP_PROP_ORIENTATION_AUTO))
        self._rotation_to_apply = 0 if backend_rotates else rotation

        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        if not (math.isfinite(fps) and _PLAUSIBLE_FPS[0] <= fps <= _PLAUSIBLE_FPS[1]):
            fps = fallback_fps
        reported_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))

        # Decode frame 0 now: it proves the file is readable and gives the true (rotated) frame size,
        # which is what every yielded frame will have.
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise FrameSourceError(
                f"`{path}` has 0 readable frames: is it a video file? It may be damaged or use a codec "
                "OpenCV cannot decode (re-encode it as H.264 or VP9 mp4)"
            )
        self._position = 1  # index of the frame the next read() returns
        if reported_count <= 0:
            # Some containers (streams, some webm/mkv) carry no frame count: count once by grabbing.
            reported_count = 1 + self._grab_until_end()
            self._seek(0)
        height, width = rotate_frame(first, self._rotation_to_apply).shape[:2]
        super().__init__(
            SourceInfo(
                path=str(path), kind="video", width=width, height=height, fps=fps,
                frame_count=reported_count, rotation=rotation,
            )
        )

    def close(self) -> None:
        if not self._closed:
            self._capture.release()
        super().close()

    def _open_capture(self) -> cv2.VideoCapture:
        # Prefer FFmpeg explicitly: on Windows the default (Media Foundation) seeks and rotates differently.
        capture = cv2.VideoCapture(str(self._path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture = cv2.VideoCapture(str(self._path))
        if not capture.isOpened():
            raise FrameSourceError(
                f"`{self._path}` could not be opened as a video: is it a complete video file? "
                "A recording that was cut off, or a format OpenCV's FFmpeg cannot read, fails like this"
            )
        return capture

    def _grab_until_end(self) -> int:
        grabbed = 0
        while self._capture.grab():
            grabbed += 1
        self._position += grabbed
        return grabbed

    def _seek(self, index: int) -> None:
        if index == self._position:
            return
        if self._capture.set(cv2.CAP_PROP_POS_FRAMES, index) and (
            int(self._capture.get(cv2.CAP_PROP_POS_FRAMES)) == index
        ):
            self._position = index
            return
        # Seeking unsupported or inexact for this file: reopen and grab forward, slow but exact.
        self._capture.release()
        self._capture = self._open_capture()
        self._capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        self._position = 0
        while self._position < index and self._capture.grab():
            self._position += 1

    def _found_end(self, readable_frames: int) -> None:
        # The header promised more frames than the file holds: from now on report what is really there.
        if readable_frames < self.info.frame_count:
            self.info = replace(self.info, frame_count=readable_frames)

    def _iterate(self, start, end, step, generation):
        self._check_current(generation)
        self._seek(start)
        index = start
        while index < end:
            self._check_current(generation)
            ok, bgr = self._capture.read() if self._position == index else (False, None)
            if not ok or bgr is None:
                if index == start:
                    raise FrameSourceError(
                        f"start frame {start} is past the last readable frame of `{self.info.path}` "
                        f"(its header claims more frames than the file holds): choose an earlier start"
                    )
                self._found_end(index)
                return
            self._position = index + 1
            rgb = cv2.cvtColor(rotate_frame(bgr, self._rotation_to_apply), cv2.COLOR_BGR2RGB)
            yield index, rgb
            self._check_current(generation)
            next_index = index + step
            if next_index >= end:
                return
            # Skipped frames are grabbed (demuxed and decoded, never converted to images): much cheaper
            # than read(), and exact where seeking on some codecs is not.
            while self._position < next_index:
                if not self._capture.grab():
                    self._found_end(self._position)
                    return
                self._position += 1
            index = next_index


class ImageSequenceSource(FrameSource):
    """Still images read one per frame: a folder, a printf pattern's matches, or a single image."""

    def __init__(self, paths: list[Path], *, display_path: str, kind: str, fps: float) -> None:
        self.paths = paths
        first = _read_image(paths[0])
        height, width = first.shape[:2]
        super().__init__(
            SourceInfo(
                path=display_path, kind=kind, width=width, height=height, fps=fps,
                frame_count=len(paths), rotation=0,
            )
        )

    def _iterate(self, start, end, step, generation):
        for index in range(start, end, step):
            self._check_current(generation)
            image = _read_image(self.paths[index])
            if image.shape[:2] != (self.info.height, self.info.width):
                raise FrameSourceError(
                    f"`{self.paths[index]}` is {image.shape[1]}x{image.shape[0]} but the sequence "
                    f"`{self.info.path}` started at {self.info.width}x{self.info.height}: "
                    "every image of a sequence must have the same size"
                )
            yield index, image


def open_source(path: str | os.PathLike, *, fps: float = 30.0) -> FrameSource:
    """Open a video file, an image-sequence folder, a printf pattern ("img_%04d.png") or a single image.

    `fps` is the frame rate of image sequences and single images, and the fallback for a video whose
    header has no plausible frame rate. Raises FrameSourceError with a message naming the input.
    """
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise FrameSourceError(f"fps must be a positive number, got {fps!r}")
    text = os.fspath(path)
    if not text:
        raise FrameSourceError("no video path given: choose a video file, an image folder or an image")
    location = Path(text)
    if not location.exists() and is_printf_pattern(text):
        return ImageSequenceSource(_pattern_matches(location), display_path=text, kind="sequence", fps=fps)
    if location.is_dir():
        return ImageSequenceSource(_folder_images(location), display_path=text, kind="sequence", fps=fps)
    if not location.exists():
        raise FrameSourceError(f"`{text}` does not exist: check the path (was the file moved or renamed?)")
    suffix = location.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return VideoFrameSource(location, fallback_fps=float(fps))
    if suffix in IMAGE_EXTENSIONS:
        return ImageSequenceSource([location], display_path=text, kind="image", fps=fps)
    raise FrameSourceError(
        f"`{text}` is not a video or image file this add-on reads (videos: {', '.join(VIDEO_EXTENSIONS)}; "
        f"images: {', '.join(IMAGE_EXTENSIONS)}): convert it, or pick a folder of images"
    )


def _folder_images(folder: Path) -> list[Path]:
    images = [
        entry for entry in folder.iterdir()
        if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not images:
        raise FrameSourceError(
            f"folder `{folder}` contains no images ({', '.join(IMAGE_EXTENSIONS)}): "
            "choose the folder that holds the frames, or a video file"
        )
    return sorted(images, key=lambda entry: natural_sort_key(entry.name))


def _pattern_matches(pattern: Path) -> list[Path]:
    """Files matching e.g. `img_%04d.png`, ordered by their frame number."""
    folder = pattern.parent
    placeholder = _PRINTF_PLACEHOLDER.search(pattern.name)
    zero_padded, width = placeholder.group(1), placeholder.group(2)
    # "%04d" writes at least 4 digits, zero-padded; "%4d" pads with spaces, which no one puts in file names.
    digits = rf"\d{{{int(width)},}}" if zero_padded and width else r"\d+"
    prefix, suffix = pattern.name[: placeholder.start()], pattern.name[placeholder.end() :]
    name_regex = re.compile(re.escape(prefix) + f"({digits})" + re.escape(suffix) + r"\Z")
    if not folder.is_dir():
        raise FrameSourceError(f"the folder of image pattern `{pattern}` does not exist: check the path")
    numbered = []
    for entry in folder.iterdir():
        match = name_regex.match(entry.name)
        if match and entry.is_file():
            numbered.append((int(match.group(1)), entry))
    if not numbered:
        raise FrameSourceError(
            f"no files match the image pattern `{pattern}`: check the name and the number of digits "
            "(e.g. `frame_%04d.png` matches frame_0001.png)"
        )
    numbered.sort(key=lambda item: item[0])
    return [entry for _, entry in numbered]


def _read_image(path: Path) -> np.ndarray:
    """One image as RGB uint8 (H, W, 3). Decodes from bytes so non-ASCII paths work on Windows too."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise FrameSourceError(f"`{path}` could not be read ({error.strerror or error})") from None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise FrameSourceError(
            f"`{path}` could not be decoded as an image: is it a damaged or non-image file?"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _normalise_rotation(degrees: float) -> int:
    if not math.isfinite(degrees):
        return 0
    return int(round(degrees / 90.0)) * 90 % 360
