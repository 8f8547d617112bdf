#!/usr/bin/env python3
"""Benchmark the capture pipeline (decode -> person detector -> InstantHMR -> tracking) on the fixture videos.

Prints Markdown tables for the README. By default both networks are the contract-shaped stand-ins of
`testkit/contract_models.py` (constant outputs, almost no compute), so the figures measure video decoding,
pre-processing, tracking and threading overhead, NOT the real networks. Give real model files with
    .venv/bin/python tools/bench_pipeline.py --model instanthmr.onnx --detector-model rfdetr-nano.onnx
or the real-cost random-weight models of `tools/build_bench_models.py` (their detector finds nobody, so
`--scripted-people` keeps its full cost but reports the clip's people at fixed places):
    .venv/bin/python tools/bench_pipeline.py --clip one_person_lab two_people_walking --scripted-people \
        --model bench-models/instanthmr-nano-random.onnx --detector-model bench-models/rfdetr-nano-random.onnx

In the same run it measures each model alone (whole `detect` / `predict` calls, pre-processing included, ms per
call per batch size) and prints, per clip and stride, the pipeline's fps against the bound: the fps if only the
needed work ran, one call after another. That bound is measured two ways: replayed (each pipeline run's own
model calls made again one after another right after it, on the same frames with the same boxes, only the calls
timed: run and replay share the machine's state, the figure to trust on a shared machine) and from the per-call
medians (the detector once per detector frame at batch 1, InstantHMR once per frame with the people present, at
the cheaper of one batched call or one call per person).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# The repository root is the Blender extension's package (its __init__ imports bpy): put the root on the path
# so `instanthmr_blender` (the bpy-free engine) and `testkit.contract_models` import as top-level packages; and
# tools/ for the modules this benchmark is made of: build_bench_models.py (the models it runs with),
# bench_alone.py (work timed alone: the bound, the replay, micro-benchmarks), bench_report.py (the Markdown).
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_alone import (  # noqa: E402
    AloneTimes,
    CountingModels,
    WorkLog,
    bound_seconds,
    fingerprint,
    fp16_rows,
    micro_rows,
    replay_seconds,
    time_alone,
)
from bench_common import BenchError, describe_load  # noqa: E402
from bench_report import Measurements, RunResult, print_report  # noqa: E402
from build_bench_models import (  # noqa: E402
    STAND_IN_PEOPLE,
    LoadedModels,
    ModelChoice,
    ModelFiles,
    ScriptedPeopleDetector,
)

from instanthmr_blender.capture.loading import build_models  # noqa: E402
from instanthmr_blender.capture.offline import run_capture  # noqa: E402
from instanthmr_blender.capture.settings import CaptureError, CaptureSettings, Progress  # noqa: E402
from instanthmr_blender.models.runtime import ModelError  # noqa: E402
from instanthmr_blender.pose.detector import OnnxRFDETR  # noqa: E402
from instanthmr_blender.pose.hmr import InstantHMR  # noqa: E402
from instanthmr_blender.video.frames import FrameSourceError, open_source  # noqa: E402

__all__ = [  # the names the tests use (tests/engine/test_bench_models.py), wherever they are defined
    "AloneTimes", "CountingModels", "LoadedModels", "WorkLog", "bound_seconds", "fingerprint", "replay_seconds",
]  # fmt: skip

DEFAULT_FIXTURES = Path(os.environ.get("INSTANTHMR_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))
CLIPS = ("two_people_walking.mp4", "one_person_lab.mp4", "pedestrians.avi")
#: People in each fixture clip, for --scripted-people.
CLIP_PEOPLE = {"one_person_lab.mp4": 1, "two_people_walking.mp4": 2, "pedestrians.avi": 3}


# ---------------------------------------------------------------------------------------------------------
# The command line.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Without --model/--detector-model the figures are pipeline overhead with stand-in networks.",
    )
    add_input_arguments(parser)
    add_model_arguments(parser)
    add_measurement_arguments(parser)
    args = parser.parse_args(argv)
    if any(s < 1 for s in args.stride) or args.step < 1:
        parser.error("--stride and --step must be 1 or more")
    if args.frames < 0:
        parser.error("--frames must be 0 (all) or more")
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if args.detector_batch < 0:
        parser.error("--detector-batch must be 0 (automatic) or more")
    return args


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """What is captured: the clips, how much of them, the detector strides."""
    parser.add_argument(
        "--clip",
        nargs="+",
        default=list(CLIPS),
        metavar="CLIP",
        help=f"fixture clip names ({', '.join(CLIPS)}; the extension may be left out) or video paths "
        "(default: all three fixtures)",
    )
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES, help="the shared fixtures folder")
    parser.add_argument(
        "--frames",
        type=int,
        default=300,
        metavar="N",
        help="process at most N frames of each clip, 0 = all (default: 300, which keeps a default run "
        "under 2 minutes on 2 cores: all of the two mp4 fixtures, 300 of pedestrians.avi's 795)",
    )
    parser.add_argument(
        "--stride",
        type=int,
        nargs="+",
        default=[1, 3],
        metavar="S",
        help="detector strides to measure: the detector runs on every S-th processed frame, boxes follow the "
        "keypoints in between (default: 1 3)",
    )
    parser.add_argument("--step", type=int, default=1, help="process every STEP-th source frame (default: 1)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The models and how they run: real files or stand-ins, device, threads, batches."""
    parser.add_argument(
        "--detector-resolution",
        type=int,
        metavar="R",
        help="detector input R x R; stand-in: the size it is built with (default: 384, RF-DETR nano); "
        "real model: default its own",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | coreml | directml (default: auto)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads per model, 0 = onnxruntime's choice")
    parser.add_argument("--max-persons", type=int, default=2, help="people tracked per clip (default: 2)")
    parser.add_argument(
        "--detector-batch",
        type=int,
        default=0,
        help="frames per detector run (default: 0, the pipeline's choice: 1 on the CPU, 2 on a GPU)",
    )
    parser.add_argument("--model", type=Path, help="a real InstantHMR .onnx file instead of the stand-in")
    parser.add_argument("--detector-model", type=Path, help="a real RF-DETR .onnx file instead of the stand-in")
    parser.add_argument(
        "--stand-in-people",
        type=int,
        default=2,
        choices=range(1, len(STAND_IN_PEOPLE) + 1),
        help="people the stand-in detector reports in every frame (default: 2)",
    )


def add_measurement_arguments(parser: argparse.ArgumentParser) -> None:
    """How the runs are measured: repeats, micro-benchmarks, scripted people, serialising, an fp16 file."""
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs per clip and stride; the fastest is reported, to shed other processes' noise (default: 2)",
    )
    parser.add_argument("--no-micro", action="store_true", help="skip the pre-processing micro-benchmarks")
    parser.add_argument(
        "--scripted-people",
        action="store_true",
        help="the detector network runs in full on every detector frame, but its boxes are replaced by the "
        "clip's people at fixed places (1 in one_person_lab, 2 in two_people_walking, 3 in pedestrians): for "
        "random-weight detectors, which find nobody",
    )
    parser.add_argument(
        "--serialise",
        choices=("auto", "on", "off"),
        default="auto",
        help="one model call at a time (on), both at once (off), or the pipeline's own choice (auto: one at a "
        "time when both run on the CPU)",
    )
    parser.add_argument(
        "--fp16-model",
        type=Path,
        help="an fp16 InstantHMR file: time it alone as it is and as the fp32 conversion the CPU runs",
    )


