"""What the user asked for (the panel's settings or the command line's options) plus the add-on preferences ->
the engine's capture and solve settings, model files resolved and checked before any work. The panel and the
command line both come through here, so each piece of settings knowledge has one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import bpy

from ..instanthmr_blender.solve import SolveOptions
from .preferences import ADDON_PACKAGE, chosen_hmr_model, detector_model_path, model_folder, model_path, sam3d_settings

if TYPE_CHECKING:
    # The capture engine (ONNX Runtime, OpenCV) is imported when a capture starts, not when the add-on is enabled.
    from ..instanthmr_blender.capture.settings import CaptureSettings


class CaptureInputError(ValueError):
    """Something the user must fix before a capture can start (one line, naming the input)."""


@dataclass
class CaptureRequest:
    """A capture as the user asked for it. Model fields left None take the preferences' choice."""

    source: str
    start: int = 0
    end: int | None = None
    step: int = 1
    fps: float = 30.0
    detector_backend: str = "onnx"  # "onnx" | "torch"
    detector_variant: str = "nano"
    det_confidence: float = 0.5
    detector_stride: int = 1
    max_persons: int = 2
    min_track_length: int = 5
    batch_persons: bool = True
    lens: dict = field(default_factory=dict)  # CaptureSettings' lens fields: focal_px, or lens_mm + sensor_width_mm
    backend: str | None = None  # "instanthmr" | "sam3d"
    hmr_model: str | None = None  # an InstantHMR file given outright
    model_dir: str | None = None  # a folder holding the model files, instead of the preferences' folder
    hmr_size: str | None = None
    hmr_fit: int | None = None
    precision: str | None = None  # "as-given" | "int8"
    detector_model: str | None = None  # an RF-DETR ONNX file given outright
    device: str | None = None  # None: the preferences' default device
    threads: int | None = None
    sam3d: dict = field(default_factory=dict)  # Sam3DSettings fields overriding the preferences'


def pose_backend(prefs, request: CaptureRequest) -> str:
    return request.backend or prefs.pose_backend


def model_files(prefs, request: CaptureRequest) -> tuple[Path | None, Path | None]:
    """The InstantHMR and detector files the request loads, as absolute paths (None where none is loaded: the
    detector of the PyTorch backend, InstantHMR under SAM 3D Body); messages name files the user can find."""
    folder = Path(request.model_dir) if request.model_dir else None
    if request.hmr_model:
        hmr = Path(request.hmr_model)
    elif folder is not None:
        hmr = folder / chosen_hmr_model(prefs, request.hmr_size, request.hmr_fit).file
    elif request.hmr_size or request.hmr_fit is not None:
        hmr = model_folder(prefs) / chosen_hmr_model(prefs, request.hmr_size, request.hmr_fit).file
    else:
        hmr = model_path(prefs, "instanthmr")
    if request.detector_backend != "onnx":
        detector = None
    elif request.detector_model:
        detector = Path(request.detector_model)
    elif folder is not None:
        from ..instanthmr_blender.models.files import detector_spec

        detector = folder / detector_spec(request.detector_variant).filename
    else:
        detector = detector_model_path(prefs, request.detector_variant)
    if pose_backend(prefs, request) == "sam3d":
        hmr = None
    return (Path(os.path.abspath(hmr)) if hmr is not None else None,
            Path(os.path.abspath(detector)) if detector is not None else None)


