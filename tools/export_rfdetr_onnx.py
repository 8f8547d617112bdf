#!/usr/bin/env python3
"""Export an RF-DETR person detector to ONNX for the torch-free ONNX Runtime backend.

Needs the optional `rfdetr` package with its ONNX extra and a torch build (not part of the add-on):
    pip install "rfdetr[onnx]" torch torchvision
    python tools/export_rfdetr_onnx.py --variant nano --out models/rfdetr-nano.onnx [--weights CKPT]
Without --weights, rfdetr downloads its COCO checkpoint on first use (internet needed once). The result is
checked against the contract the add-on expects (input `input` [B,3,R,R]; outputs `dets`, `labels`).
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
MISSING_RFDETR = (
    "export_rfdetr_onnx: the `rfdetr` package is not installed in this Python ({python}).\n"
    "  Install it with a CPU or CUDA torch:  pip install \"rfdetr[onnx]\" torch torchvision\n"
    "  or download a published RF-DETR ONNX export instead and point the add-on at it."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, default="nano", help="RF-DETR size (default: nano)")
    parser.add_argument("--out", required=True, type=Path, help="the .onnx file to write")
    parser.add_argument("--weights", type=Path, help="a fine-tuned checkpoint (.pth); default: COCO weights")
    parser.add_argument(
        "--resolution", type=int, help="square input size R (a multiple of the variant's block size); "
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
    if args.weights is not None and not args.weights.is_file():
        parser.error(f"--weights {args.weights} does not exist")
    if args.resolution is not None and args.resolution <= 0:
        parser.error("--resolution must be a positive number of pixels")
    if args.fixed_batch is not None and args.fixed_batch <= 0:
        parser.error("--fixed-batch must be 1 or more")
    return args


def export_kwargs(export_method, args: argparse.Namespace, output_dir: str) -> dict:
    """Keyword arguments for `model.export()`, limited to those this rfdetr version accepts."""
    wanted = {"output_dir": output_dir, "opset_version": args.opset, "verbose": False}
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


def find_exported(folder: Path) -> Path:
    """The detection model rfdetr wrote into `folder` (file names vary between rfdetr versions)."""
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

    model_class = getattr(rfdetr, "RFDETR" + args.variant.capitalize())
    kwargs = {"pretrain_weights": str(args.weights)} if args.weights is not None else {}
    if args.resolution is not None:
        kwargs["resolution"] = args.resolution
    model = model_class(**kwargs)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rfdetr-export-") as folder:
        model.export(**export_kwargs(model.export, args, folder))
        exported = find_exported(Path(folder))
        shutil.move(str(exported), args.out)

    sys.path.insert(0, str(REPO_ROOT))
    from instanthmr_blender.detector import OnnxRFDETR
    from instanthmr_blender.runtime import ModelError

    try:
        detector = OnnxRFDETR(args.out, device="cpu", log=lambda line: None)
    except ModelError as error:
        print(f"export_rfdetr_onnx: {args.out} was written but does not fit the add-on: {error}", file=sys.stderr)
        return 1
    batch = detector.fixed_batch or "dynamic"
    print(f"wrote {args.out}: RF-DETR {args.variant}, input {detector.resolution}x{detector.resolution}, batch {batch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
