#!/usr/bin/env python3
"""Quantise your InstantHMR to INT8 on crops of your own clip, and measure what it costs in fidelity.

    python tools/quantize_hmr.py --model instanthmr.onnx --detector-model rfdetr-nano.onnx --clip my_clip.mp4

1. Captures the clip with the fp32 model (the add-on's own pipeline) to find the people's boxes.
2. Calibrates a static INT8 quantisation (onnxruntime.quantization, QDQ, per-channel weights, MinMax ranges) on
   the person crops of the first part of the clip (--calibration, default 30% of the frames).
3. Runs both models on the held-out crops (the rest of the clip) and measures the speed-up and the deviation of
   the INT8 outputs from the fp32 ones: 3D keypoints in mm (raw camera-space and after rigid alignment, mean and
   95th percentile), 2D keypoints in pixels, and the change in jitter over the held-out frames.
4. Writes `<model>.int8.onnx` and the report `<model>.int8.json` beside the model; the add-on's preferences then
   offer the INT8 model with that report shown, and you choose.

Needs the `onnx` package besides onnxruntime (the dev venv has it; Blender's Python does not: run this with a
Python that has `pip install onnx onnxruntime opencv-python-headless numpy`). An fp16 model is quantised from its
fp32 conversion. The report holds for the clip it was measured on: quantise on footage like what you capture.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from instanthmr_blender.capture.offline import capture  # noqa: E402
from instanthmr_blender.capture.settings import CaptureError, CaptureSettings  # noqa: E402
from instanthmr_blender.models.files import sha256_of  # noqa: E402
from instanthmr_blender.models.fp16 import fp32_model_for_cpu  # noqa: E402
from instanthmr_blender.models.int8 import (  # noqa: E402
    FidelityReport,
    aligned_deviation,
    int8_model_path,
    jitter,
    point_deviation,
    report_path,
    summary_stats,
)
from instanthmr_blender.models.runtime import ModelError  # noqa: E402
from instanthmr_blender.pose.hmr import InstantHMR, cliff_condition, crop_person, normalise_crops  # noqa: E402
from instanthmr_blender.video.frames import FrameSourceError, open_source  # noqa: E402

#: Speed is the median of this many batch-1 calls per model (after one warm-up call).
SPEED_CALLS = 20


class UsageError(ValueError):
    """Bad input: the message says which and what to do (exit status 2)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="your InstantHMR .onnx (fp32 or fp16)")
    parser.add_argument("--detector-model", type=Path, required=True, help="the RF-DETR .onnx the add-on uses")
    parser.add_argument("--clip", type=Path, required=True, help="a video (or image folder) like what you capture")
    parser.add_argument("--frames", type=int, default=0, help="use at most N frames of the clip (0: all)")
    parser.add_argument("--calibration", type=float, default=0.3,
                        help="fraction of the frames (the first ones) whose crops calibrate (default: 0.3)")
    parser.add_argument("--max-persons", type=int, default=2, help="people per frame (default: 2)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: onnxruntime's choice)")
    parser.add_argument("--out", type=Path, help="the INT8 file (default: beside the model, <stem>.int8.onnx)")
    return parser.parse_args(argv)


def check_inputs(args: argparse.Namespace) -> None:
    """Everything that can be checked before the long work."""
    for flag, path in (("--model", args.model), ("--detector-model", args.detector_model)):
        if not path.is_file():
            raise UsageError(f"{flag} {path} does not exist: give the .onnx file")
    if not args.clip.exists():
        raise UsageError(f"--clip {args.clip} does not exist: give a video file or an image folder")
    if not 0.0 < args.calibration < 1.0:
        raise UsageError(f"--calibration {args.calibration} must be between 0 and 1 (a fraction of the frames)")
    if args.frames < 0 or args.max_persons < 1:
        raise UsageError("--frames must be 0 (all) or more and --max-persons 1 or more")
    if args.out is not None and args.out.suffix != ".onnx":
        raise UsageError(f"--out {args.out} must end in .onnx")
    try:
        import onnx  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
    except ImportError as error:
        raise UsageError(f"quantising needs the `onnx` package ({error}): pip install onnx into this Python "
                         f"({sys.executable})") from error


def person_crops(args: argparse.Namespace, log) -> tuple[list[tuple[int, int, np.ndarray]], dict]:
    """Capture the clip with the fp32 model; returns [(frame column, track, box)] and the frames by column."""
    settings = CaptureSettings(
        source=str(args.clip), end=args.frames or None, detector_model=str(args.detector_model),
        hmr_model=str(args.model), max_persons=args.max_persons, device="cpu", threads=args.threads,
    )
    take = capture(settings, log=log)
    if take.num_tracks == 0:
        raise UsageError(f"nobody was found in {args.clip.name}: quantise on a clip with people in it")
    crops = [(int(f), int(t), take.bbox[t, f]) for f in range(take.num_frames) for t in range(take.num_tracks)
             if take.valid[t, f]]
    wanted = {int(take.frames[f]) for f, _, _ in crops}
    frames = {}
    with open_source(settings.source) as source:
        for index, rgb in source.frames(0, settings.end):
            if index in wanted:
                frames[index] = rgb
    by_column = {f: frames[int(take.frames[f])] for f, _, _ in crops}
    return crops, by_column


