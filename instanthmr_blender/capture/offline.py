"""The capture pipeline: frames -> person detection -> InstantHMR -> tracking -> a Take.

Decoding and detection run in two background threads feeding bounded queues; InstantHMR and tracking run
on the calling thread, so the models set the pace and memory stays bounded. Every decision depends only on
the frames, never on timing, so the same input always gives the same take.

Scheduling on the CPU (measured with real-cost models, `tools/bench_pipeline.py`, README "Performance"): when
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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..models.runtime import DEVICE_PROVIDERS, ModelError
from ..pose.detector import Detections, OnnxRFDETR, PersonDetector, TorchRFDETR
from ..pose.hmr import InstantHMR
from ..pose.sam3d import BACKENDS, Sam3DBody, Sam3DError, Sam3DSettings
from ..take import Take, TakeBuilder, TakeError
from ..video.frames import FrameSourceError, open_source
from ..video.lens import DEFAULT_SENSOR_WIDTH_MM, Lens, LensError
from .provenance import model_provenance
from .tracking import PersonTracker, TrackerSettings, box_iou, keypoint_confidence

#: How long a blocked queue operation waits before looking at the stop/cancel flags again, seconds.
_POLL_SECONDS = 0.02
#: Errors whose message already tells the user what to do: passed through unchanged.
_USER_ERRORS = (FrameSourceError, ModelError, TakeError, LensError, Sam3DError)
CPU_PROVIDER = DEVICE_PROVIDERS["cpu"]


class CaptureCancelled(Exception):
    """The user cancelled the capture. Nothing was written; every worker thread has been joined."""


class CaptureError(RuntimeError):
    """The capture failed; the message says in which stage and at which source frame."""


@dataclass
class CaptureSettings:
    """Everything a capture needs. Frames are `range(start, end, step)` of the source (end exclusive)."""

    source: str
    start: int = 0
    end: int | None = None
    step: int = 1
    fps: float = 30.0  # frame rate of image sequences and single images
    detector_backend: str = "onnx"  # "onnx" (ONNX Runtime) | "torch" (the optional `rfdetr` package)
    detector_model: str = ""  # RF-DETR .onnx file (onnx backend)
    detector_variant: str = "nano"  # "nano" | "small" | "medium" | "large" (torch backend)
    detector_resolution: int | None = None  # None: the model's own
    det_confidence: float = 0.5
    detector_stride: int = 1  # run the detector on every Nth processed frame; boxes follow keypoints between
    detector_batch: int = 0  # frames per detector run; 0: 1 on the CPU (batching gains nothing there), 2 on a GPU
    hmr_model: str = ""  # InstantHMR .onnx file
    max_persons: int = 2
    min_track_length: int = 5  # shorter tracks (in frames) are dropped from the take
    lost_track_frames: int = 15
    batch_persons: bool = True  # all people of a frame in one padded InstantHMR batch; False: one at a time
    device: str = "auto"
    threads: int = 0  # intra-op threads per model; 0 lets onnxruntime decide (one per physical core)
    serialise_models: bool | None = None  # one model call at a time; None: when both models run on the CPU
    queue_frames: int = 8  # decoded frames buffered ahead of the models
    # A known camera lens (hmr_graph.capture_camera says what it changes per graph kind); None: the model's own.
    focal_px: float | None = None
    lens_mm: float | None = None
    sensor_width_mm: float = DEFAULT_SENSOR_WIDTH_MM
    backend: str = "instanthmr"  # the pose model: "instanthmr" (ONNX) | "sam3d" (SAM 3D Body in its own Python)
    sam3d: Sam3DSettings = field(default_factory=Sam3DSettings)

    @property
    def lens(self) -> Lens:
        return Lens(self.focal_px, self.lens_mm, self.sensor_width_mm)

    def check(self) -> None:
        """Raise CaptureError naming the first setting out of range."""
        rules = [
            ("step", self.step >= 1, "1 or more"),
            ("detector_stride", self.detector_stride >= 1, "1 or more"),
            ("detector_batch", self.detector_batch >= 0, "0 (automatic) or more"),
            ("max_persons", self.max_persons >= 1, "1 or more"),
            ("min_track_length", self.min_track_length >= 1, "1 or more"),
            ("lost_track_frames", self.lost_track_frames >= 0, "0 or more"),
            ("det_confidence", 0.0 <= self.det_confidence < 1.0, "between 0 and 1"),
            ("queue_frames", self.queue_frames >= 1, "1 or more"),
            ("detector_backend", self.detector_backend in ("onnx", "torch"), '"onnx" or "torch"'),
            ("backend", self.backend in BACKENDS, " or ".join(f'"{name}"' for name in BACKENDS)),
            ("focal_px", self.focal_px is None or self.focal_px > 0, "a positive number of pixels"),
        ]
        for name, ok, wanted in rules:
            if not ok:
                raise CaptureError(f"capture setting {name} = {getattr(self, name)!r} must be {wanted}")
        self.lens.check()


@dataclass(frozen=True)
class CaptureSummary:
    """What the caller should tell the user about a finished capture, beyond the take itself.

    frames_expected: frames the requested range holds by the source's own count (a video's header);
    frames_read: frames actually processed; header_frames / readable_frames: the source's frame count as its
    header gives it / as reading found it (fewer when a video was cut off or damaged); short_tracks_dropped:
    people tracked in fewer than `min_track_length` frames, left out of the take; min_track_length: the length
    applied, which is the setting clamped to the frames processed (a clip shorter than the setting keeps the
    people seen in all of its frames: a single image captures with the defaults).
    """

    source: str
    frames_expected: int
    frames_read: int
    header_frames: int
    readable_frames: int
    short_tracks_dropped: int
    min_track_length: int

    @property
    def truncated(self) -> bool:
        """The source ran out of readable frames before the end of the requested range."""
        return self.frames_read < self.frames_expected

    def truncation_message(self) -> str:
        """One sentence for the user, naming the source and both counts ("" when nothing is missing)."""
        if not self.truncated:
            return ""
        return (
            f"`{self.source}` stopped after {self.readable_frames} readable frames although its header lists "
            f"{self.header_frames}: captured {self.frames_read} of the {self.frames_expected} frames asked for "
            "(the file is cut off or damaged; the scene covers only the captured frames)"
        )

    def short_tracks_message(self, setting: str) -> str:
        """One sentence saying how many people were dropped as too short and how to keep them; `setting`
        names the minimum-track-length control where the user sees it (an option, a panel field)."""
        if not self.short_tracks_dropped:
            return ""
        people = "1 person" if self.short_tracks_dropped == 1 else f"{self.short_tracks_dropped} people"
        return (
            f"{people} seen in fewer than {self.min_track_length} of the {self.frames_read} frames left out as "
            f"too short to track: lower {setting} to keep them (1 keeps everyone)"
        )


@dataclass(frozen=True)
class Progress:
    """Where a capture stands. Stage times are mean milliseconds per frame that went through the stage."""

    frames_done: int
    frames_total: int
    fps: float  # processed frames per second so far
    eta_seconds: float  # at the speed so far
    decode_ms: float
    detector_ms: float
    hmr_ms: float  # InstantHMR plus tracking


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
class Frame:
    """One frame on its way through the models (also the live pipeline's unit of work)."""

    column: int  # position in the capture: 0, 1, 2, ...
    index: int  # source frame index
    rgb: np.ndarray
    detections: Detections | None = None  # None: the detector did not run on this frame


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


def _rank_candidates(
    tracker: PersonTracker, step: int, found: Detections, limit: int
) -> np.ndarray:
    """Indices of the detections worth running InstantHMR on: those overlapping a remembered person first
    (so nobody tracked is crowded out by strangers), then the rest, each group by score; at most `limit`."""
    if len(found) == 0:
        return np.zeros(0, np.int64)
    remembered = [t.predicted_box(step) for t in tracker.tracks.values()]
    overlaps = (
        box_iou(found.boxes, np.array(remembered)).max(axis=1) > 0.0
        if remembered
        else np.zeros(len(found), bool)
    )
    # detections are sorted by score already; a stable sort keeps that order inside each group
    order = np.argsort(~overlaps, kind="stable")
    return order[:limit]


class _Recorder:
    """Writes each frame's people into the TakeBuilder."""

    def __init__(self, builder: TakeBuilder) -> None:
        self.builder = builder

    def add(self, index: int, track_id: int, score: float, box: np.ndarray, poses, row: int) -> None:
        self.builder.add(
            index,
            track_id,
            score=score,
            bbox=box,
            joints_cam=poses.joints_cam[row],
            cam_trans=poses.cam_trans[row],
            joints_2d=poses.joints_2d[row],
            mhr_params=poses.mhr_params[row],
            shape_params=poses.shape_params[row],
        )


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
        record = _Recorder(builder)
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


def runs_on_cpu(model) -> bool:
    """Whether a loaded model (OnnxRFDETR, InstantHMR: `provider`; TorchRFDETR: `device`) computes on the CPU."""
    provider = getattr(model, "provider", None)
    if provider is not None:
        return provider == CPU_PROVIDER
    return str(getattr(model, "device", "cpu")).startswith("cpu")


def process_frame(
    frame: Frame,
    found: Detections | None,
    tracker: PersonTracker,
    hmr: InstantHMR,
    record: _Recorder,
    candidate_limit: int,
    image_size: tuple[int, int],
) -> None:
    """InstantHMR and tracking for one frame, shared by the offline and the live capture.

    found: the detector's output for this frame, or None between detector runs (boxes then follow each tracked
    person's keypoints). record: anything with `add(index, track_id, score, box, poses, row)`, called once per
    person tracked in this frame (poses: hmr.PersonPoses, row: that person's row in it).
    """
    step = frame.column
    try:
        if found is not None:
            chosen = _rank_candidates(tracker, step, found, candidate_limit)
            boxes, scores = found.boxes[chosen], found.scores[chosen]
            poses = hmr.predict(frame.rgb, boxes)
            for track_id, row in tracker.update(step, boxes, scores, poses.joints_2d):
                record.add(frame.index, track_id, float(scores[row]), boxes[row], poses, row)
            return
        carried = tracker.propagate(step)
        if not carried:
            return
        boxes = np.array([box for _, box in carried], np.float32)
        poses = hmr.predict(frame.rgb, boxes)
        for row, (track_id, _) in enumerate(carried):
            confidence = keypoint_confidence(poses.joints_crop[row], poses.joints_2d[row], image_size)
            tracker.observe(step, track_id, boxes[row], poses.joints_2d[row], confidence)
            record.add(frame.index, track_id, tracker.tracks[track_id].score, boxes[row], poses, row)
    except _USER_ERRORS:
        raise
    except Exception as error:
        raise CaptureError(
            f"{getattr(hmr, 'label', 'InstantHMR')} or tracking failed at source frame {frame.index}: "
            f"{type(error).__name__}: {error}"
        ) from error


def _raise_failure(failure: _Failure, path: str) -> None:
    error = failure.error
    if isinstance(error, _USER_ERRORS):
        raise error
    where = f"at source frame {failure.frame_index}" if failure.frame_index is not None else "at the start"
    raise CaptureError(
        f"{failure.stage} failed {where} of `{path}`: {type(error).__name__}: {error}"
    ) from error


def build_models(
    settings: CaptureSettings, log: Callable[[str], None] | None = None
) -> tuple[PersonDetector, InstantHMR | Sam3DBody]:
    """Load the detector and the pose model named by `settings` (ModelError if a file is missing or wrong).
    SAM 3D Body is checked before the detector loads, and its worker is started last: the caller closes it."""
    if settings.backend == "sam3d":
        settings.sam3d.check()
    if settings.detector_backend == "torch":
        detector: PersonDetector = TorchRFDETR(
            settings.detector_variant,
            confidence=settings.det_confidence,
            device=settings.device,
            resolution=settings.detector_resolution,
        )
    else:
        if not settings.detector_model:
            raise ModelError("no person detector model chosen: set the RF-DETR .onnx file in the preferences")
        detector = OnnxRFDETR(
            settings.detector_model,
            resolution=settings.detector_resolution,
            confidence=settings.det_confidence,
            device=settings.device,
            threads=settings.threads,
            max_batch=settings.detector_batch or 1,
            spin=False,
            log=log,
        )
    if settings.backend == "sam3d":
        return detector, Sam3DBody(settings.sam3d, lens=settings.lens, log=log)
    if not settings.hmr_model:
        raise ModelError("no InstantHMR model chosen: set instanthmr.onnx in the preferences")
    hmr = InstantHMR(
        settings.hmr_model,
        device=settings.device,
        # detector frames crop up to max_persons + 1 candidates: one run per frame, always the same shape
        max_batch=settings.max_persons + 1,
        one_at_a_time=not settings.batch_persons,
        threads=settings.threads,
        spin=False,  # the two sessions take turns on the CPU: idle threads must not spin on the other's cores
        lens=settings.lens,
        log=log,
    )
    if not settings.detector_batch and not getattr(detector, "fixed_batch", None):
        # two frames per call pay on a GPU; on the CPU they cost twice one frame (measured)
        detector.batch_size = 1 if runs_on_cpu(detector) else 2
    return detector, hmr


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

