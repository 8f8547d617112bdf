"""Live frame sources: a camera by device index, or a network stream by URL (HTTP MJPEG, RTSP: how phone camera
apps expose a phone), read with OpenCV, never hanging: opening and every read are bounded by a timeout.

How the timeout is enforced (measured with opencv-python-headless 4.11 on Linux): for URLs, OpenCV's FFmpeg
backend honours CAP_PROP_OPEN_TIMEOUT_MSEC and CAP_PROP_READ_TIMEOUT_MSEC (a server that accepts and stays
silent fails the open after the timeout; a stream that stops sending fails the read after it). Cameras' backends
(V4L2, Media Foundation, AVFoundation) do not all honour them, so opening and the first read also run in a
helper thread with a deadline, and the live pipeline treats "no frame for `timeout` seconds" as a dead source.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np

STREAM_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp", "udp", "tcp")


class LiveSourceError(RuntimeError):
    """A camera or stream that cannot be opened or stopped delivering; the message says which and what to do."""


@dataclass(frozen=True)
class LiveSourceInfo:
    """What a live source delivers: its name as the user gave it, frame size in pixels, and the rate it
    announces (0 when unknown: MJPEG over HTTP has no rate, OpenCV then reports a placeholder)."""

    name: str
    width: int
    height: int
    fps: float


def parse_source(text: str | int) -> int | str:
    """A camera index (int) or a stream URL (str) from what the user typed; LiveSourceError otherwise."""
    if isinstance(text, int):
        return text
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    if urlsplit(text).scheme.lower() in STREAM_SCHEMES and urlsplit(text).netloc:
        return text
    raise LiveSourceError(
        f"live source `{text}` is neither a camera index (0, 1, ...) nor a stream URL "
        f"({', '.join(s + '://' for s in STREAM_SCHEMES[:3])}...): check what you typed"
    )


def camera_backend() -> int:
    """The platform's own camera API: V4L2 on Linux, Media Foundation on Windows, AVFoundation on macOS."""
    if sys.platform.startswith("win"):
        return cv2.CAP_MSMF
    if sys.platform == "darwin":
        return cv2.CAP_AVFOUNDATION
    return cv2.CAP_V4L2


def call_with_deadline(function: Callable[[], Any], seconds: float, what: str) -> Any:
    """function() run in a helper thread; LiveSourceError naming `what` when it has not returned in `seconds`.

    A call that overruns is left running in its (daemon) thread: OpenCV offers no way to interrupt it."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = function()
        except BaseException as error:  # raised on the caller's thread below
            result["error"] = error

    thread = threading.Thread(target=run, name="instanthmr-live-open", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise LiveSourceError(f"{what} did not answer within {seconds:g} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


class LiveSource:
    """An open camera or stream. `read()` returns (grab_time, rgb): grab_time on time.monotonic()'s clock (seconds,
    when the frame arrived: the camera clock the take's timing comes from), rgb (H, W, 3) uint8.

    width, height, fps: requested from a camera (0 = the device's default; the device may pick the nearest mode it
    has); a stream sends what it sends. timeout: seconds for opening and for each frame.
    """

    def __init__(self, source: str | int, *, width: int = 0, height: int = 0, fps: float = 0.0,
                 timeout: float = 5.0) -> None:
        self.source = parse_source(source)
        self.timeout = float(timeout)
        self.decode_seconds = 0.0  # the last frame's decoding and colour conversion
        self.name = f"camera {self.source}" if isinstance(self.source, int) else f"stream {self.source}"
        self._capture = call_with_deadline(lambda: self._open(width, height, fps), self.timeout + 1.0,
                                           f"{self.name}: opening it")
        try:
            first = call_with_deadline(self._read_raw, self.timeout + 1.0, f"{self.name}: its first frame")
        except LiveSourceError as error:
            raise LiveSourceError(f"{error}: {self._hint()}") from None
        if first is None:
            self._capture.release()
            raise LiveSourceError(f"{self.name} opened but sent no frame within {self.timeout:g} s: {self._hint()}")
        self._first: tuple[float, np.ndarray] | None = first
        height_px, width_px = first[1].shape[:2]
        announced = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        # FFmpeg's MJPEG demuxer announces 25 fps whatever the stream does: only cameras' rates are meaningful.
        self.info = LiveSourceInfo(self.name, width_px, height_px,
                                   announced if isinstance(self.source, int) and 0 < announced < 1000 else 0.0)

    def _hint(self) -> str:
        if isinstance(self.source, int):
            return "is the camera connected and not in use by another program?"
        return "is the phone app streaming and the address right (same network)?"

    def _open(self, width: int, height: int, fps: float) -> cv2.VideoCapture:
        milliseconds = int(self.timeout * 1000)
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, milliseconds, cv2.CAP_PROP_READ_TIMEOUT_MSEC, milliseconds]
        if isinstance(self.source, int):
            requested = [(cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                         (cv2.CAP_PROP_FPS, fps)]
            params = timeouts + [value for prop, wanted in requested if wanted for value in (prop, int(wanted))]
            capture = cv2.VideoCapture(self.source, camera_backend(), params)
        else:
            capture = cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, timeouts)
        if not capture.isOpened():
            capture.release()
            if isinstance(self.source, int):
                raise LiveSourceError(f"{self.name} could not be opened: {self._hint()}")
            raise LiveSourceError(f"{self.name} is unreachable or not a video stream (within {self.timeout:g} s): "
                                  f"{self._hint()}")
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # where the backend supports it: fewer stale frames inside OpenCV
        return capture

    def _read_raw(self) -> tuple[float, np.ndarray] | None:
        if not self._capture.grab():
            return None
        grabbed = time.monotonic()
        ok, bgr = self._capture.retrieve()  # the decoding happens here
        if not ok or bgr is None:
            return None
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self.decode_seconds = time.monotonic() - grabbed
        return grabbed, rgb

    def read(self) -> tuple[float, np.ndarray]:
        """The next frame; LiveSourceError when the source stopped (closed, or silent for `timeout` s)."""
        if self._first is not None:
            first, self._first = self._first, None
            return first
        frame = self._read_raw()
        if frame is None:
            raise LiveSourceError(f"{self.name} stopped sending frames (ended, or silent for {self.timeout:g} s): "
                                  f"{self._hint()}")
        return frame

    def close(self) -> None:
        self._capture.release()
