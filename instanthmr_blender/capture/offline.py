"""The offline capture loop: frames -> person detection -> InstantHMR -> tracking -> a Take.

Decoding and detection run in two background threads feeding bounded queues; InstantHMR and tracking run
on the calling thread, so the models set the pace and memory stays bounded. Every decision depends only on
the frames, never on timing, so the same input always gives the same take.

Scheduling on the CPU (measured with real-cost models, `tools/bench_pipeline.py`, docs/performance.md): when
both models run on the CPU they take turns (one lock around every model call), each with the whole thread
budget, and their idle threads sleep instead of spinning. Two sessions running at once, each with its own
thread pool, fought over the cores: the detector took 3x as long in the pipeline as alone. The detector runs
one frame per call on the CPU (two frames cost twice one); on a GPU it batches two.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..pose.detector import PersonDetector
from ..pose.hmr import InstantHMR
from ..pose.sam3d import Sam3DBody
from ..take import Take, TakeBuilder
from ..video.frames import open_source
from .loading import build_models, runs_on_cpu
from .provenance import model_provenance
from .settings import USER_ERRORS, CaptureCancelled, CaptureError, CaptureSettings, CaptureSummary, Progress
from .step import Frame, TakeRecorder, process_frame
from .tracking import PersonTracker, TrackerSettings

#: How long a blocked queue operation waits before looking at the stop/cancel flags again, seconds.
_POLL_SECONDS = 0.02


class _StageClock:
    """Total seconds and frame count of one stage; written by one thread, read by the caller's."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.frames = 0

    def add(self, seconds: float, frames: int) -> None:
        self.seconds += seconds
        self.frames += frames

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / self.frames if self.frames else 0.0


@dataclass
class _Failure:
    stage: str
    frame_index: int | None
    error: BaseException


_END = object()


def _cancel_check(cancel: threading.Event | Callable[[], bool] | None) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel


