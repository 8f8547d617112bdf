"""Live capture in Blender: a webcam or a phone stream drives a capture rig in the viewport, and Record turns what
it saw into a take, saved and built exactly like an offline capture.

The engine (`instanthmr_blender.capture.live`) runs in its own threads; only `live_tick`, a `bpy.app.timers` callback on
the main thread, touches Blender data: it applies the newest solved pose to the live rig (never waiting for one)
and finishes recordings. Starting (loading the models, opening the source) and finishing a recording (saving and
solving the take) run in worker threads too. Live and offline capture never run at once; disabling the add-on or
loading another file stops live capture (an unfinished recording is discarded).

Without a UI event loop (bpy as a module, `blender -b`), timers never fire: scripts and tests call `live_tick()`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from ..instanthmr_blender.solve import SolveOptions, solve_take
from ..instanthmr_blender.take import save_take
from ..scene import live_rig, workflow
from ..settings.capture import CaptureInputError, default_take_path, scene_request, solve_options
from . import jobs
from .background import BackgroundJob
from .capture import model_settings

TICK_SECONDS = 1.0 / 60.0
LIVE_TAKE = "live"  # the live rig's take name: collection "InstantHMR live", rig "live.personNN"


class LiveInputError(ValueError):
    """Something the user must fix before live capture can start."""


@dataclass
class LiveStartJob(BackgroundJob):
    """Loads the models and opens the source off the main thread, then starts the engine's LiveCapture."""

    settings: object  # instanthmr_blender.capture.live.LiveSettings
    live: object | None = None

    thread_name = "InstantHMR live start"

    def _run(self) -> None:
        from ..instanthmr_blender.capture.live import LiveCapture
        from ..instanthmr_blender.capture.loading import build_models

        try:
            detector, hmr = build_models(self.settings.capture)
            if self.cancel_event.is_set():
                return
            live = LiveCapture(self.settings, detector=detector, hmr=hmr).start()
            if self.cancel_event.is_set():
                live.stop()
                return
            self.live = live
        except Exception as exc:  # reaches the user through the tick's status line
            self.error = str(exc) or type(exc).__name__


@dataclass
class RecordingJob(BackgroundJob):
    """Turns the recorded frames into a take, saves it and solves it (engine code only), like an offline capture's
    worker; `live_tick` then builds the scene."""

    live: object
    take_name: str
    take_path: Path
    solve_options: SolveOptions
    take: object | None = None
    saved: Path | None = None
    solution: object | None = None

    thread_name = "InstantHMR live recording"

    def _run(self) -> None:
        try:
            self.take = self.live.stop_recording()
            self.take_path.parent.mkdir(parents=True, exist_ok=True)
            self.saved = save_take(self.take, self.take_path)
            self.solution = solve_take(self.take, self.solve_options)
        except Exception as exc:
            self.error = str(exc) or type(exc).__name__


@dataclass
class LiveSession:
    start_job: LiveStartJob
    live: object | None = None  # the engine's LiveCapture once started
    rig_name: str = ""
    rig_rest: object | None = None  # the RigRest the live rig was built from
    last_sequence: int = -1
    recording: RecordingJob | None = None
    started: float = field(default_factory=time.monotonic)


def live_active() -> bool:
    """True from Start until live capture has stopped (starting, running or finishing a recording)."""
    return jobs.live_active()


def current_session() -> LiveSession | None:
    return jobs.get(jobs.LIVE)


def recording_pending() -> bool:
    """Recording, or a recorded take still being saved and built."""
    session = jobs.get(jobs.LIVE)
    if session is None:
        return False
    recording = session.live is not None and session.live.recording
    return recording or session.recording is not None


def live_settings(context):
    """The engine's LiveSettings from the scene's Live and capture settings and the preferences, checked."""
    from ..instanthmr_blender.capture.live import LiveSettings
    from ..instanthmr_blender.video.live_source import LiveSourceError, parse_source

    props = context.scene.instanthmr_live
    try:
        source = parse_source(props.source)
    except LiveSourceError as exc:
        raise LiveInputError(str(exc)) from None
    models = model_settings(context, scene_request(context, str(source)))
    if models.backend != "instanthmr":
        raise LiveInputError("Live capture runs InstantHMR only (SAM 3D Body is far too slow for it): "
                             "set Model to InstantHMR in the capture panel")
    scene_fps = context.scene.render.fps / context.scene.render.fps_base
    return LiveSettings(str(source), models, width=props.width, height=props.height, fps=props.fps,
                        timeout=props.timeout, smoothing=context.scene.instanthmr.smoothing,
                        symmetric_lengths=context.scene.instanthmr.symmetric_lengths, take_fps=scene_fps,
                        follow=props.follow)