def resolve_clip(name: str, fixtures: Path) -> Path:
    """A fixture clip name (with or without extension) or a path -> an existing video path."""
    as_path = Path(name)
    if as_path.is_file():
        return as_path
    video_dir = fixtures / "video"
    for clip in CLIPS:
        if name in (clip, Path(clip).stem):
            path = video_dir / clip
            if not path.is_file():
                raise BenchError(f"fixture `{path}` is missing: pass --fixtures with the shared fixtures folder")
            return path
    raise BenchError(f"`{name}` is neither a video file nor one of the fixture clips ({', '.join(CLIPS)})")


# ---------------------------------------------------------------------------------------------------------
# Pipeline runs.


def warm_up(detector: OnnxRFDETR, hmr: InstantHMR, frame: np.ndarray, batch: int, persons: int) -> None:
    """One run of each model at the shapes the capture uses, so first-run set-up is not timed."""
    detector.detect([frame] * max(batch, 1))
    height, width = frame.shape[:2]
    boxes = np.array([[0.4 * width, 0.3 * height, 0.6 * width, 0.8 * height]] * persons, np.float32)
    for count in range(1, persons + 1):
        hmr.predict(frame, boxes[:count])


@dataclass
class Clip:
    """A video to capture. frame: its first frame, RGB uint8 (H, W, 3); frame_count: frames in the file."""

    path: Path
    frame: np.ndarray
    frame_count: int


def open_clip(path: Path) -> Clip:
    with open_source(path) as source:
        for _, rgb in source.frames(0, 1):
            return Clip(path, rgb, source.info.frame_count)
    raise BenchError(f"`{path}` has no readable frame: is it a video file?")


def capture_settings(clip: Clip, stride: int, models: ModelChoice, args: argparse.Namespace) -> CaptureSettings:
    return CaptureSettings(
        source=str(clip.path),
        # --frames limits the processed frames; a clip shorter than that is captured whole
        end=min(args.frames * args.step, clip.frame_count) if args.frames else None,
        step=args.step,
        detector_model=str(models.detector_path),
        detector_resolution=models.detector_resolution,
        detector_stride=stride,
        detector_batch=args.detector_batch,
        hmr_model=str(models.hmr_path),
        max_persons=args.max_persons,
        device=args.device,
        threads=args.threads,
        serialise_models={"auto": None, "on": True, "off": False}[args.serialise],
    )


