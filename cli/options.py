"""The command line's options: the parser, every numeric option's range, the capture request they make (the
same `settings.capture.CaptureRequest` the panel makes), and the output paths, all checked before any work."""

import argparse
import math
import os
from pathlib import Path

from ..instanthmr_blender.models.registry import registry
from ..instanthmr_blender.models.runtime import DEVICE_PROVIDERS
from ..instanthmr_blender.output_paths import output_problem
from ..instanthmr_blender.pose.sam3d import BACKENDS
from ..settings.capture import CaptureRequest
from . import live


class UsageError(Exception):
    """Bad input the user can fix: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one `capture: error:` line (no usage block), exit status 2."""

    def error(self, message):
        raise UsageError(message)


def _at_least(minimum):
    return lambda value: value >= minimum


def _positive(value) -> bool:
    return math.isfinite(value) and value > 0


# Every numeric option: (option, attribute, test, what it must be). None (not given) is always fine.


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
    live.add_arguments(parser)
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
    models.add_argument("--device", choices=("auto", *DEVICE_PROVIDERS), default=None,
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
    camera = parser.add_argument_group("camera motion (a handheld or moving camera)")
    camera.add_argument("--camera-motion", choices=("auto", "static", "solve"), default="auto",
                        help="auto (default): measure the background's motion and solve the camera's path from "
                        "the video when it moves; static: a still camera; solve: always solve (needs pycolmap)")
    camera.add_argument("--camera-path", metavar="FILE.blend:OBJECT",
                        help="use an animated camera you already have (a Blender camera solve, another tracker's "
                        "import) as the camera's path, one scene frame per source frame (scene frame = frame + 1)")
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


def lens_fields(args) -> dict:
    """CaptureSettings' lens fields from --focal-px / --lens-mm / --sensor-width-mm (their ranges are checked with
    the other options'); UsageError for a combination that makes no sense."""
    if args.focal_px is not None and args.lens_mm is not None:
        raise UsageError("give the focal length either with --focal-px or with --lens-mm, not both")
    if args.sensor_width_mm is not None and args.lens_mm is None:
        raise UsageError("--sensor-width-mm goes with --lens-mm (the focal length in mm)")
    if args.lens_mm is not None:
        return {"lens_mm": args.lens_mm, "sensor_width_mm": args.sensor_width_mm or 36.0}
    return {} if args.focal_px is None else {"focal_px": args.focal_px}


def blend_part(spec: str) -> str:
    """`PATH.blend[:OBJECT]` -> PATH.blend (a Windows drive colon is part of the path)."""
    index = spec.lower().rfind(".blend")
    return spec[: index + len(".blend")] if index >= 0 else spec


def check_output(option: str, path: Path) -> Path:
    """The absolute path of an output file, after checking that it can be written (UsageError otherwise)."""
    problem = output_problem(path)
    if problem is not None:
        raise UsageError(f"{option} {os.path.abspath(path)}: {problem}")
    return Path(os.path.abspath(path))


def blend_output(args, name: str) -> Path:
    if args.out is None:
        return check_output("--out", Path.cwd() / f"{name}.blend")
    if Path(args.out).is_dir():
        check_output("--out", Path(args.out))  # names the folder
    if Path(args.out).suffix.lower() != ".blend":
        raise UsageError(f"--out {args.out}: the output is a Blender file: give a name ending in .blend "
                         f"(e.g. {Path(args.out).with_suffix('.blend').name})")
    return check_output("--out", Path(args.out))


def capture_request(args, clip: str) -> CaptureRequest:
    """The capture the options ask for (a clip, or a live source); what they leave out, the preferences decide."""
    sam3d = {name: str(Path(value).resolve()) if name != "python" else value
             for name, value in (("python", args.sam3d_python), ("checkpoint", args.sam3d_checkpoint),
                                 ("code", args.sam3d_code), ("backbone", args.sam3d_backbone)) if value}
    return CaptureRequest(
        source=clip, start=args.start, end=args.end, step=args.frame_skip, fps=args.fps,
        detector_backend="onnx" if args.detector == "onnx" else "torch", detector_variant=args.detector_variant,
        det_confidence=args.det_confidence, detector_stride=args.detector_stride, max_persons=args.max_persons,
        min_track_length=args.min_track_length, batch_persons=not args.no_batch_persons, lens=lens_fields(args),
        backend=args.backend, hmr_model=args.model, model_dir=args.model_dir, hmr_size=args.model_size,
        hmr_fit=args.model_fit, precision=args.precision, detector_model=args.detector_model, device=args.device,
        threads=args.threads, sam3d={**sam3d, "device": args.sam3d_device, "frame_timeout": args.sam3d_timeout},
    )