class _Workers:
    """The decode and detection threads, the queues between them, and a stop flag they both honour."""

    def __init__(self, source, settings: CaptureSettings, detector: PersonDetector) -> None:
        self.source = source
        self.settings = settings
        self.detector = detector
        self.detector_batch = settings.detector_batch or int(getattr(detector, "batch_size", 1))
        self.stop = threading.Event()
        # Forced detections run on the caller's thread while the detection thread may be busy: one at a time.
        # When the models take turns on the CPU, InstantHMR calls take this lock too.
        self.detector_lock = threading.Lock()
        self.decoded: queue.Queue = queue.Queue(maxsize=settings.queue_frames)
        self.ready: queue.Queue = queue.Queue(maxsize=settings.queue_frames)
        self.decode_clock = _StageClock()
        self.detect_clock = _StageClock()
        self.threads = [
            threading.Thread(target=self._decode, name="instanthmr-decode", daemon=True),
            threading.Thread(target=self._detect, name="instanthmr-detect", daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def shutdown(self) -> None:
        """Stop both threads and wait for them (each finishes at most its current frame or batch)."""
        self.stop.set()
        for thread in self.threads:
            while thread.is_alive():
                self._drain()
                thread.join(timeout=_POLL_SECONDS)
        self._drain()

    def _drain(self) -> None:
        for q in (self.decoded, self.ready):
            try:
                while True:
                    q.get_nowait()
            except queue.Empty:
                pass

    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> Any:
        while not self.stop.is_set():
            try:
                return q.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
        return _END

    def _decode(self) -> None:
        s = self.settings
        column = 0
        try:
            frames = self.source.frames(s.start, s.end, s.step)
            while not self.stop.is_set():
                began = time.perf_counter()
                item = next(frames, None)
                if item is None:
                    break
                index, rgb = item
                self.decode_clock.add(time.perf_counter() - began, 1)
                if not self._put(self.decoded, Frame(column, index, rgb)):
                    return
                column += 1
            self._put(self.decoded, _END)
        except BaseException as error:  # handed to the caller's thread, which raises it
            self._put(self.decoded, _Failure("reading frames", s.start + column * s.step, error))

    def _detect(self) -> None:
        s = self.settings
        # Frames wait here until the detector has run on every frame of theirs that needs it. A batch is
        # cut by frame count alone (never by timing), so batches, and so results, are reproducible.
        pending: list[Frame] = []
        max_pending = max(self.detector_batch * s.detector_stride, s.queue_frames)
        current = None
        try:
            while True:
                item = self._get(self.decoded)
                if isinstance(item, _Failure):
                    self._put(self.ready, item)
                    return
                if item is not _END:
                    pending.append(item)
                needing = [f for f in pending if f.column % s.detector_stride == 0]
                if item is _END or len(needing) >= self.detector_batch or len(pending) >= max_pending:
                    if needing:
                        current = needing[0].index
                        began = time.perf_counter()
                        with self.detector_lock:
                            results = self.detector.detect([f.rgb for f in needing])
                        self.detect_clock.add(time.perf_counter() - began, len(needing))
                        for frame, found in zip(needing, results):
                            frame.detections = found
                    for frame in pending:
                        if not self._put(self.ready, frame):
                            return
                    pending = []
                if item is _END:
                    self._put(self.ready, _END)
                    return
        except BaseException as error:
            self._put(self.ready, _Failure("person detection", current, error))


def run_capture(
    settings: CaptureSettings,
    *,
    detector: PersonDetector,
    hmr: InstantHMR,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    summary: Callable[[CaptureSummary], None] | None = None,
) -> Take:
    """Capture every person of `settings.source` into a Take, with the given (already loaded) models.

    progress: called on this thread after every processed frame. cancel: an Event or a callable, checked
    before every frame and while waiting; when set, CaptureCancelled is raised within one frame. summary:
    called once with the CaptureSummary (frames missing from a damaged video, people dropped as too short)
    before the take is returned. The take's `source` is the absolute path of the clip, so it can be found
    again from any working folder.
    Worker threads are always joined before this returns or raises. Errors: FrameSourceError/ModelError as
    they are; anything else from a stage as CaptureError naming the stage and the source frame.
    """
    settings.check()
    cancelled = _cancel_check(cancel)
    tracker = PersonTracker(
        TrackerSettings(max_persons=settings.max_persons, lost_track_frames=settings.lost_track_frames)
    )
    candidate_limit = settings.max_persons + 1

    with open_source(settings.source, fps=settings.fps) as source:
        info = source.info
        frames_total = source.count(settings.start, settings.end, settings.step)
        image_size = (info.height, info.width)
        # The take's camera is the one the model's results live in: the user's lens, else the model's own.
        if isinstance(hmr, Sam3DBody):  # its camera is the intrinsics it is given
            (focal, principal_point), model_info = hmr.camera(image_size), hmr.model_info
        else:
            camera = hmr.camera(image_size)
            focal, principal_point = camera.focal_length, camera.principal_point
            model_info = model_provenance(hmr.model_path, hmr.graph, camera)
        builder = TakeBuilder(info.fps, image_size, focal, principal_point, source=os.path.abspath(info.path),
                              model_info=model_info)
        record = TakeRecorder(builder)
        hmr_clock = _StageClock()
        workers = _Workers(source, settings, detector)
        serial = settings.serialise_models
        if serial is None:
            serial = runs_on_cpu(detector) and runs_on_cpu(hmr)
        hmr_gate = workers.detector_lock if serial else contextlib.nullcontext()
        started = time.perf_counter()
        frames_done = 0
        workers.start()
        try:
            while True:
                if cancelled():
                    raise CaptureCancelled(f"capture of `{info.path}` cancelled after {frames_done} frames")
                try:
                    item = workers.ready.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
                if item is _END:
                    break
                if isinstance(item, _Failure):
                    _raise_failure(item, info.path)

                frame: Frame = item
                builder.add_frame(frame.index)
                began = time.perf_counter()
                found = frame.detections
                if found is None and tracker.detection_needed:
                    # someone's crop lost them: look again now instead of waiting for the stride
                    detect_began = time.perf_counter()
                    try:
                        with workers.detector_lock:
                            (found,) = detector.detect([frame.rgb])
                    except Exception as error:
                        _raise_failure(_Failure("person detection", frame.index, error), info.path)
                    workers.detect_clock.add(time.perf_counter() - detect_began, 1)
                with hmr_gate:
                    began = time.perf_counter()
                    process_frame(frame, found, tracker, hmr, record, candidate_limit, image_size)
                    hmr_clock.add(time.perf_counter() - began, 1)

                frames_done += 1
                if progress is not None:
                    elapsed = max(time.perf_counter() - started, 1e-9)
                    speed = frames_done / elapsed
                    progress(
                        Progress(
                            frames_done=frames_done,
                            frames_total=frames_total,
                            fps=speed,
                            eta_seconds=max(frames_total - frames_done, 0) / speed,
                            decode_ms=workers.decode_clock.ms_per_frame,
                            detector_ms=workers.detect_clock.ms_per_frame,
                            hmr_ms=hmr_clock.ms_per_frame,
                        )
                    )
        finally:
            workers.shutdown()
        readable_frames = source.info.frame_count  # corrected by the source when the file ended early

    # A clip shorter than the minimum track length (one image, a few frames) keeps whoever was seen throughout.
    min_track_length = max(1, min(settings.min_track_length, frames_done))
    lengths = builder.track_lengths()
    take = builder.build(min_track_length=min_track_length)
    # ids as people see them: 0, 1, 2 ... in order of first appearance, whatever short tracks were dropped
    take.track_ids = np.arange(take.num_tracks, dtype=np.int64)
    if summary is not None:
        summary(
            CaptureSummary(
                source=take.source,
                frames_expected=frames_total,
                frames_read=frames_done,
                header_frames=info.frame_count,
                readable_frames=readable_frames,
                short_tracks_dropped=sum(1 for length in lengths.values() if length < min_track_length),
                min_track_length=min_track_length,
            )
        )
    return take


def _raise_failure(failure: _Failure, path: str) -> None:
    error = failure.error
    if isinstance(error, USER_ERRORS):
        raise error
    where = f"at source frame {failure.frame_index}" if failure.frame_index is not None else "at the start"
    raise CaptureError(
        f"{failure.stage} failed {where} of `{path}`: {type(error).__name__}: {error}"
    ) from error


def capture(
    settings: CaptureSettings,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
    summary: Callable[[CaptureSummary], None] | None = None,
) -> Take:
    """Load the models named by `settings` and run the capture (see `run_capture`)."""
    settings.check()
    detector, hmr = build_models(settings, log=log)
    if not isinstance(hmr, Sam3DBody):
        return run_capture(settings, detector=detector, hmr=hmr, progress=progress, cancel=cancel, summary=summary)
    try:
        take = run_capture(settings, detector=detector, hmr=hmr, progress=progress, cancel=cancel, summary=summary)
    finally:
        hmr.close()  # the worker process goes whatever happened
    if log is not None:
        log(hmr.times.summary())
    return take