def load_models(clip: Clip, models: ModelChoice, args: argparse.Namespace) -> LoadedModels:
    """Load (through the pipeline's own build_models) and warm up the models one clip runs with."""
    began = time.perf_counter()
    detector, hmr = build_models(
        capture_settings(clip, 1, models, args),
        log=lambda message: print(f"  [model] {message}", file=sys.stderr),
    )
    load_seconds = time.perf_counter() - began
    warm_up(detector, hmr, clip.frame, args.detector_batch, args.max_persons + 1)
    return LoadedModels(detector, hmr, load_seconds)


def bench_clip(
    clip: Clip,
    stride: int,
    models: ModelChoice,
    loaded: LoadedModels,
    args: argparse.Namespace,
) -> RunResult:
    """One timed run_capture of `clip` with the detector on every `stride`-th frame."""
    settings = capture_settings(clip, stride, models, args)
    reports: list[Progress] = []
    counting = CountingModels(loaded.detector, loaded.hmr)
    began = time.perf_counter()
    take = run_capture(settings, detector=counting.detector, hmr=counting.hmr, progress=reports.append)
    wall = time.perf_counter() - began
    if not reports:
        raise BenchError(f"`{clip.path}` gave no frames to process")
    last = reports[-1]
    height, width = clip.frame.shape[:2]
    return RunResult(
        clip=clip.path.name,
        size=f"{width}x{height}",
        stride=stride,
        frames=last.frames_done,
        wall_seconds=wall,
        load_seconds=loaded.load_seconds,
        decode_ms=last.decode_ms,
        detector_ms=last.detector_ms,
        hmr_ms=last.hmr_ms,
        tracks=take.num_tracks,
        people_per_frame=float(take.valid.sum()) / max(take.num_frames, 1),
        providers=(loaded.detector.provider, loaded.hmr.provider),
        detector_resolution=loaded.detector.resolution,
        work=counting.log,
    )


# ---------------------------------------------------------------------------------------------------------
# The whole benchmark.


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_average = describe_load()
    try:
        measured = measure(args)
    except (BenchError, FrameSourceError, ModelError, CaptureError) as error:
        print(f"bench_pipeline: {error}", file=sys.stderr)
        return 2
    print_report(args, measured, load_average)
    return 0


def measure(args: argparse.Namespace) -> Measurements:
    """Every clip at every stride (each model alone before and after), then the fp16 file and the
    micro-benchmarks when asked; stand-in models live in a temporary folder for the while."""
    clips = [open_clip(resolve_clip(name, args.fixtures)) for name in args.clip]
    measured = Measurements()
    loaded_by_files: dict[tuple[Path, Path], LoadedModels] = {}
    loaded_by_clip: dict[str, LoadedModels] = {}
    with tempfile.TemporaryDirectory(prefix="instanthmr-bench-") as folder:
        models = ModelFiles(args, Path(folder))
        for clip in clips:
            name = clip.path.name
            measured.first_frames[name] = clip.frame
            choice = models.for_clip(clip.frame.shape[:2])
            key = (choice.detector_path, choice.hmr_path)
            if key not in loaded_by_files:
                loaded_by_files[key] = load_models(clip, choice, args)
            loaded_by_clip[name] = loaded_by_files[key]
            if args.scripted_people:  # the models are shared between clips, the scripted people are not
                shared = loaded_by_clip[name]
                people = CLIP_PEOPLE.get(name, args.stand_in_people)
                detector = ScriptedPeopleDetector(shared.detector, people)
                loaded_by_clip[name] = LoadedModels(detector, shared.hmr, shared.load_seconds)
            measure_clip(clip, choice, loaded_by_clip[name], args, measured)
        if args.fp16_model is not None:
            print("  fp16 model alone ...", file=sys.stderr, flush=True)
            measured.precision = fp16_rows(args.fp16_model, clips[0].frame, args)
        if not args.no_micro:
            print("  micro-benchmarks ...", file=sys.stderr, flush=True)
            resolution = measured.results[0].detector_resolution
            measured.micro = micro_rows(measured.first_frames, loaded_by_clip, resolution, args)
    return measured


def measure_clip(
    clip: Clip, choice: ModelChoice, loaded: LoadedModels, args: argparse.Namespace, measured: Measurements
) -> None:
    """One clip: each model alone, the fastest of --repeat runs (each followed by its replay) per stride, each
    model alone again."""
    name = clip.path.name
    print(f"  {name}: each model alone ...", file=sys.stderr, flush=True)
    alone = time_alone(loaded, clip.frame, args.max_persons + 1)
    for stride in args.stride:
        print(f"  running {name}, detector stride {stride} ...", file=sys.stderr, flush=True)
        runs = []
        for _ in range(args.repeat):  # each run followed by its replay: both see the same machine
            run = bench_clip(clip, stride, choice, loaded, args)
            run.replay_seconds = replay_seconds(capture_settings(clip, stride, choice, args), run.work, loaded)
            runs.append(run)
        best = min(runs, key=lambda run: run.wall_seconds)
        best.pair_ratios = tuple(run.replay_seconds / run.wall_seconds for run in runs)
        measured.results.append(best)
    # again after the runs: the faster of the two is kept (the stricter bound)
    measured.alone[name] = alone.merge(time_alone(loaded, clip.frame, args.max_persons + 1))


if __name__ == "__main__":
    sys.exit(main())
