"""The synchronous command-line capture behind capture.py: parse options, check inputs and models, run.

Runs inside Blender (the add-on is enabled by capture.py), prints text progress, and returns an exit status
instead of raising: 0 success, 1 capture failure, 2 bad input or missing model files.
"""

import argparse
import sys
from pathlib import Path

from .ui.preferences import MODEL_PATH_PROPERTIES, get_preferences, model_folder, model_path


class UsageError(Exception):
    """Bad input the user can fix: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capture.py",
        description="Markerless motion capture from a video into a .blend (InstantHMR for Blender).",
        epilog="Inside Blender: blender -b -P capture.py -- clip.mp4 [options]",
    )
    parser.add_argument("clip", help="video file, image-sequence folder or printf pattern, or an image")
    parser.add_argument("--out", metavar="OUT.blend", help="where to save the .blend (default: beside the clip)")
    parser.add_argument("--model", metavar="PATH", help="InstantHMR ONNX file (default: from the model folder)")
    parser.add_argument("--detector-model", metavar="PATH", help="RF-DETR ONNX file (default: from the model folder)")
    parser.add_argument("--model-dir", metavar="DIR", help="folder holding the model files")
    return parser


def _required_models(args, prefs) -> dict[str, Path]:
    overrides = {"instanthmr": args.model, "rfdetr-nano": args.detector_model}
    folder = Path(args.model_dir) if args.model_dir else None
    paths = {}
    for name in MODEL_PATH_PROPERTIES:
        if overrides.get(name):
            paths[name] = Path(overrides[name])
        elif folder is not None:
            from .instanthmr_blender.model_files import KNOWN_MODELS

            paths[name] = folder / KNOWN_MODELS[name].filename
        else:
            paths[name] = model_path(prefs, name)
    return paths


def run(args) -> int:
    clip = Path(args.clip)
    if not clip.exists() and "%" not in clip.name:
        raise UsageError(f"{clip}: no such file or folder")
    prefs = get_preferences()
    missing = {name: path for name, path in _required_models(args, prefs).items() if not path.is_file()}
    if missing:
        listed = "; ".join(f"{name} expected at {path}" for name, path in missing.items())
        raise UsageError(
            f"model files missing: {listed}. Put them in {model_folder(prefs)} (or pass --model-dir, --model, "
            "--detector-model); see the README's 'Model files' section"
        )
    # The capture engine is not part of the extension yet: say so rather than pretend.
    print("capture: error: the capture engine is not available in this version of the extension", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or an argparse error (already printed)
        return int(exc.code or 0)
    try:
        return run(args)
    except UsageError as exc:
        print(f"capture: error: {exc}", file=sys.stderr)
        return 2
