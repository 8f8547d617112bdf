"""The synchronous command-line capture behind capture.py: parse options, check inputs and models, capture (or
load a take), solve, build the scene, save the .blend and export.

Runs inside Blender (capture.py enables the add-on first), prints text progress, and returns an exit status
instead of raising: 0 success, 1 a capture or processing failure, 2 bad input or missing model files.
"""

import argparse
import sys
import time
from pathlib import Path

import bpy

from . import headless_live
from .instanthmr_blender.frames import FrameSourceError
from .instanthmr_blender.mesh import MeshError
from .instanthmr_blender.model_files import KNOWN_MODELS, ModelDownloadError
from .instanthmr_blender.pipeline import CaptureError, CaptureSettings, Progress, capture
from .instanthmr_blender.runtime import ModelError
from .instanthmr_blender.solve import SolveError, SolveOptions
from .instanthmr_blender.take import TakeError, load_take, save_take
from .retarget.bake import RetargetError
from .scene import naming, workflow
from .scene.build import take_name_from_path
from .scene.export import ExportError, export_capture, export_format
from .ui.preferences import detector_model_path, get_preferences, model_path

DEVICES = ("auto", "cpu", "cuda", "coreml", "directml")
# Errors whose message tells the user what to fix in the input: exit status 2.
INPUT_ERRORS = (FrameSourceError, ModelError, TakeError, ModelDownloadError, ExportError, MeshError, RetargetError,
                *headless_live.INPUT_ERRORS)


class UsageError(Exception):
    """Bad input the user can fix: printed as one line, exit status 2."""


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise argparse.ArgumentTypeError("use on or off")
    return value == "on"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capture.py",
        description="Markerless motion capture from a video into a .blend (InstantHMR for Blender): one animated "
        "capture rig per person, a camera matched to the video, optional exports.",
        epilog="Inside Blender: blender -b -P capture.py -- clip.mp4 [options]. Exit status: 0 done, 1 the capture "
        "failed, 2 bad input or missing model files.",
    )
    parser.add_argument("clip", nargs="?", help="video file, image-sequence folder or printf pattern (frame_%%04d.png)")
    source = parser.add_argument_group("input")
    source.add_argument("--image", metavar="PATH", help="capture a single image instead of a clip")
    source.add_argument("--take", metavar="IN.npz", help="solve a saved take instead of running the models")
    source.add_argument("--start", type=int, default=0, help="first source frame (default 0)")
    source.add_argument("--end", type=int, default=None, help="source frame to stop before (default: the end)")
    source.add_argument("--frame-skip", type=int, default=1, metavar="N",
                        help="process every Nth frame (default 1: every frame)")
    source.add_argument("--fps", type=float, default=30.0, help="frame rate of image sequences (default 30)")
    headless_live.add_arguments(parser)
    models = parser.add_argument_group("models")
    models.add_argument("--model", metavar="PATH", help="InstantHMR ONNX file (default: from the model folder)")
    models.add_argument("--model-dir", metavar="DIR", help="folder holding the model files")
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
    solve = parser.add_argument_group("solve")
    solve.add_argument("--smoothing", choices=("off", "light", "medium", "strong"), default="medium")
    solve.add_argument("--smoothing-method", choices=("zero_lag", "one_euro"), default="zero_lag")
    solve.add_argument("--foot-lock", type=_on_off, default=True, metavar="on|off", help="lock planted feet (on)")
    solve.add_argument("--symmetric-lengths", type=_on_off, default=True, metavar="on|off",
                       help="same length for left and right limbs (on)")
    solve.add_argument("--floor", choices=("auto", "none"), default="auto",
                       help="fit the floor to the feet (auto) or take gravity from the camera (none)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", metavar="OUT.blend", help="the .blend to write (default: ./<clip name>.blend)")
    output.add_argument("--save-take", metavar="OUT.npz", help="also save the take (re-solve later with --take)")
    output.add_argument("--export", action="append", default=[], metavar="OUT.bvh|.fbx|.glb",
                        help="export the rigs (repeatable); BVH writes one file per person")
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


def _model_paths(args, prefs) -> tuple[Path, Path | None]:
    folder = Path(args.model_dir) if args.model_dir else None
    if args.model:
        hmr = Path(args.model)
    elif folder is not None:
        hmr = folder / KNOWN_MODELS["instanthmr"].filename
    else:
        hmr = model_path(prefs, "instanthmr")
    if args.detector != "onnx":
        return hmr, None
    if args.detector_model:
        detector = Path(args.detector_model)
    elif folder is not None:
        spec = KNOWN_MODELS.get(f"rfdetr-{args.detector_variant}", KNOWN_MODELS["rfdetr-nano"])
        detector = folder / spec.filename
    else:
        detector = detector_model_path(prefs, args.detector_variant)
    return hmr, detector


