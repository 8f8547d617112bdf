"""The synchronous command-line capture behind capture.py: parse options, check inputs and models, capture (or
load a take), solve, build the scene, save the .blend and export.

Runs inside Blender (capture.py enables the add-on first), prints text progress, and returns an exit status
instead of raising: 0 success, 1 a capture or processing failure, 2 bad input or missing model files, 130 Ctrl-C.
"""

import argparse
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import bpy

from . import headless_live
from .instanthmr_blender.capture.offline import capture
from .instanthmr_blender.capture.settings import CaptureError, CaptureSettings, CaptureSummary, Progress
from .instanthmr_blender.mesh import MeshError
from .instanthmr_blender.models.files import KNOWN_MODELS, ModelDownloadError
from .instanthmr_blender.models.registry import RegistryError, registry
from .instanthmr_blender.models.runtime import ModelError
from .instanthmr_blender.output_paths import output_problem
from .instanthmr_blender.pose.sam3d import BACKENDS, Sam3DError, Sam3DWorkerError
from .instanthmr_blender.solve import SolveError, SolveOptions
from .instanthmr_blender.take import TakeError, load_take, locate_source, save_take
from .instanthmr_blender.video.frames import FrameSourceError
from .instanthmr_blender.video.lens import Lens, LensError
from .retarget.bake import RetargetError
from .scene import naming, workflow
from .scene.build import take_name_from_path
from .scene.export import ExportError, export_capture, export_format
from .ui.preferences import ADDON_PACKAGE, detector_model_path, get_preferences, model_path, sam3d_settings

DEVICES = ("auto", "cpu", "cuda", "coreml", "directml")
# Errors whose message tells the user what to fix in the input: exit status 2.
INPUT_ERRORS = (FrameSourceError, ModelError, TakeError, ModelDownloadError, ExportError, MeshError, RetargetError,
                LensError, RegistryError, Sam3DError, *headless_live.INPUT_ERRORS)


#: Exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


class UsageError(Exception):
    """Bad input the user can fix: printed as one line, exit status 2."""


class Interrupted(Exception):
    """Ctrl-C: the message says what was kept; exit status 130."""


class OutputError(Exception):
    """The work was done but writing a result failed; the message says what was kept: exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one `capture: error:` line (no usage block), exit status 2."""

    def error(self, message):
        raise UsageError(message)


def _at_least(minimum):
    return lambda value: value >= minimum


def _positive(value) -> bool:
    return math.isfinite(value) and value > 0


# Every numeric option: (option, attribute, test, what it must be). None (not given) is always fine.
OPTION_RANGES = (
    ("--start", "start", _at_least(0), "0 or more"),
    ("--end", "end", _at_least(1), "1 or more"),
    ("--frame-skip", "frame_skip", _at_least(1), "1 or more"),
    ("--fps", "fps", _positive, "a positive number of frames per second"),
    ("--threads", "threads", _at_least(0), "0 (automatic) or more"),
    ("--det-confidence", "det_confidence", lambda value: 0.0 <= value < 1.0, "from 0 up to (not including) 1"),
    ("--detector-stride", "detector_stride", _at_least(1), "1 or more"),
    ("--max-persons", "max_persons", _at_least(1), "1 or more"),
    ("--min-track-length", "min_track_length", _at_least(1), "1 or more"),
    ("--retarget-person", "retarget_person", _at_least(0), "0 or more (a tracked person's number)"),
    ("--retarget-scale", "retarget_scale", _positive, "a positive number"),
    ("--focal-px", "focal_px", _positive, "a positive number of pixels"),
    ("--lens-mm", "lens_mm", _positive, "a positive number of millimetres"),
    ("--sensor-width-mm", "sensor_width_mm", _positive, "a positive number of millimetres"),
    ("--sam3d-timeout", "sam3d_timeout", _positive, "a positive number of seconds"),
)


