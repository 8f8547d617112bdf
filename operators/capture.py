"""Capture from video without freezing Blender: the engine runs in a worker thread, a main-thread pump shows its
progress and, when it ends, saves the take and builds the scene in one step.

Only the pump touches Blender data. One capture at a time; it stops when the add-on is disabled or another
file is loaded. In the UI the pump is a modal timer (Esc cancels); tests and scripts call `pump()` directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import bpy
import numpy as np

from ..instanthmr_blender.camera.choice import check_mode
from ..instanthmr_blender.camera.colmap_solve import CameraSolveError
from ..instanthmr_blender.camera.path import CameraPathError
from ..instanthmr_blender.output_paths import output_problem
from ..instanthmr_blender.solve import SolveOptions, solve_take
from ..instanthmr_blender.take import TakeError, save_take
from ..scene import naming, workflow
from ..scene.build import scene_frames, take_name_from_path
from ..settings.capture import (
    CaptureInputError,
    default_take_path,
    mesh_options,
    scene_request,
    solve_options,
)
from ..settings.capture import (
    capture_settings as build_capture_settings,
)
from ..settings.preferences import get_preferences, model_folder
from . import jobs
from .background import BackgroundJob

if TYPE_CHECKING:
    # The capture pipeline (ONNX Runtime, OpenCV) is imported when a capture starts, not when the add-on is
    # enabled: Blender's start-up does not pay for it.
    from ..instanthmr_blender.capture.settings import CaptureSettings, Progress

PUMP_SECONDS = 0.1
#: How the minimum-track-length setting is named in messages (its label in the People sub-panel).
MIN_TRACK_LENGTH_SETTING = "Min track length (People)"


@dataclass
class CaptureJob(BackgroundJob):
    """A capture running in a worker thread: the models, saving the take and the solve (engine code only). The
    worker writes `progress`, `take`, `saved`, `solution`, `error`, `log`; only the pump touches Blender."""

    settings: CaptureSettings
    take_path: Path
    solve_options: SolveOptions
    fallback_take_path: Path | None = None  # where the take goes when take_path cannot be written at the end
    camera_motion: str = "auto"  # the camera-motion choice (camera/choice.py MODES)
    scene_camera: object | None = None  # (source frames (N,), CameraPath over them): the user's own camera
    camera_status: str = ""  # the camera solve's stage, shown instead of the capture's progress
    progress: Progress | None = None
    take: object | None = None
    saved: Path | None = None
    solution: object | None = None
    cancelled: bool = False
    log: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown with the result: missing frames, people left out
    started: float = field(default_factory=time.monotonic)

    thread_name = "InstantHMR capture"

    def _run(self) -> None:
        from ..instanthmr_blender.camera.colmap_solve import CameraSolveCancelled
        from ..instanthmr_blender.capture.offline import capture
        from ..instanthmr_blender.capture.settings import CaptureCancelled

        try:
            summaries = []
            self.take = capture(self.settings, progress=self._on_progress, cancel=self.cancel_event,
                                log=self.log.append, summary=summaries.append)
            for summary in summaries:
                self.warnings += [line for line in (summary.truncation_message(),
                                                    summary.short_tracks_message(MIN_TRACK_LENGTH_SETTING)) if line]
                if self.take.num_tracks == 0 and summary.short_tracks_dropped:
                    # People were seen: say why none is left, rather than "nobody was detected".
                    raise ValueError(f"Nobody to build: {summary.short_tracks_message(MIN_TRACK_LENGTH_SETTING)}")
            self.saved = self._save_take()
            if self._add_camera_path():
                self.saved = self._save_take()  # the camera path is part of the take: a rebuild never solves again
            name = take_name_from_path(self.settings.source)
            self.solution = solve_take(self.take, self.solve_options)
            self.warnings += [f"{naming.armature_name(name, track_id)} left out: {why}"
                              for track_id, why in self.solution.skipped]
        except (CaptureCancelled, CameraSolveCancelled):
            self.cancelled = True
        except Exception as exc:  # every failure reaches the user through the pump's report
            self.error = " ".join((str(exc) or type(exc).__name__).split())
            if self.saved is not None:
                self.error += f" (the take is saved at {self.saved})"
            elif self.warnings and not self.error.startswith("Nobody to build"):
                self.error += f" ({'; '.join(self.warnings)})"

    def _add_camera_path(self) -> bool:
        """The camera stage (the command line's, camera/choice.py): True when the take gained a path."""
        import tempfile

        from ..instanthmr_blender.camera.choice import camera_for_take

        if self.scene_camera is not None:
            frames, path = self.scene_camera
            self.take.camera_path = scene_path_for_take(frames, path, self.take.frames)
            return True
        with tempfile.TemporaryDirectory(prefix="instanthmr-camera-") as work:
            path = camera_for_take(self.camera_motion, self.settings.source, self.take, work_dir=work,
                                   log=self.log.append, progress=self._on_camera_progress, cancel=self.cancel_event)
        self.camera_status = ""
        self.take.camera_path = path
        return path is not None

    def _on_camera_progress(self, stage: str, done: int, total: int) -> None:
        self.camera_status = f"Camera: {stage} {done}/{total}" if total else f"Camera: {stage}"

    def _save_take(self) -> Path:
        """Save the take where asked; when that fails at the end (a full or read-only disk), in the fallback
        place, with a warning: the capture is never lost for a file name."""
        try:
            self.take_path.parent.mkdir(parents=True, exist_ok=True)
            return save_take(self.take, self.take_path)
        except (TakeError, OSError) as error:
            if self.fallback_take_path is None or self.fallback_take_path == self.take_path:
                raise
            reason = (f"could not save the take to {self.take_path} ({error.strerror or error})"
                      if isinstance(error, OSError) else str(error).split(": check")[0])
            saved = save_take(self.take, self.fallback_take_path)
            self.warnings.append(f"{reason}: saved it to {saved} instead")
            return saved

    def _on_progress(self, progress: Progress) -> None:
        self.progress = progress


def scene_path_for_take(frames: np.ndarray, path, take_frames: np.ndarray):
    """The scene camera's path (read over `frames`) at the take's columns."""
    from ..instanthmr_blender.camera.path import CameraPath

    rows = np.searchsorted(frames, take_frames)
    if np.any(rows >= len(frames)) or np.any(frames[np.minimum(rows, len(frames) - 1)] != take_frames):
        raise CameraPathError("the scene camera was read over other frames than the capture made: capture again")
    return CameraPath(path.rotation[rows], path.center[rows], path.registered[rows], path.points, path.method,
                      dict(path.info))


def read_scene_camera(context, settings: CaptureSettings):
    """(source frames, CameraPath) of the scene camera picked in the panel over the capture's frame range, read
    on the main thread before the capture starts; None when none is picked. CaptureInputError when it cannot
    serve (not animated, keyed over other frames)."""
    from ..instanthmr_blender.video.frames import open_source
    from ..scene.camera_path import path_from_scene

    scene_settings = context.scene.instanthmr
    obj = scene_settings.camera_object
    if obj is None or scene_settings.camera_motion == "static":
        return None
    with open_source(settings.source, fps=settings.fps) as source:
        count = source.info.frame_count
    end = min(count, settings.end) if settings.end else count
    frames = np.arange(settings.start, end, settings.step, dtype=np.int64)
    try:
        return frames, path_from_scene(context.scene, obj, scene_frames(frames))
    except CameraPathError as error:
        raise CaptureInputError(str(error)[:1].upper() + str(error)[1:]) from None


def current_job() -> CaptureJob | None:
    return jobs.get(jobs.CAPTURE)


def status_text(progress: Progress | None) -> str:
    """The progress line of the panel (the engine's readout, or the models still loading)."""
    return "Starting (loading models)..." if progress is None else progress.text()


def capture_settings(context) -> tuple[CaptureSettings, Path]:
    """Engine settings and the take path from the scene's settings and the preferences, checked."""
    scene_settings = context.scene.instanthmr
    clip = bpy.path.abspath(scene_settings.clip) if scene_settings.clip else ""
    if not clip:
        raise CaptureInputError("Pick a clip first (a video, an image sequence folder or an image)")
    if not Path(clip).exists() and "%" not in Path(clip).name:
        raise CaptureInputError(f"{clip}: no such file or folder")
    request = scene_request(context, clip)
    request.start, request.end = scene_settings.frame_start, scene_settings.frame_end or None
    request.step = scene_settings.frame_step
    request.fps = context.scene.render.fps / context.scene.render.fps_base
    settings = model_settings(context, request)
    take_path = (Path(bpy.path.abspath(scene_settings.take_path)) if scene_settings.take_path
                 else default_take_path(clip))
    # The take is written when the capture ends: a place that cannot take it must not cost the whole capture.
    problem = output_problem(take_path, create_folder=True)
    if problem is not None:
        raise CaptureInputError(f"Take path {take_path}: {problem} (Output > Take)")
    return settings, take_path


def model_settings(context, request) -> CaptureSettings:
    """The engine's settings for a request from the panel (shared with live capture), model files checked; the
    message of a refusal reads as a sentence in Blender's status bar."""
    try:
        return build_capture_settings(get_preferences(context), request,
                                      advice="Download them in the add-on preferences or set their paths there")
    except CaptureInputError as error:
        text = str(error)
        raise CaptureInputError(text[:1].upper() + text[1:]) from None


def start_capture(context) -> CaptureJob:
    """Start a capture of the scene's clip in a worker thread. Raises CaptureInputError when it cannot start."""
    if jobs.capture_running():
        raise CaptureInputError("A capture is already running: wait for it or cancel it first")
    if jobs.live_active():
        raise CaptureInputError("Live capture is running: stop it first (one capture at a time)")
    settings, take_path = capture_settings(context)
    camera_motion = context.scene.instanthmr.camera_motion
    scene_camera = read_scene_camera(context, settings)
    if scene_camera is None:
        try:
            check_mode(camera_motion)
        except CameraSolveError as error:
            raise CaptureInputError(str(error)[:1].upper() + str(error)[1:]) from None
    try:
        fallback = default_take_path(settings.source)
    except OSError:  # no user folder either: the chosen take path is all there is
        fallback = None
    job = CaptureJob(settings, take_path, solve_options(context.scene.instanthmr), fallback_take_path=fallback,
                     camera_motion=camera_motion, scene_camera=scene_camera)
    jobs.put(jobs.CAPTURE, job)
    progress = context.window_manager.instanthmr_progress
    progress.running, progress.factor, progress.status = True, 0.0, status_text(None)
    job.start()
    return job


def pump(context) -> tuple[str, str]:
    """Apply the worker's state on the main thread: ("RUNNING", status), ("FINISHED", summary),
    ("CANCELLED", message) or ("FAILED", error). Finishing saves the take and builds the scene in one step."""
    job = jobs.get(jobs.CAPTURE)
    progress_props = context.window_manager.instanthmr_progress
    if job is None:
        return "CANCELLED", "No capture is running"
    if job.running:
        progress = job.progress
        if progress is not None and progress.frames_total:
            progress_props.factor = progress.frames_done / progress.frames_total
        progress_props.status = job.camera_status or status_text(progress)
        return "RUNNING", progress_props.status
    jobs.put(jobs.CAPTURE, None)
    progress_props.running = False
    if job.cancelled:
        progress_props.status = "Capture cancelled: the scene was not changed"
        return "CANCELLED", progress_props.status
    if job.error:
        progress_props.status = f"Capture failed: {job.error}"
        return "FAILED", job.error
    try:
        summary = finish_capture(context, job)
    except Exception as exc:
        message = (f"{' '.join(str(exc).split())}; the take is saved at {job.saved}: Rebuild from Take "
                   "(Output) builds it without running the models")
        progress_props.status = f"Capture failed: {message}"
        return "FAILED", message
    progress_props.factor = 1.0
    progress_props.status = summary
    return "FINISHED", summary


def finish_capture(context, job: CaptureJob) -> str:
    """List the people and build the solved take: the only step that writes to the scene (one tick)."""
    take, saved = job.take, job.saved
    scene_settings = context.scene.instanthmr
    scene_settings.take_path = str(saved)
    workflow.fill_people(scene_settings, take)
    name = take_name_from_path(job.settings.source)
    background = job.settings.source if scene_settings.camera_background else None
    mesh, mesh_note = None, ""
    if scene_settings.build_mesh:
        prefs = get_preferences(context)
        try:
            # Never download here: this step runs on the main thread (the preferences download the archive).
            mesh = mesh_options(prefs, model_folder(prefs))
        except RuntimeError as exc:
            mesh_note = f" Body mesh skipped: {exc}"
    built = workflow.build_solution(context, take, job.solution, name, background=background,
                                    take_file=str(saved), mesh=mesh)
    if built.mesh_error:
        mesh_note = f" Body mesh skipped: {built.mesh_error}"
    seconds = time.monotonic() - job.started
    meshes = f" and {len(built.meshes)} body meshes" if built.meshes else ""
    warnings = "".join(f" Warning: {line}." for line in job.warnings)
    # What the camera stage decided and why (still, solved, the take's own path), as the command line prints it.
    camera = "".join(f" Camera: {line.removeprefix('camera: ')}." for line in job.log if line.startswith("camera: "))
    return (f"Captured {len(built.rigs)} people{meshes} over {take.num_frames} frames in {seconds:.1f} s; "
            f"take saved to {saved}.{camera}{mesh_note}{warnings}")


def cancel_capture(wait: float = 0.0) -> bool:
    """Ask the running capture to stop (it stops within one frame). Returns False when none runs."""
    if not jobs.capture_running():
        return False
    jobs.get(jobs.CAPTURE).cancel(wait)
    return True


class INSTANTHMR_OT_capture(bpy.types.Operator):
    """Capture the clip: detect and track people, estimate their 3D pose, and build one animated rig per person.
    Runs in the background; Esc cancels"""

    bl_idname = "instanthmr.capture"
    bl_label = "Capture"
    bl_options = {"REGISTER"}

    _timer = None

    @classmethod
    def poll(cls, context):
        return not jobs.capture_running()

    def invoke(self, context, event):
        try:
            start_capture(context)
        except (CaptureInputError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(PUMP_SECONDS, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        # Without a UI event loop (scripts, blender -b) nothing would drive a modal pump: start the worker and
        # leave pumping to the caller (capture.py runs the engine synchronously instead).
        try:
            start_capture(context)
        except (CaptureInputError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            cancel_capture()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state, message = pump(context)
        for area in context.screen.areas if context.screen else ():
            if area.type == "VIEW_3D":
                area.tag_redraw()
        if state == "RUNNING":
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        if state == "FINISHED":
            self.report({"WARNING"} if " Warning: " in message else {"INFO"}, message)
            bpy.ops.ed.undo_push(message="InstantHMR capture")
            return {"FINISHED"}
        self.report({"WARNING"} if state == "CANCELLED" else {"ERROR"}, message)
        return {"CANCELLED"}


class INSTANTHMR_OT_cancel_capture(bpy.types.Operator):
    """Stop the running capture (within one frame); the scene is left as it was"""

    bl_idname = "instanthmr.cancel_capture"
    bl_label = "Cancel Capture"

    @classmethod
    def poll(cls, context):
        return jobs.capture_running()

    def execute(self, context):
        cancel_capture()
        return {"FINISHED"}


@bpy.app.handlers.persistent
def _stop_on_load(*_args):
    # Another file is being loaded: the running capture belongs to the old one.
    if cancel_capture(wait=5.0):
        jobs.put(jobs.CAPTURE, None)


classes = (INSTANTHMR_OT_capture, INSTANTHMR_OT_cancel_capture)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.app.handlers.load_pre.append(_stop_on_load)


def unregister() -> None:
    # Disabling the add-on stops the worker before its code goes away.
    cancel_capture(wait=5.0)
    jobs.put(jobs.CAPTURE, None)
    if _stop_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_stop_on_load)
    _unregister_classes()