def model_inputs(frame: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What InstantHMR feeds its session for one person: (1, 3, 224, 224) image, (1, 3) cliff_cond."""
    return normalise_crops(crop_person(frame, box)[None]), cliff_condition(box[None], frame.shape[:2])


def quantise(fp32_model: Path, out: Path, calibration: list[tuple[np.ndarray, np.ndarray]]) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    names = [i.name for i in ort.InferenceSession(str(fp32_model), providers=["CPUExecutionProvider"]).get_inputs()]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else dict(zip(names, item))

    quantize_static(
        str(fp32_model), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )


def evaluate(fp32: InstantHMR, int8: InstantHMR, held_out, frames) -> dict:
    """Both models on every held-out crop; deviations, jitter and speed."""
    outputs = {"fp32": [], "int8": []}
    for column, _, box in held_out:
        for name, model in (("fp32", fp32), ("int8", int8)):
            outputs[name].append(model.predict(frames[column], box[None]))
    stack = {name: {key: np.concatenate([getattr(p, key) for p in poses]) for key in ("joints_cam", "joints_3d",
                                                                                         "joints_2d")}
             for name, poses in outputs.items()}
    raw = point_deviation(stack["int8"]["joints_cam"], stack["fp32"]["joints_cam"]) * 1000.0
    aligned = aligned_deviation(stack["int8"]["joints_3d"], stack["fp32"]["joints_3d"]) * 1000.0
    pixels = point_deviation(stack["int8"]["joints_2d"], stack["fp32"]["joints_2d"])
    jitters = {}
    for name in ("fp32", "int8"):
        values = []
        for track in sorted({t for _, t, _ in held_out}):
            rows = [i for i, (_, t, _) in enumerate(held_out) if t == track]
            columns = [held_out[i][0] for i in rows]
            series = np.full((max(columns) - min(columns) + 1, 70, 3), np.nan)
            for i, column in zip(rows, columns):
                series[column - min(columns)] = stack[name]["joints_cam"][i]
            values.append(jitter(series * 1000.0))
        jitters[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    column, _, box = held_out[len(held_out) // 2]
    speed = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        model.predict(frames[column], box[None])
        times = []
        for _ in range(SPEED_CALLS):
            began = time.perf_counter()
            model.predict(frames[column], box[None])
            times.append(time.perf_counter() - began)
        speed[name] = 1000.0 * float(np.median(times))
    return {"raw": summary_stats(raw), "aligned": summary_stats(aligned), "pixels": summary_stats(pixels),
            "jitter": jitters, "speed": speed}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    try:
        check_inputs(args)
        out = args.out or int8_model_path(args.model)
        log(f"capturing {args.clip.name} with {args.model.name} to find the people ...")
        crops, frames = person_crops(args, log)
        columns = sorted({f for f, _, _ in crops})
        split = columns[0] + max(1, int(round(args.calibration * (columns[-1] - columns[0] + 1))))
        calibration = [c for c in crops if c[0] < split]
        held_out = [c for c in crops if c[0] >= split]
        if not calibration or len(held_out) < 3:
            raise UsageError(f"{args.clip.name} has too few frames with people ({len(columns)}) to calibrate on "
                             "some and measure on the rest: use a longer clip")
        source = fp32_model_for_cpu(args.model, log)
        if isinstance(source, bytes):
            raise UsageError(f"{args.model.name} is fp16 and its folder is read-only: copy it somewhere writable")
        log(f"calibrating INT8 on {len(calibration)} crops (frames before column {split}) ...")
        quantise(source, out, [model_inputs(frames[f], box) for f, _, box in calibration])
    except UsageError as error:
        print(f"quantize_hmr: error: {error}", file=sys.stderr)
        return 2
    except (FrameSourceError, ModelError, CaptureError) as error:
        print(f"quantize_hmr: error: {error}", file=sys.stderr)
        return 2

    log(f"measuring both models on {len(held_out)} held-out crops ...")
    fp32 = InstantHMR(args.model, device="cpu", max_batch=1, threads=args.threads, log=log)
    int8 = InstantHMR(out, device="cpu", max_batch=1, threads=args.threads, log=log)
    result = evaluate(fp32, int8, held_out, frames)
    report = FidelityReport(
        model=args.model.name, model_sha256=sha256_of(args.model), model_bytes=args.model.stat().st_size,
        int8_model=out.name, clip=args.clip.name,
        calibration_crops=len(calibration), held_out_crops=len(held_out), fp32_ms=result["speed"]["fp32"],
        int8_ms=result["speed"]["int8"], provider=int8.provider,
        mm_3d_mean=result["raw"][0], mm_3d_p95=result["raw"][1],
        mm_3d_aligned_mean=result["aligned"][0], mm_3d_aligned_p95=result["aligned"][1],
        px_2d_mean=result["pixels"][0], px_2d_p95=result["pixels"][1],
        jitter_fp32_mm=result["jitter"]["fp32"], jitter_int8_mm=result["jitter"]["int8"],
    )
    destination = report_path(args.model) if args.out is None else out.with_suffix(".json")
    report.save(destination)
    print(f"wrote {out} and {destination}")
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