def check_option_ranges(args) -> None:
    """UsageError naming the first numeric option out of range (before any work)."""
    for option, name, ok, wanted in OPTION_RANGES:
        value = getattr(args, name, None)
        if value is not None and not ok(value):
            raise UsageError(f"{option} must be {wanted} (got {value:g})")
    if args.end is not None and args.end <= args.start:
        raise UsageError(f"--end {args.end} must be greater than --start {args.start} (the end is exclusive)")


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise argparse.ArgumentTypeError("use on or off")
    return value == "on"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="capture.py",
        description="Markerless motion capture from a video into a .blend (InstantHMR for Blender): one animated "
        "capture rig per person, a camera matched to the video, optional exports.",
        epilog="Inside Blender: blender -b -P capture.py -- clip.mp4 [options]. Exit status: 0 done, 1 the capture "
        "failed, 2 bad input or missing model files, 130 interrupted (Ctrl-C).",
    )
    parser.add_argument("clip", nargs="?", help="video file, image-sequence folder or printf pattern (frame_%%04d.png)")
    source = parser.add_argument_group("input")
    source.add_argument("--image", metavar="PATH", help="capture a single image instead of a clip")
    source.add_argument("--take", metavar="IN.npz", help="solve a saved take instead of running the models")
    source.add_argument("--import-sam3d", metavar="DIR",
                        help="import SAM 3D Body results saved from its demo (.npz/.pkl per frame and person) as the "
                        "take; a clip given too sets the frame size, rate and background")
    source.add_argument("--start", type=int, default=0, help="first source frame (default 0)")
    source.add_argument("--end", type=int, default=None, help="source frame to stop before (default: the end)")
    source.add_argument("--frame-skip", type=int, default=1, metavar="N",
                        help="process every Nth frame (default 1: every frame)")
    source.add_argument("--fps", type=float, default=30.0, help="frame rate of image sequences (default 30)")
    headless_live.add_arguments(parser)
    models = parser.add_argument_group("models")
    models.add_argument("--model", metavar="PATH", help="InstantHMR ONNX file (default: from the model folder)")
    models.add_argument("--model-dir", metavar="DIR", help="folder holding the model files")
    models.add_argument("--model-size", choices=tuple(registry().sizes), default=None,
                        help="which published InstantHMR model (default: the add-on preference, else first_release "
                        "= instanthmr.onnx); see the README for each one's accuracy and licence")
    models.add_argument("--model-fit", type=int, choices=(0, 1, 2), default=None,
                        help="its fit level: 0 none, 1 or 2 crops per person (v1.1; default: the preference)")
    models.add_argument("--precision", choices=("as-given", "int8"), default=None,
                        help="InstantHMR as given, or its INT8 version made by tools/quantize_hmr.py from your clip "
                        "(its measured fidelity is printed; default: the add-on preference)")
    models.add_argument("--download-models", action="store_true",
                        help="download the model files these settings need into the model folder when missing "
                        "(your consent to go online), SHA-256 verified")
    models.add_argument("--device", choices=DEVICES, default=None,
                        help="where the models run (default: the add-on preference, else auto)")
    models.add_argument("--threads", type=int, default=None, help="CPU threads per model (0: automatic)")
    models.add_argument("--detector", choices=("onnx", "rfdetr"), default="onnx",
                        help="RF-DETR as ONNX (default, no PyTorch) or the rfdetr PyTorch package")
    models.add_argument("--detector-model", metavar="PATH", help="RF-DETR ONNX file (default: from the model folder)")
    models.add_argument("--detector-variant", choices=("nano", "small", "medium", "large"), default="nano")
    models.add_argument("--det-confidence", type=float, default=0.5, help="minimum person score (default 0.5)")
    models.add_argument("--detector-stride", type=int, default=1, metavar="N",
                        help="run the detector every Nth frame; boxes follow keypoints in between (default 1)")
    models.add_argument("--max-persons", type=int, default=2, help="most people per frame (default 2)")
    models.add_argument("--min-track-length", type=int, default=5, help="drop people seen in fewer frames (5)")
    models.add_argument("--no-batch-persons", action="store_true", help="run InstantHMR one person at a time")
    lens = parser.add_argument_group("camera lens (default: the model's own camera)")
    lens.add_argument("--focal-px", type=float, default=None, metavar="F",
                      help="the video's focal length in pixels (InstantHMR and SAM 3D Body)")
    lens.add_argument("--lens-mm", type=float, default=None, metavar="MM",
                      help="the lens's focal length in mm (with --sensor-width-mm, default 36: 35 mm equivalent)")
    lens.add_argument("--sensor-width-mm", type=float, default=None, metavar="MM",
                      help="sensor size along the image's longer side, mm (with --lens-mm)")
    sam3d = parser.add_argument_group("SAM 3D Body (optional: more accurate, slower; its own Python environment)")
    sam3d.add_argument("--backend", choices=BACKENDS, default=None,
                       help="the pose model: instanthmr (ONNX, default) or sam3d (default: the add-on preference)")
    sam3d.add_argument("--sam3d-python", metavar="PATH", help="the python of an environment with torch and sam-3d-body")
    sam3d.add_argument("--sam3d-checkpoint", metavar="DIR",
                       help="folder with model.ckpt, model_config.yaml and assets/mhr_model.pt")
    sam3d.add_argument("--sam3d-code", metavar="DIR",
                       help="a checkout of facebookresearch/sam-3d-body (when it is not installed there)")
    sam3d.add_argument("--sam3d-backbone", metavar="FILE",
                       help="Embedl INT8 backbone: .pt2, .onnx (a TensorRT engine is built once) or .engine")
    sam3d.add_argument("--sam3d-device", choices=("auto", "cuda", "cpu", "mps"), default="auto")
    sam3d.add_argument("--sam3d-timeout", type=float, default=300.0, metavar="S",
                       help="seconds a frame may take before the worker counts as hung (300)")
    solve = parser.add_argument_group("solve")
    solve.add_argument("--smoothing", choices=("off", "light", "medium", "strong"), default="medium")
    solve.add_argument("--smoothing-method", choices=("zero_lag", "one_euro"), default="zero_lag")
    solve.add_argument("--foot-lock", type=_on_off, default=True, metavar="on|off", help="lock planted feet (on)")
    solve.add_argument("--symmetric-lengths", type=_on_off, default=True, metavar="on|off",
                       help="same length for left and right limbs (on)")
    solve.add_argument("--clean", type=_on_off, default=True, metavar="on|off",
                       help="repair swaps, flips and jumps before smoothing (on)")
    solve.add_argument("--floor", choices=("auto", "none"), default="auto",
                       help="fit the floor to the feet (auto) or take gravity from the camera (none)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", metavar="OUT.blend",
                        help="the .blend to write, its folder must exist (default: ./<clip name>.blend)")
    output.add_argument("--save-take", metavar="OUT.npz", help="also save the take (re-solve later with --take)")
    output.add_argument("--export", action="append", default=[], metavar="OUT.bvh|.fbx|.glb",
                        help="export the rigs (repeatable); BVH writes one file per person, OUT.person00.bvh ...")
    output.add_argument("--export-per-person", action="store_true", help="one FBX/glTF file per person")
    output.add_argument("--no-background", action="store_true", help="no video behind the camera")
    retarget = parser.add_argument_group("retarget")
    retarget.add_argument("--retarget-to", metavar="PATH.blend[:OBJECT]",
                          help="append that armature (Rigify, Mixamo-style...) and bake the capture onto it")
    retarget.add_argument("--retarget-person", type=int, default=None, metavar="TRACK",
                          help="which tracked person to retarget (default: the first)")
    retarget.add_argument("--retarget-root-motion", choices=("full", "in_place", "ground"), default="full")
    retarget.add_argument("--retarget-scale", type=float, default=None,
                          help="target / capture size for root motion (default: from the legs' lengths)")
    retarget.add_argument("--retarget-bake-ik", action="store_true",
                          help="Rigify targets: also key the IK controls to match (switches stay on FK)")
    mesh = parser.add_argument_group("body mesh (optional, needs PyTorch)")
    mesh.add_argument("--mesh", action="store_true", help="also build an animated MHR body mesh per person")
    mesh.add_argument("--mhr-model", metavar="PATH",
                      help="Meta's MHR TorchScript module mhr_model.pt (default: from the model folder)")
    mesh.add_argument("--mesh-python", metavar="PATH",
                      help="a Python with PyTorch to run the mesh step in (default: this Python)")
    return parser