def start_live(context) -> LiveSession:
    """Start live capture in the background (LiveInputError / CaptureInputError when it cannot start)."""
    if jobs.live_active():
        raise LiveInputError("Live capture is already running: stop it first")
    if jobs.capture_running():
        raise LiveInputError("A capture from video is running: wait for it or cancel it first (one capture at a time)")
    job = LiveStartJob(live_settings(context))
    session = LiveSession(job)
    jobs.put(jobs.LIVE, session)
    status = context.window_manager.instanthmr_live_status
    status.running, status.recording, status.status = True, False, "Starting live capture (models, source)..."
    job.start()
    if not bpy.app.timers.is_registered(live_tick):
        bpy.app.timers.register(live_tick, first_interval=TICK_SECONDS)
    return session


def stop_live(wait: float = 5.0) -> bool:
    """Stop live capture: the engine's threads are stopped and joined, the source closed; an unfinished recording is
    discarded, one being saved finishes in its thread. Returns False when none runs. Safe from any handler."""
    session = jobs.get(jobs.LIVE)
    jobs.put(jobs.LIVE, None)
    if bpy.app.timers.is_registered(live_tick):
        bpy.app.timers.unregister(live_tick)
    if session is None:
        return False
    session.start_job.cancel(wait)
    live = session.live or session.start_job.live
    if live is not None:
        live.stop()
    if session.recording is not None and session.recording.thread is not None:
        session.recording.thread.join(wait)
    wm = bpy.context.window_manager
    if wm is not None and hasattr(wm, "instanthmr_live_status"):
        wm.instanthmr_live_status.running = wm.instanthmr_live_status.recording = False
    return True


def start_recording(context) -> None:
    session = _require_running()
    if session.recording is not None and session.recording.running:
        raise LiveInputError("The last recording is still being saved: wait a moment")
    session.live.start_recording()
    context.window_manager.instanthmr_live_status.recording = True


def stop_recording(context) -> RecordingJob:
    """Stop recording: the take is made, saved and solved in a worker thread; `live_tick` builds the scene."""
    session = _require_running()
    if not session.live.recording:
        raise LiveInputError("Not recording: click Record first")
    name = time.strftime("live_%Y%m%d_%H%M%S")
    settings = context.scene.instanthmr
    take_path = default_take_path(name)
    session.recording = RecordingJob(session.live, name, take_path, solve_options(settings))
    session.recording.start()
    context.window_manager.instanthmr_live_status.recording = False
    return session.recording


def _require_running() -> LiveSession:
    session = jobs.get(jobs.LIVE)
    if session is None or session.live is None:
        raise LiveInputError("Live capture is not running: click Start first")
    return session


def live_tick() -> float | None:
    """The main-thread timer: apply the newest pose, show the status, finish a recording. Never waits."""
    session = jobs.get(jobs.LIVE)
    if session is None:
        return None
    context = bpy.context
    status = context.window_manager.instanthmr_live_status
    if session.live is None:
        if session.start_job.running:
            return TICK_SECONDS
        if session.start_job.error or session.start_job.live is None:
            jobs.put(jobs.LIVE, None)
            status.running = False
            status.status = f"Live capture failed: {session.start_job.error or 'it did not start'}"
            _redraw(context)
            return None
        session.live = session.start_job.live
    live = session.live
    if not live.running:
        stop_live()
        status.status = f"Live capture stopped: {live.error}" if live.error else "Live capture stopped"
        _redraw(context)
        return None
    pose = live.latest()
    if pose is not None and pose.sequence != session.last_sequence:
        session.last_sequence = pose.sequence
        if _apply_pose(context, session, pose):
            live.applied(pose)
    if session.recording is not None and not session.recording.running:
        _finish_recording(context, session)
    stats = live.stats()
    status.status = stats.text()
    _redraw(context)
    return TICK_SECONDS


