#!/usr/bin/env python3
"""Compare two pose backends, or two precisions of one, on the same crops of your own footage: keypoint
deviation (3D raw and after rigid alignment, mm; 2D, px) and milliseconds per crop.

The boxes come from a saved take (`--take`, its own clip unless one is given) or from the RF-DETR detector
(`--detector-model`), once, and both backends get exactly those frames and boxes. A backend is
    instanthmr:PATH.onnx          InstantHMR (ONNX Runtime, --device)
    sam3d                         SAM 3D Body with the checkpoint's FP32 backbone
    sam3d:BACKBONE                SAM 3D Body with the Embedl INT8 backbone (.pt2, .onnx or TensorRT .engine)
SAM 3D Body runs in its own Python (`--sam3d-python`, `--sam3d-checkpoint`, `--sam3d-code`); both backends use
the same camera (`--focal-px`, else sqrt(W^2 + H^2)). Example, INT8 against FP32 on 100 frames:
    .venv/bin/python tools/compare_backends.py clip.mp4 --detector-model rfdetr-nano.onnx --end 100 \\
        --a sam3d --b sam3d:embedl_sam3dbody_int8.pt2 --sam3d-python ~/sam3d/bin/python \\
        --sam3d-checkpoint ~/checkpoints/sam-3d-body-dinov3
Prints the figures (and writes them as JSON with `--json`); B is measured against A.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# The repository root is the Blender extension's package (its __init__ imports bpy): put the root on the path
# so `instanthmr_blender` (the bpy-free engine) imports as a top-level package.
sys.path.insert(0, str(REPO_ROOT))

from instanthmr_blender.models.fidelity import Deviations  # noqa: E402
from instanthmr_blender.models.runtime import ModelError  # noqa: E402
from instanthmr_blender.pose.sam3d import Sam3DBody, Sam3DError, Sam3DSettings, Sam3DWorkerError  # noqa: E402
from instanthmr_blender.take import TakeError, load_take  # noqa: E402
from instanthmr_blender.video.frames import FrameSourceError, open_source  # noqa: E402


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", nargs="?", help="video, image folder or image (default: the take's source)")
    parser.add_argument("--take", help="use the boxes of this saved take (same frames, same people)")
    parser.add_argument("--detector-model", help="RF-DETR ONNX file, when no take gives the boxes")
    parser.add_argument("--a", required=True, help="backend A (the reference): instanthmr:PATH, sam3d, sam3d:BACKBONE")
    parser.add_argument("--b", required=True, help="backend B, measured against A")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--end", type=int, default=None)
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--max-persons", type=int, default=4, help="people per frame from the detector (4)")
    parser.add_argument("--det-confidence", type=float, default=0.5)
    parser.add_argument("--device", default="auto", help="ONNX Runtime device for InstantHMR and the detector")
    parser.add_argument("--focal-px", type=float, default=None, help="focal length in pixels for both backends")
    parser.add_argument("--sam3d-python", default="")
    parser.add_argument("--sam3d-checkpoint", default="")
    parser.add_argument("--sam3d-code", default="")
    parser.add_argument("--sam3d-device", default="auto")
    parser.add_argument("--sam3d-engine-cache", default="")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def frames_and_boxes(args) -> tuple[str, list[tuple[int, np.ndarray]]]:
    """The clip and, per frame, the (N, 4) xyxy boxes both backends get."""
    if args.take:
        take = load_take(args.take)
        clip = args.clip or take.source
        boxes = [(int(frame), take.bbox[take.valid[:, column], column]) for column, frame in enumerate(take.frames)]
        return clip, [(f, b) for f, b in boxes if args.start <= f < (args.end or 1 << 62)]
    if not args.clip or not args.detector_model:
        raise SystemExit("compare_backends: give a clip and --detector-model, or --take")
    from instanthmr_blender.pose.detector import OnnxRFDETR

    detector = OnnxRFDETR(args.detector_model, confidence=args.det_confidence, device=args.device)
    found = []
    with open_source(args.clip) as source:
        for index, rgb in source.frames(args.start, args.end, args.step):
            (detections,) = detector.detect([rgb])
            found.append((index, detections.boxes[: args.max_persons]))
    return args.clip, found


def open_backend(spec: str, args):
    kind, _, value = spec.partition(":")
    if kind == "instanthmr":
        from instanthmr_blender.pose.hmr import InstantHMR

        if args.focal_px is not None:
            raise SystemExit("compare_backends: InstantHMR has its own camera; --focal-px is for SAM 3D Body only")
        return InstantHMR(value, device=args.device, max_batch=args.max_persons + 1)
    if kind == "sam3d":
        settings = Sam3DSettings(python=args.sam3d_python, checkpoint=args.sam3d_checkpoint, code=args.sam3d_code,
                                 backbone=value, device=args.sam3d_device, engine_cache=args.sam3d_engine_cache)
        return Sam3DBody(settings, focal_px=args.focal_px, log=lambda line: print(f"compare_backends: {line}"))
    raise SystemExit(f"compare_backends: unknown backend {spec!r} (instanthmr:PATH, sam3d or sam3d:BACKBONE)")


def describe(model) -> str:
    if isinstance(model, Sam3DBody):
        info = model.model_info
        return f"SAM 3D Body, {info['backbone']}, {info['precision']} on {info['device']}"
    return f"InstantHMR {Path(model.model_path).name} ({model.provider})"


def run_backend(spec: str, args, clip: str, work: list[tuple[int, np.ndarray]]) -> dict:
    """Every frame's poses from one backend, and its timing (wall ms per crop; SAM 3D Body's stages too)."""
    model = open_backend(spec, args)
    try:
        wanted = {index: boxes for index, boxes in work}
        poses, seconds, crops = {}, 0.0, 0
        with open_source(clip) as source:
            for index, rgb in source.frames(args.start, args.end, 1 if args.take else args.step):
                if index not in wanted or len(wanted[index]) == 0:
                    continue
                began = time.perf_counter()
                result = model.predict(rgb, wanted[index])
                # the first frame pays for warm-up (CUDA context, TensorRT tactics): timed only when alone
                if index > min(wanted) or len(wanted) == 1:
                    seconds += time.perf_counter() - began
                    crops += len(result)
                poses[index] = (result.joints_cam, result.joints_2d)
        stages = model.times.per_crop() if isinstance(model, Sam3DBody) else {}
        return {"name": describe(model), "poses": poses, "ms_per_crop": 1000.0 * seconds / crops if crops else None,
                "timed_crops": crops, "stages_ms": stages}
    finally:
        if isinstance(model, Sam3DBody):
            model.close()


def main(argv: list[str]) -> int:
    args = parse_arguments(argv)
    try:
        clip, work = frames_and_boxes(args)
        results = {name: run_backend(getattr(args, name), args, clip, work) for name in ("a", "b")}
    except (FrameSourceError, ModelError, TakeError, Sam3DError, Sam3DWorkerError) as error:
        print(f"compare_backends: error: {error}", file=sys.stderr)
        return 2
    deviations = Deviations()
    for index in sorted(set(results["a"]["poses"]) & set(results["b"]["poses"])):
        (cam_a, px_a), (cam_b, px_b) = results["a"]["poses"][index], results["b"]["poses"][index]
        deviations.add(cam_b, cam_a, px_b, px_a)
    summary = deviations.summary()
    print(f"compare_backends: {len(work)} frames, {deviations.crops} crops, the same boxes for both")
    for name in ("a", "b"):
        result = results[name]
        speed = "n/a" if result["ms_per_crop"] is None else f"{result['ms_per_crop']:.1f} ms/crop"
        stages = ", ".join(f"{k.replace('_', ' ')} {v:.1f} ms" for k, v in result["stages_ms"].items())
        print(f"  {name.upper()}: {result['name']}: {speed} over {result['timed_crops']} crops"
              + (f" (worker: {stages})" if stages else ""))
    labels = {"raw_mm": ("3D keypoints, camera space", "mm"), "aligned_mm": ("3D keypoints, rigidly aligned", "mm"),
              "pixels": ("2D keypoints", "px")}
    for key, (label, unit) in labels.items():
        values = summary[key]
        print(f"  B - A {label}: mean {values['mean']:.2f} {unit}, p95 {values['p95']:.2f} {unit}, "
              f"max {values['max']:.2f} {unit}")
    if args.json:
        report = {"frames": len(work), "crops": deviations.crops, "deviation": summary,
                  **{name: {k: v for k, v in results[name].items() if k != "poses"} for name in ("a", "b")}}
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
