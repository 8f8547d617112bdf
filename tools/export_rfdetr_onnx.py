#!/usr/bin/env python3
"""Export an RF-DETR person detector to ONNX for the torch-free ONNX Runtime backend.

Needs the optional `rfdetr` package with its ONNX extra and a matching torch + torchvision (not part of the
add-on); tested with rfdetr 1.11.2, torch 2.13.0, torchvision 0.28.0:
    pip install "rfdetr[onnx]==1.11.2" torch==2.13.0 torchvision==0.28.0
    python tools/export_rfdetr_onnx.py --variant nano --out models/rfdetr-nano.onnx [--weights CKPT]
Without --weights, rfdetr downloads its COCO checkpoint on first use (internet needed once); `--weights none`
exports random weights (offline; only to test the export path). The result is checked against the contract
the add-on expects (input `input` [B,3,R,R]; outputs `dets` [B,300,4], `labels` [B,300,91]).
"""

from __future__ import annotations

import argparse
import inspect
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("nano", "small", "medium", "large")
#: `--weights none`: random weights, nothing downloaded (the same word TorchRFDETR's `weights` takes).
NO_WEIGHTS = "none"
#: RF-DETR nano..large cut the input into 16-pixel patches and 2x2 windows: R must be a multiple of this.
BLOCK_SIZE = 32
MISSING_RFDETR = (
    "export_rfdetr_onnx: the `rfdetr` package is not installed in this Python ({python}).\n"
    "  Install it with a CPU or CUDA torch:  pip install \"rfdetr[onnx]\" torch torchvision\n"
    "  or download a published RF-DETR ONNX export instead and point the add-on at it."
)
BROKEN_TORCHVISION = (
    "export_rfdetr_onnx: `rfdetr` is installed but could not be imported ({error}).\n"
    "  torch and torchvision probably come from different builds (CPU vs CUDA): install both from the same index."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, default="nano", help="RF-DETR size (default: nano)")
    parser.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    parser.add_argument(
        "--weights", help="a fine-tuned checkpoint (.pth) with a person class, or `none` for random weights "
        "(tests only); default: rfdetr's COCO weights",
    )
    parser.add_argument(
        "--resolution", type=int, help=f"square input size R (a multiple of {BLOCK_SIZE}); "
        "default: the variant's own (384 nano, 512 small, 576 medium, 704 large)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.add_argument(
        "--fixed-batch", type=int, metavar="N",
        help="bake batch size N into the graph instead of a dynamic batch axis (older rfdetr can only do this)",
    )
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".onnx":
        parser.error(f"--out {args.out} must end in .onnx")
    if args.weights is not None and args.weights != NO_WEIGHTS:
        args.weights = Path(args.weights)
        if not args.weights.is_file():
            parser.error(f"--weights {args.weights} does not exist (give a .pth file, or `{NO_WEIGHTS}`)")
    if args.resolution is not None and (args.resolution <= 0 or args.resolution % BLOCK_SIZE):
        parser.error(f"--resolution must be a positive multiple of {BLOCK_SIZE} pixels (e.g. 384)")
    if args.fixed_batch is not None and args.fixed_batch <= 0:
        parser.error("--fixed-batch must be 1 or more")
    return args


def model_kwargs(args: argparse.Namespace) -> dict:
    """Keyword arguments for the RFDETR<Variant> constructor."""
    kwargs: dict = {}
    if args.weights == NO_WEIGHTS:
        kwargs["pretrain_weights"] = None
    elif args.weights is not None:
        # absolute: rfdetr reads a bare file name as a name in its own download cache
        kwargs["pretrain_weights"] = str(args.weights.resolve())
    if args.resolution is not None:
        kwargs["resolution"] = args.resolution
    return kwargs


def export_kwargs(export_method, args: argparse.Namespace, output_dir: str) -> dict:
    """Keyword arguments for `model.export()`, limited to those this rfdetr version accepts."""
    wanted = {"output_dir": output_dir, "format": "onnx", "opset_version": args.opset, "verbose": False}
    if args.resolution is not None:
        wanted["shape"] = (args.resolution, args.resolution)
    if args.fixed_batch is not None:
        wanted["batch_size"] = args.fixed_batch
    else:
        wanted["dynamic_batch"] = True
    accepted = inspect.signature(export_method).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return wanted
    return {key: value for key, value in wanted.items() if key in accepted}


def find_exported(returned, folder: Path) -> Path:
    """The detection model rfdetr wrote into `folder`.

    rfdetr 1.11 returns its path (`<folder>/rfdetr-<variant>.onnx`); older versions return None and wrote
    `inference_model.onnx` next to a backbone-only file.
    """
    if returned is not None and Path(returned).suffix == ".onnx" and Path(returned).is_file():
        return Path(returned)
    candidates = sorted(p for p in folder.rglob("*.onnx") if "backbone" not in p.name)
    if not candidates:
        raise FileNotFoundError(f"rfdetr's export wrote no .onnx file into {folder}")
    preferred = [p for p in candidates if p.name == "inference_model.onnx"]
    return (preferred or candidates)[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import rfdetr  # the optional PyTorch package: only this tool and TorchRFDETR use it
    except ImportError:
        print(MISSING_RFDETR.format(python=sys.executable), file=sys.stderr)
        return 2
    except RuntimeError as error:  # "operator torchvision::nms does not exist"
        print(BROKEN_TORCHVISION.format(error=error), file=sys.stderr)
        return 2

    model_class = getattr(rfdetr, "RFDETR" + args.variant.capitalize())
    try:
        model = model_class(**model_kwargs(args))
    except Exception as error:  # download, torch.load and config errors: name what failed, no traceback
        source = "the COCO weights (downloaded on first use)" if args.weights is None else args.weights
        print(f"export_rfdetr_onnx: RF-DETR {args.variant} from {source} could not be created: "
              f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    class_names = list(model.class_names)
    if "person" not in class_names:
        print(f"export_rfdetr_onnx: {args.weights} has no \"person\" class ({', '.join(class_names[:10])}): "
              "the add-on detects people only", file=sys.stderr)
        return 1

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rfdetr-export-") as folder:
        try:
            returned = model.export(**export_kwargs(model.export, args, folder))
            exported = find_exported(returned, Path(folder))
        except Exception as error:  # torch.onnx tracing errors are long: keep the type and first line
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "no details"
            print(f"export_rfdetr_onnx: the ONNX export failed: {type(error).__name__}: {first_line}",
                  file=sys.stderr)
            return 1
        shutil.move(str(exported), args.out)

    sys.path.insert(0, str(REPO_ROOT))
    from instanthmr_blender.models.runtime import ModelError
    from instanthmr_blender.pose.detector import OnnxRFDETR

    try:
        detector = OnnxRFDETR(args.out, device="cpu", log=lambda line: None)
    except ModelError as error:
        print(f"export_rfdetr_onnx: {args.out} was written but does not fit the add-on: {error}", file=sys.stderr)
        return 1
    batch = detector.fixed_batch or "dynamic"
    weights = "random weights" if args.weights == NO_WEIGHTS else args.weights or "COCO weights"
    print(f"wrote {args.out}: RF-DETR {args.variant} ({weights}), input {detector.resolution}x{detector.resolution}, "
          f"batch {batch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
