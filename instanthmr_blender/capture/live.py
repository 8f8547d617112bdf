"""Live capture: the newest frame of a camera or stream -> person detection -> InstantHMR -> tracking -> causal
One-Euro filter -> a solved pose per person, as fast as the models allow; Record keeps every processed frame (with
its camera time) and turns them into a take like an offline capture's.

Latency, not completeness, matters live: a grabber thread reads the source continuously and keeps only the newest
frame; the processing thread takes whichever frame is newest when it is free, so frames that arrive while the
models are busy are dropped (and counted), never queued. Detection, the detector stride and the tracking are the
offline capture's own (`step.process_frame`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..pose.detector import PersonDetector
from ..pose.hmr import InstantHMR
from ..solve import RigRest, SolveError, build_rest, ground, smooth
from ..solve.frame_solve import FramePoseSolver
from ..take import Take, TakeBuilder
from ..video.live_source import LiveSource, LiveSourceError
from .provenance import model_provenance
from .settings import USER_ERRORS, CaptureSettings
from .step import Frame, process_frame
from .tracking import PersonTracker, TrackerSettings

#: Stage times and latency are averaged over this many recent frames (about a second at 30 fps).
STATS_WINDOW = 30
_WAIT_SECONDS = 0.02


class LiveError(RuntimeError):
    """The live capture cannot start or went wrong; the message says what and what to do."""


@dataclass
class LiveSettings:
    """A live capture. `capture` holds the models and detection settings of an offline capture (its detector
    stride, confidence, max persons, minimum track length for the recorded take; its `source` is not used).

    width, height, fps: requested from a camera (0 = its default). timeout: seconds for opening the source and
    for each frame. smoothing: the causal One-Euro strength ("off" | "light" | "medium" | "strong").
    calibration_frames: frames of a person before their rig's bone lengths (and the floor) are fixed.
    take_fps: the recorded take's frame grid (frames per second). follow: see LiveCapture.follow.
    """

    source: str
    capture: CaptureSettings
    width: int = 0
    height: int = 0
    fps: float = 0.0
    timeout: float = 5.0
    smoothing: str = "medium"
    calibration_frames: int = 8
    symmetric_lengths: bool = True
    take_fps: float = 30.0
    follow: int = -1  # the track id whose pose is solved; -1: the most prominent person (largest box)
    solve_live: bool = True  # False: record only (headless), no per-frame pose solve competing with the models

    def check(self) -> None:
        """Raise LiveError naming the first setting out of range (then the capture settings' own check)."""
        rules = [
            ("timeout", self.timeout > 0, "more than 0 seconds"),
            ("calibration_frames", self.calibration_frames >= 1, "1 or more"),
            ("take_fps", self.take_fps > 0, "more than 0"),
            ("smoothing", self.smoothing in smooth.SMOOTHING_LEVELS, f"one of {smooth.SMOOTHING_LEVELS}"),
            ("width", self.width >= 0 and self.height >= 0 and self.fps >= 0, "0 (the default) or more"),
        ]
        for name, ok, wanted in rules:
            if not ok:
                raise LiveError(f"live setting {name} = {getattr(self, name)!r} must be {wanted}")
        self.capture.check()


@dataclass(frozen=True)
class LivePerson:
    """One tracked person in one live frame. rest: the rig's T-pose (None while calibrating, see LiveSettings);
    quats: (B, 4) local bone rotations (w, x, y, z), bones unseen in this frame hold their last value;
    root_location: (3,) metres; all three None while calibrating and for people not followed (LiveCapture.follow).
    joints_cam: (70, 3) camera space, metres (raw model output)."""

    track_id: int
    score: float
    box: np.ndarray
    joints_cam: np.ndarray
    rest: RigRest | None = None
    quats: np.ndarray | None = None
    root_location: np.ndarray | None = None


@dataclass(frozen=True)
class LivePose:
    """The result of one processed frame: sequence = the frame's number in the source (0, 1, ...; gaps are dropped
    frames), grab_time / ready_time: time.monotonic() when the frame arrived / its pose was ready."""

    sequence: int
    grab_time: float
    ready_time: float
    persons: tuple[LivePerson, ...]
    camera_matrix_world: np.ndarray | None  # (4, 4) the floor fitted in calibration; None before

    def person(self, follow: int = -1) -> LivePerson | None:
        """The person with track id `follow`, or (follow < 0) the most prominent one: the largest box."""
        return _followed(self.persons, follow)


def _followed(persons, follow: int) -> LivePerson | None:
    if follow >= 0:
        return next((p for p in persons if p.track_id == follow), None)
    if not persons:
        return None
    return max(persons, key=lambda p: float((p.box[2] - p.box[0]) * (p.box[3] - p.box[1])))


@dataclass(frozen=True)
class LiveStats:
    """How the live capture keeps up. Counts since start; rates and milliseconds over the last STATS_WINDOW
    processed frames. latency_ms: grab -> pose ready (the consumer adds its own apply time, see `applied`)."""

    grabbed: int
    processed: int  # frames through the models (all of them are recorded)
    dropped: int  # frames that arrived while the models were busy with a newer one: never processed
    posed: int  # poses solved (the solve skips to the newest model result when it falls behind)
    fps: float  # poses per second
    source_fps: float  # frames per second arriving from the source
    decode_ms: float
    detector_ms: float  # per frame the detector ran on
    hmr_ms: float  # InstantHMR plus tracking
    solve_ms: float  # filter plus pose solve of the followed person
    latency_ms: float
    applied_latency_ms: float  # grab -> pose applied by the consumer (0 until `LiveCapture.applied` is called)
    recording: bool
    recorded_frames: int

    def text(self) -> str:
        """`24.8 fps (camera 30.0) · latency 61 ms · dropped 12 · decode 4 · detector 38 · HMR 22 · solve 3 ms`."""
        latency = self.applied_latency_ms or self.latency_ms
        return (f"{self.fps:.1f} fps (source {self.source_fps:.1f}) · latency {latency:.0f} ms · dropped "
                f"{self.dropped} · decode {self.decode_ms:.0f} · detector {self.detector_ms:.0f} · "
                f"HMR {self.hmr_ms:.0f} · solve {self.solve_ms:.0f} ms"
                + (f" · recording {self.recorded_frames} frames" if self.recording else ""))


class _Window:
    """The mean of the last STATS_WINDOW values."""

    def __init__(self) -> None:
        self.values: deque[float] = deque(maxlen=STATS_WINDOW)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def mean(self) -> float:
        values = list(self.values)  # one step under the GIL: another thread may be appending
        return float(np.mean(values)) if values else 0.0

    def rate(self) -> float:
        """Events per second, when the values are event times."""
        values = list(self.values)
        if len(values) < 2 or values[-1] <= values[0]:
            return 0.0
        return (len(values) - 1) / (values[-1] - values[0])


class _FrameRecords:
    """Collects the people of one frame (step.process_frame's `record`), copying the model outputs."""

    def __init__(self) -> None:
        self.people: dict[int, dict[str, np.ndarray | float]] = {}

    def add(self, index: int, track_id: int, score: float, box: np.ndarray, poses, row: int) -> None:
        self.people[int(track_id)] = {
            "score": float(score), "bbox": np.array(box, np.float32),
            "joints_cam": np.array(poses.joints_cam[row], np.float32),
            "cam_trans": np.array(poses.cam_trans[row], np.float32),
            "joints_2d": np.array(poses.joints_2d[row], np.float32),
            "mhr_params": np.array(poses.mhr_params[row], np.float32),
            "shape_params": np.array(poses.shape_params[row], np.float32),
        }


class LivePersonSolver:
    """One person's live pose: the first `calibration_frames` frames fix the rig (bone lengths from their median
    keypoints), then every frame is filtered (causal One-Euro, at the frames' real spacing) and solved on its own
    by the fast one-frame solve (solve.frame_solve: the offline solve's rotations for that frame, in about a
    millisecond), set up once per calibrated rig.

    camera_matrix_world: a callable giving the shared camera placement (fixed by the first calibration)."""

    def __init__(self, settings: LiveSettings, camera_matrix_world: Callable[[np.ndarray], np.ndarray]) -> None:
        self.settings = settings
        self.camera_matrix_world = camera_matrix_world
        self.calibration: list[tuple[float, np.ndarray]] = []
        self.rest: RigRest | None = None
        self.frame_solver: FramePoseSolver | None = None
        self.camera: np.ndarray | None = None
        self.filter = None if settings.smoothing == "off" else smooth.keypoint_stream(settings.smoothing)
        self.last_time: float | None = None
        self.quats: np.ndarray | None = None
        self.root_location = np.zeros(3)

    def update(self, joints_cam: np.ndarray, grab_time: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(quats (B, 4), root_location (3,)) for this frame, or None while calibrating."""
        if self.rest is None:
            self.calibration.append((grab_time, np.asarray(joints_cam, np.float64)))
            if len(self.calibration) < self.settings.calibration_frames:
                return None
            if not self._calibrate():
                self.calibration.pop(0)  # not solvable yet (no hips or neck seen): keep a sliding window
                return None
        world = ground.camera_to_world(joints_cam, self.camera)
        dt = max(grab_time - self.last_time, 1e-3) if self.last_time is not None else 1.0 / self.settings.take_fps
        self.last_time = grab_time
        if self.filter is not None:
            world = self.filter.step(world, dt)
        quats, root_location, keyed, root_keyed = self.frame_solver.solve(world)
        if self.quats is None:
            self.quats = quats
        # bones not seen in this frame hold their last rotation instead of snapping to the rest pose
        self.quats = np.where(keyed[:, None], quats, self.quats)
        if root_keyed:
            self.root_location = root_location
        return self.quats.copy(), self.root_location.copy()

    def _calibrate(self) -> bool:
        times = np.array([t for t, _ in self.calibration])
        joints = np.stack([j for _, j in self.calibration])
        rate = (len(times) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else self.settings.take_fps
        self.camera = self.camera_matrix_world(joints)
        world = ground.camera_to_world(joints, self.camera)
        try:
            self.rest, spine = build_rest(world, rate, symmetric_lengths=self.settings.symmetric_lengths)
        except SolveError:
            return False
        self.frame_solver = FramePoseSolver(self.rest, spine["spine_lengths"])
        self.calibration = []
        return True


def take_columns(grab_times: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Frames recorded at uneven times -> a uniform frame grid at `fps`.

    grab_times: (N,) seconds, increasing (the camera clock). Returns (frame index of each kept sample, indices of
    the kept samples): frame = round((t - t0) * fps); when two samples round to the same frame the later is kept.
    Frames nobody was processed at stay absent (the solve interpolates over short gaps), so a take recorded at an
    uneven or low rate still plays back at real speed.
    """
    times = np.asarray(grab_times, np.float64)
    if len(times) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    frames = np.round((times - times[0]) * float(fps)).astype(np.int64)
    last_of_frame = np.append(frames[1:] != frames[:-1], True)
    kept = np.flatnonzero(last_of_frame)
    return frames[kept], kept


class LiveCapture:
    """A running live capture (see the module docstring). Thread-safe to read from any thread: `latest()`,
    `stats()`, `error`, `running`. The models must be loaded; `start()` opens the source unless one is given."""

    def __init__(self, settings: LiveSettings, *, detector: PersonDetector, hmr: InstantHMR,
                 source: LiveSource | None = None) -> None:
        settings.check()
        self.settings = settings
        self.detector = detector
        self.hmr = hmr
        self.source = source
        #: the track id of the person whose pose is solved (-1: the most prominent); may change while running
        self.follow = settings.follow
        self.error = ""
        self._stop = threading.Event()
        self._condition = threading.Condition()
        self._slot: tuple[int, float, np.ndarray] | None = None  # the newest unprocessed frame
        self._sequence = 0
        self._grabbed = self._processed = self._dropped = self._posed = 0
        self._solve_slot: tuple | None = None  # the newest model result the solve thread has not taken
        self._grab_error = ""
        self._last_grab = 0.0
        self._latest: LivePose | None = None
        self._recording: list[tuple[float, dict]] | None = None
        self._camera: np.ndarray | None = None
        self._model_info: dict | None = None
        self.picks: deque[tuple[int, int]] = deque(maxlen=10000)  # (processed sequence, newest grabbed) per frame
        self._clocks = {name: _Window() for name in ("decode", "detector", "hmr", "solve", "latency", "applied")}
        self._ready_times, self._grab_times = _Window(), _Window()
        self._threads: list[threading.Thread] = []

    # -- control -------------------------------------------------------------------------------------------

    def start(self) -> LiveCapture:
        """Open the source (LiveSourceError in one line when it is absent, busy or unreachable) and start."""
        if self.source is None:
            s = self.settings
            self.source = LiveSource(s.source, width=s.width, height=s.height, fps=s.fps, timeout=s.timeout)
        info = self.source.info
        self.image_size = (info.height, info.width)
        # The same camera as an offline capture's: the user's lens, else the graph's own convention.
        self.capture_camera = self.hmr.camera(self.image_size)
        self._last_grab = time.monotonic()
        self._threads = [threading.Thread(target=self._grab, name="instanthmr-live-grab", daemon=True),
                         threading.Thread(target=self._process, name="instanthmr-live-models", daemon=True),
                         threading.Thread(target=self._solve, name="instanthmr-live-solve", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def stop(self) -> None:
        """Stop the threads and close the source. The models and solve threads finish their current frame; the
        grabber returns within the source's timeout at worst (a read cannot be interrupted)."""
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(self.settings.timeout + 1.0)
        grabber_done = not self._threads or not self._threads[0].is_alive()
        if self.source is not None and grabber_done:  # never release a capture another thread still reads
            self.source.close()

    # -- results -------------------------------------------------------------------------------------------

    def latest(self) -> LivePose | None:
        """The newest processed frame's result (None before the first)."""
        return self._latest

    def applied(self, pose: LivePose) -> None:
        """Tell the capture that `pose` was applied (to a rig) now: measures grab -> applied latency."""
        self._clocks["applied"].add(time.monotonic() - pose.grab_time)

    def stats(self) -> LiveStats:
        c = self._clocks
        recording = self._recording
        return LiveStats(
            grabbed=self._grabbed, processed=self._processed, dropped=self._dropped, posed=self._posed,
            fps=self._ready_times.rate(),
            source_fps=self._grab_times.rate(), decode_ms=1000 * c["decode"].mean,
            detector_ms=1000 * c["detector"].mean, hmr_ms=1000 * c["hmr"].mean, solve_ms=1000 * c["solve"].mean,
            latency_ms=1000 * c["latency"].mean, applied_latency_ms=1000 * c["applied"].mean,
            recording=recording is not None, recorded_frames=len(recording) if recording is not None else 0,
        )

    # -- recording -----------------------------------------------------------------------------------------

    def start_recording(self) -> None:
        """Keep every processed frame from now on (a recording in progress starts over)."""
        self._recording = []

    @property
    def recording(self) -> bool:
        return self._recording is not None

    def stop_recording(self) -> Take:
        """The recorded frames as a take on a uniform grid at settings.take_fps (`take_columns`); LiveError when
        nothing was recorded or nobody was tracked long enough."""
        recorded, self._recording = self._recording, None
        if not recorded:
            raise LiveError("nothing was recorded: start recording while the live capture runs, and record longer")
        frames, kept = take_columns(np.array([t for t, _ in recorded]), self.settings.take_fps)
        if self._model_info is None:  # hashing the model file takes a moment: once, at the first recording
            self._model_info = model_provenance(self.hmr.model_path, self.hmr.graph, self.capture_camera)
        camera = self.capture_camera
        builder = TakeBuilder(self.settings.take_fps, self.image_size, camera.focal_length, camera.principal_point,
                              source=self.source.info.name, model_info=self._model_info)
        for frame, sample in zip(frames, kept):
            builder.add_frame(int(frame))
            for track_id, values in recorded[sample][1].items():
                builder.add(int(frame), track_id, **values)
        take = builder.build(min_track_length=self.settings.capture.min_track_length)
        if take.num_tracks == 0:
            raise LiveError(f"nobody was tracked for {self.settings.capture.min_track_length} frames or more in the "
                            f"{len(recorded)} recorded frames: step into the camera's view and record again")
        take.track_ids = np.arange(take.num_tracks, dtype=np.int64)  # people as users count them, as offline
        return take

    # -- threads -------------------------------------------------------------------------------------------

    def _grab(self) -> None:
        source = self.source
        while not self._stop.is_set():
            try:
                grab_time, rgb = source.read()
            except LiveSourceError as error:
                self._grab_error = str(error)
                break
            except Exception as error:  # an OpenCV failure mid-stream: reported like a dead source
                self._grab_error = f"{source.info.name} failed: {type(error).__name__}: {error}"
                break
            self._clocks["decode"].add(source.decode_seconds)
            with self._condition:
                if self._slot is not None:
                    self._dropped += 1  # the models were busy: the older frame is never processed
                self._slot = (self._sequence, grab_time, rgb)
                self._sequence += 1
                self._grabbed += 1
                self._last_grab = grab_time
                self._grab_times.add(grab_time)
                self._condition.notify()
        with self._condition:
            self._condition.notify_all()

    def _next_frame(self) -> tuple[int, float, np.ndarray] | None:
        with self._condition:
            while self._slot is None and not self._stop.is_set():
                if not self._threads[0].is_alive():
                    self.error = self._grab_error or "the live source stopped"
                    return None
                if time.monotonic() - self._last_grab > self.settings.timeout + 1.0:
                    # a camera backend that ignores the read timeout: the grabber is stuck in its read
                    self.error = (f"{self.source.info.name} sent no frame for {self.settings.timeout:g} s: "
                                  "is it still connected?")
                    return None
                self._condition.wait(_WAIT_SECONDS)
            item, self._slot = self._slot, None
            if item is not None:
                self.picks.append((item[0], self._sequence - 1))
            return item

    def _camera_placement(self, joints_cam: np.ndarray) -> np.ndarray:
        # The camera is static: the first calibrated person's feet fix the floor for everyone.
        if self._camera is None:
            self._camera = ground.estimate_floor(joints_cam[None]).camera_matrix_world
        return self._camera

    def _process(self) -> None:
        """The models thread: newest frame -> detector (every detector_stride frames, or when a crop lost its
        person) -> InstantHMR + tracking -> the newest-result slot of the solve thread, and the recording."""
        s = self.settings.capture
        tracker = PersonTracker(TrackerSettings(max_persons=s.max_persons, lost_track_frames=s.lost_track_frames))
        column = 0
        try:
            while not self._stop.is_set():
                item = self._next_frame()
                if item is None:
                    break
                sequence, grab_time, rgb = item
                frame = Frame(column, sequence, rgb)
                found = None
                if column % s.detector_stride == 0 or tracker.detection_needed:
                    began = time.monotonic()
                    (found,) = self.detector.detect([rgb])
                    self._clocks["detector"].add(time.monotonic() - began)
                began = time.monotonic()
                records = _FrameRecords()
                process_frame(frame, found, tracker, self.hmr, records, s.max_persons + 1, self.image_size)
                self._clocks["hmr"].add(time.monotonic() - began)
                column += 1
                persons = tuple(LivePerson(track_id, values["score"], values["bbox"], values["joints_cam"])
                                for track_id, values in records.people.items())
                with self._condition:
                    self._solve_slot = (sequence, grab_time, persons, set(tracker.tracks))
                    self._processed += 1
                    self._condition.notify_all()
                recording = self._recording
                if recording is not None:
                    recording.append((grab_time, records.people))
        except USER_ERRORS as error:
            self.error = str(error)
        except Exception as error:
            self.error = f"live capture failed at frame {column}: {type(error).__name__}: {error}"
        finally:
            self._stop.set()
            with self._condition:
                self._condition.notify_all()

    def _solve(self) -> None:
        """The solve thread: the newest model result -> the followed person's filtered, solved pose -> `latest`.
        It runs beside the models (ONNX Runtime releases the GIL), so a slow solve costs latency, not rate."""
        solvers: dict[int, LivePersonSolver] = {}
        try:
            while True:
                with self._condition:
                    while self._solve_slot is None and not self._stop.is_set():
                        self._condition.wait(_WAIT_SECONDS)
                    if self._solve_slot is None:
                        return
                    (sequence, grab_time, persons, tracked), self._solve_slot = self._solve_slot, None
                began = time.monotonic()
                persons = list(persons)
                followed = _followed(persons, self.follow) if self.settings.solve_live else None
                if followed is not None:
                    # only the followed person is solved: on a CPU the per-frame solve costs as much as the models
                    solver = solvers.setdefault(followed.track_id,
                                                LivePersonSolver(self.settings, self._camera_placement))
                    solved = solver.update(followed.joints_cam, grab_time)
                    if solved is not None:
                        persons[persons.index(followed)] = LivePerson(
                            followed.track_id, followed.score, followed.box, followed.joints_cam, solver.rest, *solved)
                for gone in set(solvers) - tracked:
                    del solvers[gone]
                ready = time.monotonic()
                self._clocks["solve"].add(ready - began)
                self._latest = LivePose(sequence, grab_time, ready, tuple(persons), self._camera)
                self._clocks["latency"].add(ready - grab_time)
                self._ready_times.add(ready)
                self._posed += 1
        except Exception as error:
            self.error = self.error or f"live pose solve failed: {type(error).__name__}: {error}"
            self._stop.set()


@dataclass
class LiveRecording:
    """What `record_live` returns: the take (None when nothing usable was recorded), the final stats, and the
    error that ended the capture early ("" when it ran for the whole duration)."""

    take: Take | None
    stats: LiveStats
    error: str = ""
    log: list[str] = field(default_factory=list)


def record_live(settings: LiveSettings, duration: float, *, detector: PersonDetector, hmr: InstantHMR,
                progress: Callable[[LiveStats], None] | None = None,
                cancel: threading.Event | None = None, source: LiveSource | None = None) -> LiveRecording:
    """Open the source (unless an open one is given), record for `duration` seconds, stop, return the take.

    The source failing to open raises LiveSourceError (nothing was done); a source dying mid-way ends the
    recording early: the frames recorded so far are kept and the error is returned with them."""
    if not duration > 0:
        raise LiveError(f"the recording duration must be more than 0 seconds, got {duration}")
    live = LiveCapture(settings, detector=detector, hmr=hmr, source=source).start()
    try:
        # Frames that piled up in the connection while the models loaded arrive in a burst, and the models' first
        # run is slow: recording starts with the first frame through the models, once the live capture keeps up.
        warm_up = time.monotonic() + settings.timeout
        while live.running and live.stats().processed < 2 and time.monotonic() < warm_up:
            time.sleep(_WAIT_SECONDS)
        live.start_recording()
        began = time.monotonic()
        last_report = began
        while live.running and time.monotonic() - began < duration:
            if cancel is not None and cancel.is_set():
                break
            time.sleep(_WAIT_SECONDS)
            if progress is not None and time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                progress(live.stats())
        stats = live.stats()
        try:
            take = live.stop_recording()
        except LiveError as error:
            if live.error:
                raise LiveError(live.error) from None
            raise error
        return LiveRecording(take, stats, live.error)
    finally:
        live.stop()