def capture_settings(prefs, request: CaptureRequest, *, advice: str, log=None) -> CaptureSettings:
    """The engine's settings for the request, every file it loads checked (CaptureInputError in one line; `advice`
    says, in the caller's words, how to get missing model files). log: told which INT8 model replaces InstantHMR,
    with its measured fidelity."""
    from ..instanthmr_blender.capture.settings import CaptureSettings
    from ..instanthmr_blender.models.int8 import FidelityReport, choose_hmr_model, report_path
    from ..instanthmr_blender.models.runtime import ModelError
    from ..instanthmr_blender.pose.sam3d import Sam3DError

    backend = pose_backend(prefs, request)
    sam3d = None
    if backend == "sam3d":
        sam3d = sam3d_settings(prefs)
        for name, value in request.sam3d.items():
            setattr(sam3d, name, value)
        try:
            sam3d.check()
        except Sam3DError as error:
            raise CaptureInputError(str(error)) from None
    hmr, detector = model_files(prefs, request)
    missing = [path for path in (hmr, detector) if path is not None and not path.is_file()]
    if missing:
        listed = "; ".join(f"{path.name} (expected at {path})" for path in missing)
        raise CaptureInputError(f"model files missing: {listed}. {advice}")
    precision = request.precision or ("int8" if prefs.hmr_precision == "INT8" else "as-given")
    if hmr is not None and precision == "int8":
        try:
            int8 = choose_hmr_model(hmr, use_int8=True)
        except ModelError as error:  # missing, or measured on another model
            raise CaptureInputError(str(error)) from None
        if log is not None:
            log(f"InstantHMR {FidelityReport.load(report_path(hmr)).summary()}")
        hmr = int8
    device = request.device or prefs.default_device
    return CaptureSettings(
        source=request.source, start=request.start, end=request.end, step=request.step, fps=request.fps,
        detector_backend=request.detector_backend, detector_model=str(detector or ""),
        detector_variant=request.detector_variant, det_confidence=request.det_confidence,
        detector_stride=request.detector_stride, hmr_model=str(hmr or ""), max_persons=request.max_persons,
        min_track_length=request.min_track_length, batch_persons=request.batch_persons,
        device=device or "auto", threads=prefs.threads if request.threads is None else request.threads,
        backend=backend, **request.lens, **({"sam3d": sam3d} if sam3d is not None else {}),
    )


def solve_options(choices) -> SolveOptions:
    """SolveOptions from anything with the solve settings' names (the scene's settings, the command line's
    options); a floor choice and a camera-motion choice (static: the take's camera path left unused), when it
    has them."""
    return SolveOptions(
        smoothing=choices.smoothing,
        smoothing_method=choices.smoothing_method,
        foot_lock=bool(choices.foot_lock),
        symmetric_lengths=bool(choices.symmetric_lengths),
        clean=bool(getattr(choices, "clean", True)),
        floor=getattr(choices, "floor", "auto"),
        camera_path=getattr(choices, "camera_motion", "auto") != "static",
    )


def default_take_path(clip: str) -> Path:
    """Beside the .blend when it is saved, else in the extension's user folder; named after the clip."""
    stem = Path(clip.replace("%", "_")).stem or "take"
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//")) / f"{stem}.take.npz"
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="takes", create=True)) / f"{stem}.take.npz"


def mesh_options(prefs, model_dir: Path, *, module_path: str | None = None, python: str | None = None,
                 allow_download: bool = False) -> dict:
    """Keyword arguments of scene.mesh.build_body_meshes: the MHR module (given, the preference, or extracted
    from the release archive in the model folder, downloaded only when allowed) and the Python to run it in."""
    from ..instanthmr_blender.mesh import ensure_mhr_module

    module = module_path or (bpy.path.abspath(prefs.mhr_model_path) if prefs.mhr_model_path else None)
    if not module:
        module = ensure_mhr_module(model_dir, allow_network=allow_download)
    python = python or (bpy.path.abspath(prefs.mesh_python) if prefs.mesh_python else None)
    return {"module_path": Path(module), "python": python}


def scene_request(context, source: str) -> CaptureRequest:
    """The capture the panel asks for: the scene's capture settings (detection, tracking, lens, device); the
    model files and the rest from the preferences. The frame range is the offline capture's to add."""
    settings = context.scene.instanthmr
    return CaptureRequest(
        source=source,
        detector_backend=settings.detector_backend,
        detector_variant=settings.detector_variant,
        det_confidence=settings.det_confidence,
        detector_stride=settings.detector_stride,
        max_persons=settings.max_persons,
        min_track_length=settings.min_track_length,
        lens=scene_lens(settings),
        device=None if settings.device == "auto" else settings.device,  # the panel's "Preferences default"
    )


def scene_lens(settings) -> dict:
    """CaptureSettings' lens fields (focal_px, lens_mm, sensor_width_mm) from the scene's settings."""
    if settings.lens_mode == "mm":
        return {"lens_mm": settings.lens_mm, "sensor_width_mm": settings.sensor_width_mm}
    if settings.lens_mode == "px":
        return {"focal_px": settings.focal_px}
    return {}
