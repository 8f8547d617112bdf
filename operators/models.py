"""Operators about the model files: report which are present, and download the missing ones (in a worker
thread, SHA-256 verified, only with Blender's online access on)."""

from dataclasses import dataclass, field
from pathlib import Path

import bpy

from ..instanthmr_blender.models.files import KNOWN_MODELS, DownloadCancelled, ModelFolder, download
from ..settings.preferences import (
    capture_model_names,
    chosen_hmr_model,
    detector_model_path,
    get_preferences,
    hmr_model_path,
    model_folder,
)
from .background import BackgroundJob


def required_model_paths(prefs) -> dict[str, Path]:
    """The chosen InstantHMR model and the detector, by registry name, where the capture will look for them."""
    return {chosen_hmr_model(prefs).name: hmr_model_path(prefs), "rfdetr-nano": detector_model_path(prefs, "nano")}


class INSTANTHMR_OT_check_models(bpy.types.Operator):
    """Report which model files are present and where missing ones are expected"""

    bl_idname = "instanthmr.check_models"
    bl_label = "Check Model Files"
    bl_options = {"REGISTER"}

    def execute(self, context):
        missing = []
        for name, path in required_model_paths(get_preferences(context)).items():
            if path.is_file():
                self.report({"INFO"}, f"{name}: {path}")
            else:
                missing.append(f"{name} ({path})")
        if missing:
            self.report({"WARNING"}, "Missing model files: " + ", ".join(missing))
        return {"FINISHED"}


@dataclass
class DownloadJob(BackgroundJob):
    names: list[str]
    folder: Path
    allow_network: bool
    done: list[str] = field(default_factory=list)
    current: str = ""
    bytes_done: int = 0
    bytes_total: int | None = None

    thread_name = "InstantHMR download"

    def _run(self) -> None:
        try:
            for name in self.names:
                self.current, self.bytes_done, self.bytes_total = name, 0, None
                download(KNOWN_MODELS[name], self.folder, allow_network=self.allow_network,
                         progress=self._progress, cancel=self.cancel_event.is_set)
                self.done.append(name)
        except DownloadCancelled:
            self.error = "Download cancelled (the partial file is kept and resumes next time)"
        except Exception as exc:
            self.error = str(exc)

    def _progress(self, done: int, total: int | None) -> None:
        self.bytes_done, self.bytes_total = done, total


_download: DownloadJob | None = None


def start_download(context, names: list[str] | None = None) -> DownloadJob:
    """Download the missing models into the model folder in a worker thread."""
    global _download
    if _download is not None and _download.running:
        raise RuntimeError("A download is already running")
    prefs = get_preferences(context)
    folder = model_folder(prefs, create=True)
    if names is None:
        names = ModelFolder(folder).missing(capture_model_names(prefs))
    unknown = [name for name in names if name not in KNOWN_MODELS]
    if unknown:
        raise RuntimeError(f"Unknown model(s) {', '.join(unknown)}: known are {', '.join(KNOWN_MODELS)}")
    _download = DownloadJob(list(names), folder, allow_network=bool(bpy.app.online_access))
    context.window_manager.instanthmr_download.running = True
    _download.start()
    return _download


def pump_download(context) -> tuple[str, str]:
    """("RUNNING", status) | ("FINISHED", summary) | ("FAILED", error); main thread only."""
    global _download
    job = _download
    props = context.window_manager.instanthmr_download
    if job is None:
        return "FAILED", "No download is running"
    if job.running:
        total = job.bytes_total
        props.factor = job.bytes_done / total if total else 0.0
        size = f"{job.bytes_done / 1e6:.1f}" + (f" / {total / 1e6:.1f}" if total else "")
        props.status = f"Downloading {job.current}: {size} MB"
        return "RUNNING", props.status
    _download = None
    props.running = False
    if job.error:
        props.status = job.error
        return "FAILED", job.error
    props.factor = 1.0
    props.status = f"Downloaded and verified: {', '.join(job.done) or 'nothing was missing'}"
    return "FINISHED", props.status


class INSTANTHMR_OT_download_models(bpy.types.Operator):
    """Download the missing model files (the chosen InstantHMR model from its Hugging Face repository, an RF-DETR
    ONNX export), verified by SHA-256"""

    bl_idname = "instanthmr.download_models"
    bl_label = "Download Models"

    models: bpy.props.StringProperty(
        name="Models", default="", options={"SKIP_SAVE"},
        description="Comma-separated model names to download (empty: the missing capture models)")

    _timer = None

    @classmethod
    def poll(cls, context):
        if not bpy.app.online_access:
            cls.poll_message_set("Enable Blender's online access (Preferences > System > Network) first")
            return False
        return _download is None or not _download.running

    def _names(self) -> list[str] | None:
        return [name.strip() for name in self.models.split(",") if name.strip()] or None

    def invoke(self, context, event):
        started = self.execute(context)
        if started != {"FINISHED"}:
            return started
        self._timer = context.window_manager.event_timer_add(0.2, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        try:
            start_download(context, self._names())
        except RuntimeError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}

    def modal(self, context, event):
        if event.type == "ESC" and _download is not None:
            _download.cancel_event.set()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        state, message = pump_download(context)
        for window in context.window_manager.windows:
            for area in window.screen.areas:
                area.tag_redraw()
        if state == "RUNNING":
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        self.report({"INFO"} if state == "FINISHED" else {"ERROR"}, message)
        return {"FINISHED"} if state == "FINISHED" else {"CANCELLED"}


classes = (INSTANTHMR_OT_check_models, INSTANTHMR_OT_download_models)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()


def unregister() -> None:
    global _download
    if _download is not None and _download.running:
        _download.cancel(wait=5.0)
    _download = None
    _unregister_classes()