def _print(message: str) -> None:
    print(message, flush=True)


def _print_quality(built) -> None:
    """The solve's quality report: one line per person (jitter, foot slide, repairs, reprojection, bones)."""
    for line in built.quality_lines:
        _print(f"quality: {line}")


class _ProgressPrinter:
    """Text progress at most once a second (and at the end)."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self.last < 1.0 and progress.frames_done < progress.frames_total:
            return
        self.last = now
        from .operators.capture import status_text

        _print(f"capture: {status_text(progress)}")


def _chosen_hmr(args, prefs):
    """The registry entry of --model-size / --model-fit, each defaulting to the preferences' choice."""
    size = args.model_size or prefs.hmr_size
    fit = args.model_fit
    if fit is None:
        fit = 0 if size == "first_release" else int(prefs.hmr_fit)
    return registry().choose(size, fit)


def _lens_settings(args) -> dict:
    """CaptureSettings' lens fields from --focal-px / --lens-mm / --sensor-width-mm (their ranges are checked with
    the other options'); UsageError for a combination that makes no sense."""
    if args.focal_px is not None and args.lens_mm is not None:
        raise UsageError("give the focal length either with --focal-px or with --lens-mm, not both")
    if args.sensor_width_mm is not None and args.lens_mm is None:
        raise UsageError("--sensor-width-mm goes with --lens-mm (the focal length in mm)")
    if args.lens_mm is not None:
        return {"lens_mm": args.lens_mm, "sensor_width_mm": args.sensor_width_mm or 36.0}
    return {} if args.focal_px is None else {"focal_px": args.focal_px}