def _apply_pose(context, session: LiveSession, pose) -> bool:
    """Pose the live rig with the followed person's solved pose (building the rig for a new person first)."""
    props = context.scene.instanthmr_live
    person = pose.person(props.follow)
    session.live.follow = props.follow
    if person is None or person.quats is None:
        return False
    rig = bpy.data.objects.get(session.rig_name) if session.rig_name else None
    if rig is None or session.rig_rest is not person.rest:
        with _window_context(context):
            rig = live_rig.build_live_rig(context, LIVE_TAKE, person.track_id, person.rest)
            session.rig_name, session.rig_rest = rig.name, person.rest
    rig.scale.x = -1.0 if props.mirror else 1.0  # a mirror preview, as a webcam app shows it; never recorded
    bones = rig.pose.bones
    for index, bone_name in enumerate(person.rest.bone_names):
        bones[bone_name].rotation_quaternion = person.quats[index]
    bones[person.rest.bone_names[0]].location = person.root_location
    return True


def _finish_recording(context, session: LiveSession) -> None:
    job, session.recording = session.recording, None
    status = context.window_manager.instanthmr_live_status
    if job.error:
        status.last_take = f"Recording failed: {job.error}"
        return
    settings = context.scene.instanthmr
    settings.take_path = str(job.saved)
    workflow.fill_people(settings, job.take)
    with _window_context(context):
        built = workflow.build_solution(context, job.take, job.solution, job.take_name, background=None,
                                        take_file=str(job.saved))
    status.last_take = (f"Recorded {len(built.rigs)} people over {job.take.num_frames} frames "
                        f"({job.take.frames[-1] / job.take.fps:.1f} s); take saved to {job.saved}")


def _window_context(context):
    """A timer runs without a window in its context; building a rig switches modes, which needs one."""
    windows = context.window_manager.windows
    if context.window is None and len(windows):
        return context.temp_override(window=windows[0])
    return contextlib.nullcontext()


def _redraw(context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


class INSTANTHMR_OT_live_start(bpy.types.Operator):
    """Start live capture from the camera or stream: the live rig follows the person in real time"""

    bl_idname = "instanthmr.live_start"
    bl_label = "Start Live"

    @classmethod
    def poll(cls, context):
        return not jobs.live_active() and not jobs.capture_running()

    def execute(self, context):
        try:
            start_live(context)
        except (LiveInputError, CaptureInputError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class INSTANTHMR_OT_live_stop(bpy.types.Operator):
    """Stop live capture (stop recording first: the take is saved and built before live capture can stop)"""

    bl_idname = "instanthmr.live_stop"
    bl_label = "Stop Live"

    @classmethod
    def poll(cls, context):
        return jobs.live_active() and not recording_pending()

    def execute(self, context):
        stop_live()
        context.window_manager.instanthmr_live_status.status = "Live capture stopped"
        return {"FINISHED"}


class INSTANTHMR_OT_live_record(bpy.types.Operator):
    """Record: keep every processed frame with its camera time, until Stop Recording"""

    bl_idname = "instanthmr.live_record"
    bl_label = "Record"

    @classmethod
    def poll(cls, context):
        session = jobs.get(jobs.LIVE)
        return session is not None and session.live is not None and not session.live.recording

    def execute(self, context):
        try:
            start_recording(context)
        except LiveInputError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class INSTANTHMR_OT_live_stop_recording(bpy.types.Operator):
    """Stop recording: save the take and build it like an offline capture (camera, one rig per person)"""

    bl_idname = "instanthmr.live_stop_recording"
    bl_label = "Stop Recording"

    @classmethod
    def poll(cls, context):
        session = jobs.get(jobs.LIVE)
        return session is not None and session.live is not None and session.live.recording

    def execute(self, context):
        try:
            stop_recording(context)
        except LiveInputError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


@bpy.app.handlers.persistent
def _stop_on_load(*_args):
    # Another file is being loaded: the live rig and the settings belong to the old one.
    stop_live()


classes = (INSTANTHMR_OT_live_start, INSTANTHMR_OT_live_stop, INSTANTHMR_OT_live_record,
           INSTANTHMR_OT_live_stop_recording)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.app.handlers.load_pre.append(_stop_on_load)


def unregister() -> None:
    # Disabling the add-on stops the engine's threads and the timer before their code goes away.
    stop_live()
    if _stop_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_stop_on_load)
    _unregister_classes()
