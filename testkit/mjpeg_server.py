"""A loopback network camera for tests and benchmarks: an HTTP server on 127.0.0.1 serving a fixture video as
multipart MJPEG (`multipart/x-mixed-replace`, what phone camera apps and IP cameras serve) at its real rate.

Bounded: it binds 127.0.0.1 only, serves for at most `lifetime` seconds and then stops by itself (also when the
test forgets to), and `stall_after` makes a dead stream (the connection stays open, frames stop coming).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

BOUNDARY = "instanthmrframe"


def encode_video(path: str | Path, *, max_frames: int | None = None, max_side: int | None = None,
                 quality: int = 85) -> tuple[list[bytes], float, tuple[int, int]]:
    """The video's frames as JPEG bytes (optionally the first `max_frames`, scaled so the longer side is at most
    `max_side` px), its frame rate, and the served (H, W)."""
    import cv2  # imported here: the real-Blender tier has OpenCV only once the extension is enabled

    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames: list[bytes] = []
    size = (0, 0)
    while max_frames is None or len(frames) < max_frames:
        ok, bgr = capture.read()
        if not ok:
            break
        if max_side and max(bgr.shape[:2]) > max_side:
            scale = max_side / max(bgr.shape[:2])
            bgr = cv2.resize(bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)),
                             interpolation=cv2.INTER_AREA)
        size = bgr.shape[:2]
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        frames.append(jpeg.tobytes())
    capture.release()
    if not frames:
        raise ValueError(f"{path}: no readable frames")
    return frames, float(fps), (int(size[0]), int(size[1]))


@dataclass
class MjpegServer:
    """Serves `frames` (JPEG bytes) in a loop at `fps` to every client of http://127.0.0.1:<port>/stream.mjpg.

    stall_after: after that many frames per client, stop sending but keep the connection open (a dead stream).
    lifetime: seconds after start when the server shuts itself down. `sent` counts frames sent, with
    `sent_times` their send times (time.monotonic()).
    """

    frames: list[bytes]
    fps: float
    stall_after: int | None = None
    lifetime: float = 60.0
    sent: int = 0
    sent_times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                if self.path != "/stream.mjpg":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                server._stream(self.wfile)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"

    def _stream(self, out) -> None:
        period = 1.0 / self.fps
        began = time.monotonic()
        count = 0
        try:
            while not self._stop.is_set():
                if self.stall_after is not None and count >= self.stall_after:
                    self._stop.wait(0.05)  # dead stream: the socket stays open, nothing comes
                    continue
                # real rate: frame n leaves at n / fps after the first, whatever the encoding cost
                delay = began + count * period - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                jpeg = self.frames[count % len(self.frames)]
                out.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                          .encode("ascii") + jpeg + b"\r\n")
                out.flush()
                self.sent += 1
                self.sent_times.append(time.monotonic())
                count += 1
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client went away

    def start(self) -> MjpegServer:
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                         name="mjpeg-server", daemon=True).start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._timer.cancel()
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def solid_frames(count: int = 4, size: tuple[int, int] = (120, 160)) -> list[bytes]:
    """Small synthetic JPEG frames, for tests that only need a stream, not a person."""
    import cv2

    frames = []
    for index in range(count):
        image = np.full((*size, 3), 40 * index % 255, np.uint8)
        frames.append(cv2.imencode(".jpg", image)[1].tobytes())
    return frames