def _model_paths(args, prefs) -> tuple[Path, Path | None]:
    """The model files to load, as absolute paths (messages name files the user can find)."""
    folder = Path(args.model_dir) if args.model_dir else None
    if args.model:
        hmr = Path(args.model)
    elif folder is not None:
        hmr = folder / _chosen_hmr(args, prefs).file
    elif args.model_size or args.model_fit is not None:
        from .ui.preferences import model_folder

        hmr = model_folder(prefs) / _chosen_hmr(args, prefs).file
    else:
        hmr = model_path(prefs, "instanthmr")
    if args.detector != "onnx":
        return Path(os.path.abspath(hmr)), None
    if args.detector_model:
        detector = Path(args.detector_model)
    elif folder is not None:
        spec = KNOWN_MODELS.get(f"rfdetr-{args.detector_variant}", KNOWN_MODELS["rfdetr-nano"])
        detector = folder / spec.filename
    else:
        detector = detector_model_path(prefs, args.detector_variant)
    return Path(os.path.abspath(hmr)), Path(os.path.abspath(detector))


def _sam3d_settings(args, prefs):
    """SAM 3D Body's settings: the command line's, else the preferences'; checked (one line) before any work."""
    settings = sam3d_settings(prefs)
    for field, value in (("python", args.sam3d_python), ("checkpoint", args.sam3d_checkpoint),
                         ("code", args.sam3d_code), ("backbone", args.sam3d_backbone)):
        if value:
            setattr(settings, field, str(Path(value).resolve()) if field != "python" else value)
    settings.device, settings.frame_timeout = args.sam3d_device, args.sam3d_timeout
    settings.check()
    return settings


def _import_sam3d(args, clip: str | None):
    """The take from SAM 3D Body results; the clip, when given, gives the frame size and rate."""
    from .instanthmr_blender.capture.sam3d_import import import_sam3d_results
    from .instanthmr_blender.video.frames import open_source

    size, fps = None, args.fps
    if clip:
        with open_source(clip, fps=args.fps) as source:
            size, fps = (source.info.height, source.info.width), source.info.fps
    focal_px = args.focal_px
    if args.lens_mm is not None:
        if size is None:
            raise UsageError("--lens-mm with --import-sam3d needs the clip (its frame width turns mm into pixels): "
                             "give the clip too, or --focal-px")
        focal_px = Lens(**_lens_settings(args)).focal_pixels(size)
    take = import_sam3d_results(args.import_sam3d, image_size=size, fps=fps, focal_px=focal_px,
                                source=str(Path(clip).resolve()) if clip else "",
                                min_track_length=args.min_track_length)
    _print(f"capture: imported SAM 3D Body results from {args.import_sam3d} ({_people(take.num_tracks)}, "
           f"{take.num_frames} frames)")
    return take