def _capture_settings(args, clip: str, prefs) -> CaptureSettings:
    """The models and detection settings from the options (model files checked), for a clip or a live source."""
    hmr, detector = _model_paths(args, prefs)
    missing = [(name, path) for name, path in (("instanthmr", hmr), ("detector", detector))
               if path is not None and not path.is_file()]
    if missing:
        listed = "; ".join(f"{name} expected at {path}" for name, path in missing)
        raise UsageError(f"model files missing: {listed}. Put them there (or pass --model-dir, --model, "
                         "--detector-model); see the README's 'Model files' section")
    settings = CaptureSettings(
        source=clip, start=args.start, end=args.end, step=args.frame_skip, fps=args.fps,
        detector_backend="onnx" if args.detector == "onnx" else "torch",
        detector_model=str(detector or ""), detector_variant=args.detector_variant,
        det_confidence=args.det_confidence, detector_stride=args.detector_stride,
        hmr_model=str(hmr), max_persons=args.max_persons, min_track_length=args.min_track_length,
        batch_persons=not args.no_batch_persons,
        device=args.device or prefs.default_device or "auto",
        threads=prefs.threads if args.threads is None else args.threads,
    )
    return settings


def _capture(args, clip: str, prefs):
    settings = _capture_settings(args, clip, prefs)
    started = time.monotonic()
    take = capture(settings, progress=_ProgressPrinter(), log=lambda line: _print(f"capture: {line}"))
    _print(f"capture: {_people(take.num_tracks)} tracked over {take.num_frames} frames "
           f"in {time.monotonic() - started:.1f} s")
    return take


def _mesh_options(args, prefs) -> dict:
    """The body-mesh module and Python, checked before any capture work (a 1-row call of the module)."""
    from .instanthmr_blender.mesh import open_runner
    from .ui.preferences import model_folder

    folder = Path(args.model_dir) if args.model_dir else model_folder(prefs, create=True)
    options = workflow.mesh_options(prefs, folder, module_path=args.mhr_model, python=args.mesh_python,
                                    allow_download=bool(bpy.app.online_access))
    with open_runner(options["module_path"], options["python"]):
        pass
    return options


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


def run(args) -> int:
    clip = args.image or args.clip
    live = headless_live.check_arguments(args, UsageError)
    if args.image and args.clip:
        raise UsageError("give either a clip or --image, not both")
    if not clip and not args.take and not live:
        raise UsageError("nothing to capture: give a clip, --image PATH, --take IN.npz, --camera N or --stream URL")
    for path in args.export:
        export_format(path)  # fail now, not after a long capture
    if args.retarget_to:
        target_file = _blend_part(args.retarget_to)
        if not Path(target_file).is_file():
            raise UsageError(f"--retarget-to {args.retarget_to}: {target_file} is not a file")
    prefs = get_preferences()
    mesh = _mesh_options(args, prefs) if args.mesh else None
    if args.take:
        take = load_take(args.take)
        _print(f"capture: loaded take {args.take} ({_people(take.num_tracks)}, {take.num_frames} frames)")
        clip = clip or take.source
    elif live:
        take = headless_live.record(args, _capture_settings(args, "", prefs), _print)
    else:
        if not Path(clip).exists() and "%" not in Path(clip).name:
            raise UsageError(f"{clip}: no such file or folder")
        take = _capture(args, clip, prefs)
    written = []
    if args.save_take:
        Path(args.save_take).parent.mkdir(parents=True, exist_ok=True)
        written.append(save_take(take, args.save_take))
    options = SolveOptions(smoothing=args.smoothing, smoothing_method=args.smoothing_method,
                           foot_lock=args.foot_lock, symmetric_lengths=args.symmetric_lengths, floor=args.floor)
    _clear_default_scene()
    background = None if args.no_background or not clip or not Path(clip).exists() else str(Path(clip).resolve())
    name = headless_live.take_name(args) if live else take_name_from_path(clip or args.take)
    out = Path(args.out) if args.out else Path.cwd() / f"{name}.blend"
    out.parent.mkdir(parents=True, exist_ok=True)
    if mesh is not None:
        # The .blend is saved last: put the point caches where a saved file's caches go, beside it.
        mesh["cache_dir"] = str(out.resolve().parent / f"{out.stem}_instanthmr_cache")
    built = workflow.build_from_take(bpy.context, take, name, options, background=background, mesh=mesh,
                                     take_file=args.take or args.save_take)
    if built.mesh_error:
        raise MeshError(built.mesh_error)
    if args.retarget_to:
        _retarget(args, built.rigs)
    for path in args.export:
        written.extend(export_capture(bpy.context, built.rigs, path, per_person=args.export_per_person))
    bpy.ops.wm.save_as_mainfile(filepath=str(out.resolve()), check_existing=False)
    written.insert(0, out)
    _print(f"capture: built a capture rig for {_people(len(built.rigs))}"
           + (f" and {len(built.meshes)} body meshes" if built.meshes else ""))
    for path in written:
        _print(f"wrote {path}")
    return 0


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or an argparse error (already printed)
        return int(exc.code or 0)
    try:
        return run(args)
    except (UsageError, *INPUT_ERRORS) as exc:
        print(f"capture: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except (CaptureError, SolveError, ValueError, OSError) as exc:
        print(f"capture: error: {exc}", file=sys.stderr, flush=True)
        return 1