def _capture_settings(args, clip: str, prefs) -> CaptureSettings:
    """The models and detection settings from the options (model files checked), for a clip or a live source."""
    backend = args.backend or prefs.pose_backend
    sam3d = _sam3d_settings(args, prefs) if backend == "sam3d" else None
    hmr, detector = _model_paths(args, prefs)
    if sam3d is not None:
        hmr = None
    missing = [(name, path) for name, path in (("instanthmr", hmr), ("detector", detector))
               if path is not None and not path.is_file()]
    if missing:
        listed = "; ".join(f"{name} expected at {path}" for name, path in missing)
        raise UsageError(f"model files missing: {listed}. Pass --download-models to fetch them, or put them there "
                         "(or pass --model-dir, --model, --detector-model); see the README's 'Model files' section")
    precision = args.precision or ("int8" if prefs.hmr_precision == "INT8" else "as-given")
    if hmr is not None and precision == "int8":
        from .instanthmr_blender.models.int8 import FidelityReport, choose_hmr_model, report_path

        int8 = choose_hmr_model(hmr, use_int8=True)  # ModelError (exit 2) when missing or measured on another model
        _print(f"capture: InstantHMR {FidelityReport.load(report_path(hmr)).summary()}")
        hmr = int8
    settings = CaptureSettings(
        source=clip, start=args.start, end=args.end, step=args.frame_skip, fps=args.fps,
        detector_backend="onnx" if args.detector == "onnx" else "torch",
        detector_model=str(detector or ""), detector_variant=args.detector_variant,
        det_confidence=args.det_confidence, detector_stride=args.detector_stride,
        hmr_model=str(hmr or ""), max_persons=args.max_persons, min_track_length=args.min_track_length,
        batch_persons=not args.no_batch_persons,
        device=args.device or prefs.default_device or "auto",
        threads=prefs.threads if args.threads is None else args.threads,
        backend=backend, **_lens_settings(args), **({"sam3d": sam3d} if sam3d is not None else {}),
    )
    return settings


def _capture(args, clip: str, prefs):
    settings = _capture_settings(args, clip, prefs)
    started = time.monotonic()
    summaries: list[CaptureSummary] = []
    try:
        take = capture(settings, progress=_ProgressPrinter(), log=lambda line: _print(f"capture: {line}"),
                       summary=summaries.append)
    except KeyboardInterrupt:
        raise Interrupted("stopped during the capture: nothing was written") from None
    _print(f"capture: {_people(take.num_tracks)} tracked over {take.num_frames} frames "
           f"in {time.monotonic() - started:.1f} s")
    summary = summaries[0]
    if summary.truncated:
        _print(f"capture: warning: {summary.truncation_message()}")
    if summary.short_tracks_dropped:
        _print(f"capture: warning: {summary.short_tracks_message('--min-track-length')}")
        if take.num_tracks == 0:
            raise UsageError(f"nobody to build: {summary.short_tracks_message('--min-track-length')}")
    return take


def _mesh_options(args, prefs) -> dict:
    """The body-mesh module and Python, checked before any capture work (a 1-row call of the module)."""
    from .instanthmr_blender.mesh import open_runner
    from .ui.preferences import model_folder

    folder = Path(args.model_dir) if args.model_dir else model_folder(prefs, create=True)
    options = workflow.mesh_options(prefs, folder, module_path=args.mhr_model, python=args.mesh_python,
                                    allow_download=bool(bpy.app.online_access) or args.download_models)
    with open_runner(options["module_path"], options["python"]):
        pass
    return options


def _download_models(args, prefs) -> None:
    """--download-models: fetch the model files this capture will load that are missing and downloadable (the
    chosen InstantHMR model, the detector), verified; offline, one line says what to fetch from where to where."""
    from .instanthmr_blender.models.files import download_missing

    if getattr(bpy.app, "online_access_override", False) and not bpy.app.online_access:
        raise UsageError("--download-models: Blender was started with --offline-mode; drop one of the two")
    hmr, detector = _model_paths(args, prefs)
    wanted = []
    for path in (hmr, detector):
        spec = next((s for s in KNOWN_MODELS.values() if path is not None and s.filename == path.name), None)
        if path is not None and spec is not None:
            wanted.append((spec, Path(path).absolute()))
    printer = _DownloadPrinter()
    for path in download_missing(wanted, progress=printer):
        _print(f"capture: downloaded and verified {path}")


class _DownloadPrinter:
    """Download progress at most once a second."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, spec, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 1.0 and done != total:
            return
        self.last = now
        size = f"{done / 1e6:.1f}" + (f" / {total / 1e6:.1f}" if total else "")
        _print(f"capture: downloading {spec.filename} from {spec.url}: {size} MB")


def _blend_part(spec: str) -> str:
    """`PATH.blend[:OBJECT]` -> PATH.blend (a Windows drive colon is part of the path)."""
    index = spec.lower().rfind(".blend")
    return spec[: index + len(".blend")] if index >= 0 else spec


def _retarget(args, rigs) -> None:
    from .retarget import append_target, retarget_capture

    if args.retarget_person is None:
        source = rigs[0]
    else:
        source = next((rig for rig in rigs if rig.get(naming.PROP_TRACK_ID) == args.retarget_person), None)
        if source is None:
            ids = ", ".join(str(rig.get(naming.PROP_TRACK_ID)) for rig in rigs)
            raise UsageError(f"--retarget-person {args.retarget_person}: no such person (tracked: {ids})")
    target = append_target(args.retarget_to, bpy.context)
    result = retarget_capture(bpy.context, source, target, root_motion=args.retarget_root_motion,
                              scale=args.retarget_scale, bake_ik=args.retarget_bake_ik)
    _print(f"capture: retargeted {source.name} onto {target.name} ({len(result.frames)} frames, "
           f"action {result.action.name})")


def _people(count: int) -> str:
    return f"{count} person" if count == 1 else f"{count} people"


def _clear_default_scene() -> None:
    # A headless Blender starts with the default cube, light and camera: the capture file should hold the capture.
    if bpy.data.filepath:
        return
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)


def check_output(option: str, path: Path) -> Path:
    """The absolute path of an output file, after checking that it can be written (UsageError otherwise)."""
    problem = output_problem(path)
    if problem is not None:
        raise UsageError(f"{option} {os.path.abspath(path)}: {problem}")
    return Path(os.path.abspath(path))


def _blend_output(args, name: str) -> Path:
    if args.out is None:
        return check_output("--out", Path.cwd() / f"{name}.blend")
    if Path(args.out).is_dir():
        check_output("--out", Path(args.out))  # names the folder
    if Path(args.out).suffix.lower() != ".blend":
        raise UsageError(f"--out {args.out}: the output is a Blender file: give a name ending in .blend "
                         f"(e.g. {Path(args.out).with_suffix('.blend').name})")
    return check_output("--out", Path(args.out))


def _blender_message(error: Exception, path: Path) -> str:
    """Blender's error text as one line, without its `Error:` prefix, the temporary `file.blend@` it writes, or
    the traceback a failing Python operator (an exporter) carries: only its last line, the error itself."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = lines[-1] if any("Traceback" in line for line in lines) else " ".join(lines)
    return re.sub(r"\S*\.blend@", str(path), text.removeprefix("Error: "))


@contextmanager
def _blender_output_held(rename: tuple[str, str] | None = None):
    """Hold what Blender prints on stdout/stderr (C-level, e.g. a failed save's `Error: ... file.blend@` or an
    exporter's traceback) and show it only when the block succeeds: a failure is reported as one line.
    rename: (temporary folder, final folder), so the lines shown name the files where they end up."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 1)
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if not failed:
                held.seek(0)
                text = held.read().decode(errors="replace")
                sys.stdout.write(text.replace(*rename) if rename else text)
                sys.stdout.flush()


def _was_interrupted(error: BaseException) -> bool:
    # Ctrl-C inside a Python operator (an exporter) reaches us as the operator's RuntimeError; inside Blender's
    # own argument parsing (seen on 5.2) as an unrelated-looking error: the SIGINT flag decides then.
    if isinstance(error, KeyboardInterrupt) or _sigint_received.is_set():
        return True
    return isinstance(error, RuntimeError) and "KeyboardInterrupt" in str(error)


_sigint_received = threading.Event()


def _on_sigint(signum, frame):
    _sigint_received.set()
    raise KeyboardInterrupt


def _watch_sigint():
    """Note every Ctrl-C (and raise KeyboardInterrupt as Python does) while the command runs; returns the handler
    to restore. A SIGINT that is ignored (a background job) stays ignored."""
    _sigint_received.clear()
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
    return previous


def _unwatch_sigint(previous) -> None:
    if signal.getsignal(signal.SIGINT) is _on_sigint:
        signal.signal(signal.SIGINT, previous)


def _save_blend(out: Path) -> None:
    try:
        with _blender_output_held():
            bpy.ops.wm.save_as_mainfile(filepath=str(out), check_existing=False)
    except RuntimeError as error:
        if _was_interrupted(error):
            raise KeyboardInterrupt from None
        raise OutputError(f"could not write {out} ({_blender_message(error, out)})") from None


def _export(args, rigs, path: Path) -> list[Path]:
    """One --export, written into a temporary folder beside it and renamed into place once complete, so an
    interrupted or failed export leaves no half-written file (glTF's .bin keeps the final name)."""
    # Named before it exists, so a Ctrl-C at any point (even inside the mkdir) still has it removed below.
    staging = path.parent / f".{path.name}.instanthmr-export-{os.getpid()}"
    try:
        shutil.rmtree(staging, ignore_errors=True)  # left by a run killed outright
        staging.mkdir()
        with _blender_output_held(rename=(str(staging), str(path.parent))):
            made = export_capture(bpy.context, rigs, str(staging / path.name), per_person=args.export_per_person)
        written = []
        for item in sorted(staging.iterdir()):
            final = path.parent / item.name
            os.replace(item, final)
            if item.name in {m.name for m in made}:
                written.append(final)
        return written
    except RuntimeError as error:
        if _was_interrupted(error):
            raise KeyboardInterrupt from None
        reason = _blender_message(error, path).replace(str(staging), str(path.parent))
        raise OutputError(f"could not export {path} ({reason})") from None
    except OSError as error:
        raise OutputError(f"could not export {path} ({error.strerror or 'error'})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _keep_take(take, name: str, saved: Path | None) -> Path | None:
    """The saved take after a failure: the one already written, else the take saved now in the extension's
    user folder (where the panel keeps takes); None when even that fails."""
    if saved is not None:
        return saved
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not lose the take
    try:
        return save_take(take, workflow.default_take_path(name, ADDON_PACKAGE))
    except Exception:
        return None
    finally:
        signal.signal(signal.SIGINT, previous)


def _kept_message(kept: Path | None, out: Path, *, interrupted: bool = False) -> str:
    if kept is None:
        return "the capture could not be kept (no writable place for its take)"
    when = "" if interrupted else "once that is fixed, "
    return (f"the capture is kept in the take {kept}: {when}rebuild it without running the models with "
            f"capture.py --take {kept} --out {out}")


def _background_clip(args, clip: str | None, take) -> str | None:
    """The clip shown behind the camera: the one given, else the take's own (found where it was recorded,
    relative to the take, or next to it); None, with a warning, when it cannot be found."""
    if args.no_background:
        return None
    if clip and not args.take:
        return os.path.abspath(clip)
    if clip:
        if Path(clip).exists() or "%" in Path(clip).name:
            return os.path.abspath(clip)
        _print(f"capture: warning: the clip {clip} does not exist: the camera has no background")
        return None
    found = locate_source(take.source, args.take)
    if found is None:
        where = f"the take's clip {take.source}" if take.source else "the take names no clip and"
        _print(f"capture: warning: {where} was not found (nor next to the take): the camera has no "
               "background; give the clip too (capture.py CLIP --take TAKE.npz) to show it")
    return found


def run(args) -> int:
    clip = args.image or args.clip
    live = headless_live.check_arguments(args, UsageError)
    if args.image and args.clip:
        raise UsageError("give either a clip or --image, not both")
    if not clip and not args.take and not args.import_sam3d and not live:
        raise UsageError("nothing to capture: give a clip, --image PATH, --take IN.npz, --import-sam3d DIR, "
                         "--camera N or --stream URL")
    if args.take and args.import_sam3d:
        raise UsageError("give either --take or --import-sam3d, not both")
    if live and (args.backend or get_preferences().pose_backend) == "sam3d":
        raise UsageError("live capture runs InstantHMR only (SAM 3D Body is far too slow for it): "
                         "pass --backend instanthmr")
    check_option_ranges(args)
    _lens_settings(args)
    # Every output location is checked before any model runs: a bad one must not cost a whole capture.
    if args.take and not clip:
        take_source = load_take(args.take).source
        name = take_name_from_path(take_source or args.take)
    elif live:
        name = headless_live.take_name(args)
    else:
        name = take_name_from_path(clip or args.take or os.path.abspath(args.import_sam3d))
    out = _blend_output(args, name)
    save_take_path = check_output("--save-take", Path(args.save_take)) if args.save_take else None
    exports = []
    for path in args.export:
        export_format(path)
        exports.append(check_output("--export", Path(path)))
    if args.retarget_to:
        target_file = _blend_part(args.retarget_to)
        if not Path(target_file).is_file():
            raise UsageError(f"--retarget-to {args.retarget_to}: {target_file} is not a file")
    prefs = get_preferences()
    if args.download_models and not args.take:
        _download_models(args, prefs)
    mesh = _mesh_options(args, prefs) if args.mesh else None
    if args.take:
        take = load_take(args.take)
        _print(f"capture: loaded take {args.take} ({_people(take.num_tracks)}, {take.num_frames} frames)")
    elif args.import_sam3d:
        if clip and not Path(clip).exists() and "%" not in Path(clip).name:
            raise UsageError(f"{clip}: no such file or folder")
        take = _import_sam3d(args, clip)
    elif live:
        take = headless_live.record(args, _capture_settings(args, "", prefs), _print)
    else:
        if not Path(clip).exists() and "%" not in Path(clip).name:
            raise UsageError(f"{clip}: no such file or folder")
        take = _capture(args, clip, prefs)
    saved = Path(os.path.abspath(args.take)) if args.take else None
    try:
        if save_take_path is not None:
            saved = save_take(take, save_take_path)
            _print(f"wrote {save_take_path}")
        _build_and_write(args, take, name, clip, out, exports, mesh)
    except (Exception, KeyboardInterrupt) as error:
        # The take is the work: whatever failed after it exists, it is kept and named with how to rebuild.
        interrupted = _was_interrupted(error)
        kept = _kept_message(_keep_take(take, name, saved), out, interrupted=interrupted)
        if interrupted:
            raise Interrupted(f"{kept}") from None
        if isinstance(error, (UsageError, *INPUT_ERRORS)):
            raise UsageError(f"{error}; {kept}") from None
        if isinstance(error, OSError):
            raise OutputError(f"could not write the results ({error.strerror or error}); {kept}") from None
        if isinstance(error, RuntimeError) and not isinstance(error, CaptureError):
            raise OutputError(f"{_blender_message(error, out)}; {kept}") from None
        raise OutputError(f"{error}; {kept}") from None
    return 0


def _build_and_write(args, take, name: str, clip: str | None, out: Path, exports: list[Path],
                     mesh: dict | None) -> None:
    """Everything after the take is saved: solve, build the scene, retarget, export, save the .blend. Each file
    is announced as it is written, so a later failure leaves the earlier files named."""
    options = SolveOptions(smoothing=args.smoothing, smoothing_method=args.smoothing_method,
                           foot_lock=args.foot_lock, symmetric_lengths=args.symmetric_lengths, floor=args.floor,
                           clean=args.clean)
    solution = workflow.solve(take, name, options)
    for track_id, why in solution.skipped:
        _print(f"capture: warning: {naming.armature_name(name, track_id)} left out: {why}")
    _clear_default_scene()
    # Imported results without a clip, and live recordings, have no video to show: no warning for that.
    background = (None if (args.import_sam3d and not clip) or headless_live.is_live(args)
                  else _background_clip(args, clip, take))
    if mesh is not None:
        # The .blend is saved last: put the point caches where a saved file's caches go, beside it.
        mesh["cache_dir"] = str(out.parent / f"{out.stem}_instanthmr_cache")
    take_file = os.path.abspath(args.take or args.save_take) if (args.take or args.save_take) else None
    built = workflow.build_solution(bpy.context, take, solution, name, background=background, mesh=mesh,
                                    take_file=take_file)
    if built.mesh_error:
        raise MeshError(built.mesh_error)
    _print_quality(built)
    if args.retarget_to:
        _retarget(args, built.rigs)
    for path in exports:
        _print(f"capture: exporting {path}")
        for written in _export(args, built.rigs, path):
            _print(f"wrote {written}")
    _save_blend(out)
    _print(f"capture: built a capture rig for {_people(len(built.rigs))}"
           + (f" and {len(built.meshes)} body meshes" if built.meshes else ""))
    _print(f"wrote {out}")


def main(argv: list[str]) -> int:
    parser = build_parser()
    previous_sigint = _watch_sigint()
    try:
        args = parser.parse_args(argv)
        return run(args)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except Interrupted as exc:
        _interrupted(str(exc))
        return INTERRUPTED
    except KeyboardInterrupt:
        _interrupted("nothing was written")
        return INTERRUPTED
    except (UsageError, *INPUT_ERRORS) as exc:
        _error(str(exc))
        return 2
    except (OutputError, CaptureError, SolveError, ValueError, OSError, Sam3DWorkerError) as exc:
        _error(str(exc))
        return 1
    finally:
        _unwatch_sigint(previous_sigint)


def _interrupted(message: str) -> None:
    print(f"capture: interrupted (Ctrl-C): {' '.join(message.split())}", file=sys.stderr, flush=True)


def _error(message: str) -> None:
    print(f"capture: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
