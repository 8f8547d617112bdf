#!/usr/bin/env python3
"""Benchmark the capture pipeline (decode -> person detector -> InstantHMR -> tracking) on the fixture videos.

Prints Markdown tables for the README. By default both networks are the contract-shaped stand-ins of
`tests/contract_models.py` (constant outputs, almost no compute), so the figures measure video decoding,
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
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parents[1]
# The repository root is the Blender extension's package (its __init__ imports bpy): put the root on the path
# so `instanthmr_blender` (the bpy-free engine) and `testkit.contract_models` import as top-level packages.
sys.path.insert(0, str(REPO_ROOT))

from instanthmr_blender.capture.loading import build_models  # noqa: E402
from instanthmr_blender.capture.offline import run_capture  # noqa: E402
from instanthmr_blender.capture.settings import CaptureError, CaptureSettings, Progress  # noqa: E402
from instanthmr_blender.models.runtime import ModelError  # noqa: E402
from instanthmr_blender.pose.detector import (  # noqa: E402
    NUM_CLASSES,
    NUM_QUERIES,
    RFDETR_RESOLUTIONS,
    Detections,
    OnnxRFDETR,
    decode_rfdetr,
    imagenet_chw,
    preprocess_rfdetr,
)
from instanthmr_blender.pose.hmr import InstantHMR, cliff_condition, crop_person, normalise_crops  # noqa: E402
from instanthmr_blender.video.frames import FrameSourceError, open_source  # noqa: E402
from testkit.contract_models import DetectorBox, build_instanthmr_model, build_rfdetr_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model  # noqa: E402

DEFAULT_FIXTURES = Path(os.environ.get("INSTANTHMR_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))
CLIPS = ("two_people_walking.mp4", "one_person_lab.mp4", "pedestrians.avi")
#: Where the stand-in detector "sees" people in every frame, whatever the image (normalised cx, cy, w, h):
#: standing figures of plausible size, so crops, the tracker and the keypoint confidence do real work.
STAND_IN_PEOPLE = (
    DetectorBox(0.30, 0.55, 0.10, 0.50, logit=3.0),
    DetectorBox(0.70, 0.55, 0.12, 0.55, logit=2.0),
    DetectorBox(0.50, 0.50, 0.08, 0.40, logit=1.5),
    DetectorBox(0.15, 0.45, 0.07, 0.35, logit=1.0),
)
#: Each micro-benchmark repeats its call for at least this long and reports the median call.
MICRO_SECONDS = 0.25
#: People in each fixture clip, for --scripted-people.
CLIP_PEOPLE = {"one_person_lab.mp4": 1, "two_people_walking.mp4": 2, "pedestrians.avi": 3}
#: Model calls timed alone for the bound: at least this many repeats (median), after one warm-up call.
ALONE_REPEATS = 5


class BenchError(RuntimeError):
    """A benchmark input is unusable; the message says which and what to do."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Without --model/--detector-model the figures are pipeline overhead with stand-in networks.",
    )
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
# Models: real files, or stand-ins built into a temporary folder.


@dataclass
class ModelChoice:
    """Which model files a clip runs with."""

    detector_path: Path
    hmr_path: Path
    detector_resolution: int | None  # given to OnnxRFDETR: None = read from the model


class ModelFiles:
    """Builds stand-in models on demand into `folder`; the InstantHMR stand-in is per frame size because its
    `cam_trans` matches the implicit camera of one (H, W)."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self._stand_in_detector: Path | None = None
        self._stand_in_hmr: dict[tuple[int, int], Path] = {}

    def for_clip(self, image_size: tuple[int, int]) -> ModelChoice:
        args = self.args
        if args.detector_model is not None:
            detector_path, detector_resolution = args.detector_model, args.detector_resolution
        else:
            if self._stand_in_detector is None:
                self._stand_in_detector = build_rfdetr_model(
                    self.folder / "rfdetr_stand_in.onnx",
                    resolution=args.detector_resolution or RFDETR_RESOLUTIONS["nano"],
                    boxes=STAND_IN_PEOPLE[: args.stand_in_people],
                )
            detector_path, detector_resolution = self._stand_in_detector, None
        if args.model is not None:
            hmr_path = args.model
        else:
            if image_size not in self._stand_in_hmr:
                height, width = image_size
                self._stand_in_hmr[image_size] = build_instanthmr_model(
                    self.folder / f"instanthmr_stand_in_{width}x{height}.onnx", image_size=image_size
                )
            hmr_path = self._stand_in_hmr[image_size]
        return ModelChoice(detector_path, hmr_path, detector_resolution)


# ---------------------------------------------------------------------------------------------------------
# Pipeline runs.


@dataclass
class RunResult:
    """One run_capture of one clip at one detector stride. Stage times: mean ms per frame through the stage
    (from the pipeline's own Progress report); the stages overlap in threads, so they need not add up."""

    clip: str
    size: str  # "WxH"
    stride: int
    frames: int
    wall_seconds: float
    load_seconds: float
    decode_ms: float
    detector_ms: float
    hmr_ms: float
    tracks: int
    people_per_frame: float
    providers: tuple[str, str]  # (detector, InstantHMR)
    detector_resolution: int
    work: WorkLog | None = None  # the model calls the run made
    replay_seconds: float | None = None  # those calls made again one after another (replay_seconds)
    pair_ratios: tuple[float, ...] = ()  # replay / wall of every run of this clip and stride

    @property
    def replay_ratio(self) -> float:
        """The median over the runs of (their calls one after another) / (the pipeline's wall time)."""
        return statistics.median(self.pair_ratios) if self.pair_ratios else float("nan")

    @property
    def fps(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else float("nan")


def warm_up(detector: OnnxRFDETR, hmr: InstantHMR, frame: np.ndarray, batch: int, persons: int) -> None:
    """One run of each model at the shapes the capture uses, so first-run set-up is not timed."""
    detector.detect([frame] * max(batch, 1))
    height, width = frame.shape[:2]
    boxes = np.array([[0.4 * width, 0.3 * height, 0.6 * width, 0.8 * height]] * persons, np.float32)
    for count in range(1, persons + 1):
        hmr.predict(frame, boxes[:count])


class ScriptedPeopleDetector:
    """Runs the real detector network on every call (its full cost), then reports `people` fixed boxes per
    frame instead of what it found: a random-weight detector finds nobody, so nothing downstream would run."""

    def __init__(self, inner: OnnxRFDETR, people: int) -> None:
        self.inner = inner
        self.people = people

    def __getattr__(self, name: str):
        return getattr(self.inner, name)  # provider, batch_size, resolution, confidence ...

    def detect(self, frames_rgb):
        self.inner.detect(frames_rgb)
        found = []
        for frame in frames_rgb:
            boxes = stand_in_boxes(frame.shape[:2], self.people)
            scores = np.linspace(0.9, 0.8, self.people).astype(np.float32)
            found.append(Detections(boxes, scores))
        return found


@dataclass
class WorkLog:
    """What one capture asked of the models: frames per detector call, people per InstantHMR call; and, for the
    replay, every call in order: ("detector", frame fingerprints, None) or ("hmr", (fingerprint,), boxes)."""

    detector_frames: list[int]
    hmr_people: list[int]
    calls: list[tuple[str, tuple[bytes, ...], np.ndarray | None]] = field(default_factory=list)


def fingerprint(rgb: np.ndarray) -> bytes:
    """A cheap identity for a decoded frame (a sparse grid of its pixels and its shape): the replay finds the
    frames a call was made on by it. Identical frames share one, and cost the models the same."""
    return hashlib.blake2b(np.ascontiguousarray(rgb[::37, ::37]).tobytes() + repr(rgb.shape).encode(),
                           digest_size=16).digest()  # fmt: skip


class CountingModels:
    """Pass-through wrappers that log every detect / predict call of a capture into a WorkLog."""

    def __init__(self, detector, hmr) -> None:
        self.log = WorkLog([], [])
        log = self.log

        class Detector:
            def __getattr__(self, name):
                return getattr(detector, name)

            def detect(self, frames_rgb):
                log.detector_frames.append(len(frames_rgb))
                log.calls.append(("detector", tuple(fingerprint(f) for f in frames_rgb), None))
                return detector.detect(frames_rgb)

        class Hmr:
            def __getattr__(self, name):
                return getattr(hmr, name)

            def predict(self, frame_rgb, boxes):
                log.hmr_people.append(len(boxes))
                log.calls.append(("hmr", (fingerprint(frame_rgb),), np.array(boxes, np.float32, copy=True)))
                return hmr.predict(frame_rgb, boxes)

        self.detector, self.hmr = Detector(), Hmr()


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


@dataclass
class LoadedModels:
    detector: OnnxRFDETR
    hmr: InstantHMR
    load_seconds: float


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
# Micro-benchmarks of the pre-processing pieces, on each clip's first frame.


def median_ms(call: Callable[[], object], min_seconds: float = MICRO_SECONDS) -> float:
    """Median wall milliseconds of one call, repeating for at least `min_seconds` (and 5 calls)."""
    call()  # first call: allocations, OpenCV dispatch
    times: list[float] = []
    deadline = time.perf_counter() + min_seconds
    while len(times) < 5 or time.perf_counter() < deadline:
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return 1000.0 * statistics.median(times)


def stand_in_boxes(image_size: tuple[int, int], count: int) -> np.ndarray:
    """(count, 4) xyxy pixels: the stand-in detector's people on a frame of (H, W)."""
    height, width = image_size
    rows = [
        [
            (b.cx - b.w / 2) * width,
            (b.cy - b.h / 2) * height,
            (b.cx + b.w / 2) * width,
            (b.cy + b.h / 2) * height,
        ]
        for b in STAND_IN_PEOPLE[:count]
    ]
    return np.array(rows, np.float32)


def kind(model_path: Path | None) -> str:
    return "stand-in" if model_path is None else "real"


def micro_rows(
    frames: dict[str, np.ndarray], loaded: dict[str, LoadedModels], resolution: int, args: argparse.Namespace
) -> list[tuple[str, list[float]]]:
    """(piece, ms per clip in `frames` order) for each pre-/post-processing piece, then whole model calls
    alone on this thread with nothing else running (labelled stand-in or real)."""
    rng = np.random.default_rng(0)
    raw_dets = rng.random((NUM_QUERIES, 4), dtype=np.float32)
    raw_labels = rng.normal(-6.0, 2.0, (NUM_QUERIES, NUM_CLASSES)).astype(np.float32)
    resized = rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8)
    rows: list[tuple[str, list[float]]] = [
        (f"detector resize + normalise to {resolution}x{resolution}", []),
        (f"normalise alone ({resolution}x{resolution}, part of the row above)", []),
        ("detector output decode (300 queries)", []),
    ]
    persons_list = (1, 2, 3)
    for persons in persons_list:
        rows.append((f"InstantHMR crop + normalise, {persons} person{'s' if persons > 1 else ''}", []))
    for frame in frames.values():
        image_size = frame.shape[:2]
        rows[0][1].append(median_ms(lambda frame=frame: preprocess_rfdetr(frame, resolution)))
        rows[1][1].append(median_ms(lambda: imagenet_chw(resized)))
        rows[2][1].append(median_ms(lambda size=image_size: decode_rfdetr(raw_dets, raw_labels, size, 0.5)))
        for row, persons in zip(rows[3:], persons_list):
            boxes = stand_in_boxes(image_size, persons)

            def crop_and_normalise(frame=frame, boxes=boxes, size=image_size):
                crops = np.stack([crop_person(frame, box) for box in boxes])
                return normalise_crops(crops), cliff_condition(boxes, size)

            row[1].append(median_ms(crop_and_normalise))
    calls: list[tuple[str, list[float]]] = [
        (f"whole detector.detect, 1 frame ({kind(args.detector_model)} model)", []),
        (f"whole InstantHMR.predict, 2 persons ({kind(args.model)} model)", []),
    ]
    for name, frame in frames.items():
        models = loaded[name]
        boxes = stand_in_boxes(frame.shape[:2], 2)
        calls[0][1].append(median_ms(lambda frame=frame, models=models: models.detector.detect([frame])))
        calls[1][1].append(median_ms(lambda frame=frame, models=models, boxes=boxes: models.hmr.predict(frame, boxes)))
    return rows + calls


# ---------------------------------------------------------------------------------------------------------
# Each model alone, and the bound it sets on the pipeline.


@dataclass
class AloneTimes:
    """Median ms of one whole model call (pre-processing included) with nothing else running, by batch size:
    detector frames per call, InstantHMR people per call."""

    detector_ms: dict[int, float]
    hmr_ms: dict[int, float]

    def merge(self, other: AloneTimes) -> AloneTimes:
        """The faster of two measurements of each call (the stricter bound)."""
        return AloneTimes(
            {b: min(t, other.detector_ms.get(b, t)) for b, t in self.detector_ms.items()},
            {n: min(t, other.hmr_ms.get(n, t)) for n, t in self.hmr_ms.items()},
        )

    def hmr_best_ms(self, people: int) -> float:
        """The cheaper of one batched call and one call per person, as measured."""
        alone = people * self.hmr_ms[1]
        return min(self.hmr_ms.get(people, alone), alone)


def repeat_ms(call: Callable[[], object], repeats: int = ALONE_REPEATS) -> float:
    call()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return 1000.0 * statistics.median(times)


def time_alone(loaded: LoadedModels, frame: np.ndarray, max_people: int) -> AloneTimes:
    """Each model's whole call alone on this thread, at detector batches 1 and 2 and 1..max_people people."""
    detector = getattr(loaded.detector, "inner", loaded.detector)
    detector_ms = {}
    kept = detector.batch_size
    for batch in (1, 2):
        if detector.fixed_batch and batch != detector.fixed_batch:
            continue
        detector.batch_size = batch
        try:
            detector_ms[batch] = repeat_ms(lambda batch=batch: loaded.detector.detect([frame] * batch))
        finally:
            detector.batch_size = kept
    hmr_ms = {}
    for people in range(1, max_people + 1):
        boxes = stand_in_boxes(frame.shape[:2], people)
        hmr_ms[people] = repeat_ms(lambda boxes=boxes: loaded.hmr.predict(frame, boxes))
    return AloneTimes(detector_ms, hmr_ms)


def bound_seconds(work: WorkLog, alone: AloneTimes) -> float:
    """Seconds the needed work takes one call after another: the detector at batch 1 on every frame it ran on,
    InstantHMR on every frame with people, at its cheaper measured way."""
    detector = sum(work.detector_frames) * alone.detector_ms[1] / 1000.0
    hmr = sum(alone.hmr_best_ms(people) for people in work.hmr_people if people) / 1000.0
    return detector + hmr


def replay_seconds(settings: CaptureSettings, work: WorkLog, loaded: LoadedModels) -> float:
    """The bound measured directly: the calls a capture made (`work.calls`), made again one after another on this
    thread on the same frames with the same boxes, nothing else running; only the calls are timed (decoding the
    frames for them is not). Run right after the capture it replays, so both see the same machine."""
    with open_source(settings.source, fps=settings.fps) as source:
        order = [fingerprint(rgb) for _, rgb in source.frames(settings.start, settings.end, settings.step)]
        position: dict[bytes, int] = {}
        for index, print_ in enumerate(order):
            position.setdefault(print_, index)  # identical frames: any of them costs the same
        missing = [c for c in work.calls if any(f not in position for f in c[1])]
        if missing:
            raise BenchError(f"the replay of `{settings.source}` cannot find {len(missing)} frames the capture used")
        due: dict[int, list] = {}
        last_use: dict[int, int] = {}
        for call in work.calls:
            frames = [position[f] for f in call[1]]
            due.setdefault(max(frames), []).append((call[0], frames, call[2]))
            for frame in frames:
                last_use[frame] = max(last_use.get(frame, -1), max(frames))
        kept: dict[int, np.ndarray] = {}
        seconds = 0.0
        for index, (_, rgb) in enumerate(source.frames(settings.start, settings.end, settings.step)):
            if index in last_use:
                kept[index] = rgb
            for kind, frames, boxes in due.get(index, ()):
                began = time.perf_counter()
                if kind == "detector":
                    loaded.detector.detect([kept[f] for f in frames])
                else:
                    loaded.hmr.predict(kept[frames[0]], boxes)
                seconds += time.perf_counter() - began
            for frame in [f for f in kept if last_use[f] <= index]:
                del kept[frame]
    return seconds


def fp16_rows(path: Path, frame: np.ndarray, args: argparse.Namespace) -> list[tuple[str, dict[int, float]]]:
    """InstantHMR alone from an fp16 file: as it is, and as the fp32 conversion the CPU provider gets."""
    rows = []
    for label, keep in (("fp16 file as it is", True), ("fp16 file converted to fp32 (the CPU default)", False)):
        hmr = InstantHMR(
            path,
            device=args.device,
            threads=args.threads,
            spin=False,
            keep_fp16=keep,
            log=lambda message: print(f"  [model] {message}", file=sys.stderr),
        )
        times = {}
        for people in (1, 2):
            boxes = stand_in_boxes(frame.shape[:2], people)
            times[people] = repeat_ms(lambda boxes=boxes, hmr=hmr: hmr.predict(frame, boxes))
        rows.append((f"{label} ({hmr.provider})", times))
    return rows


# ---------------------------------------------------------------------------------------------------------
# Output.


def describe_load() -> str:
    """The 1- and 5-minute load averages: on a shared machine they say how much else was running."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    one, five, _ = os.getloadavg()
    return f"{one:.2f} / {five:.2f}"


def machine_table(args: argparse.Namespace, providers: set[str], load_average: str) -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = [
        ("CPU", cpu_model()),
        ("CPU count (os.cpu_count / usable)", f"{os.cpu_count()} / {usable}"),
        ("load average at the start (1 / 5 min)", load_average),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("numpy", np.__version__),
        ("OpenCV (threads)", f"{cv2.__version__} ({cv2.getNumThreads()})"),
        ("onnxruntime", ort.__version__),
        ("providers available", ", ".join(ort.get_available_providers())),
        ("provider used", ", ".join(sorted(providers)) or "-"),
        ("device / intra-op threads asked", f"{args.device} / {args.threads or 'onnxruntime default'}"),
    ]
    lines = ["| machine | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def results_table(results: list[RunResult]) -> str:
    lines = [
        "| clip | size | det. stride | frames | wall s | fps | decode ms | detector ms | HMR+track ms "
        "| people/frame | tracks | load s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.clip} | {r.size} | {r.stride} | {r.frames} | {r.wall_seconds:.2f} | {r.fps:.1f} "
            f"| {r.decode_ms:.2f} | {r.detector_ms:.2f} | {r.hmr_ms:.2f} | {r.people_per_frame:.2f} "
            f"| {r.tracks} | {r.load_seconds:.2f} |"
        )
    return "\n".join(lines)


def micro_table(names: list[str], sizes: list[str], rows: list[tuple[str, list[float]]]) -> str:
    header = "| piece (median ms per call) | " + " | ".join(f"{n} ({s})" for n, s in zip(names, sizes)) + " |"
    lines = [header, "|---|" + "---:|" * len(names)]
    lines += [f"| {piece} | " + " | ".join(f"{ms:.2f}" for ms in values) + " |" for piece, values in rows]
    return "\n".join(lines)


def alone_table(alone: dict[str, AloneTimes]) -> str:
    lines = [
        "| clip | detector, 1 frame | detector, 2 frames | InstantHMR, 1 person | 2 people | 3 people |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, times in alone.items():
        cells = [times.detector_ms.get(1), times.detector_ms.get(2), *(times.hmr_ms.get(n) for n in (1, 2, 3))]
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.1f}" for c in cells) + " |")
    return "\n".join(lines)


def bound_table(results: list[RunResult], alone: dict[str, AloneTimes]) -> str:
    lines = [
        "| clip | det. stride | frames | detector frames | InstantHMR crops | pipeline fps | replayed bound fps "
        "| ratio (each run) | bound fps from the medians | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        bound = bound_seconds(r.work, alone[r.clip])
        each = ", ".join(f"{ratio:.2f}" for ratio in r.pair_ratios)
        lines.append(
            f"| {r.clip} | {r.stride} | {r.frames} | {sum(r.work.detector_frames)} | {sum(r.work.hmr_people)} "
            f"| {r.fps:.2f} | {r.frames / r.replay_seconds:.2f} | **{r.replay_ratio:.2f}** ({each}) "
            f"| {r.frames / bound:.2f} | {bound / r.wall_seconds:.2f} |"
        )
    return "\n".join(lines)


def describe_models(args: argparse.Namespace, resolution: int) -> str:
    if args.model is None and args.detector_model is None:
        return (
            "**Models: contract-shaped STAND-INS** (`tests/contract_models.py`: constant outputs, almost no "
            f"compute; stand-in detector at {resolution}x{resolution} reporting {args.stand_in_people} fixed "
            "people per frame). These figures measure decoding, pre-processing, tracking and threading "
            "overhead, NOT the real RF-DETR or InstantHMR networks."
        )
    detector = f"real `{args.detector_model}`" if args.detector_model else "STAND-IN (constant outputs)"
    hmr = f"real `{args.model}`" if args.model else "STAND-IN (constant outputs)"
    return f"**Models:** detector {detector} at {resolution}x{resolution}; InstantHMR {hmr}."


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_average = describe_load()
    try:
        clips = [open_clip(resolve_clip(name, args.fixtures)) for name in args.clip]
        results: list[RunResult] = []
        first_frames: dict[str, np.ndarray] = {}
        loaded_by_files: dict[tuple[Path, Path], LoadedModels] = {}
        loaded_by_clip: dict[str, LoadedModels] = {}
        alone: dict[str, AloneTimes] = {}
        with tempfile.TemporaryDirectory(prefix="instanthmr-bench-") as folder:
            models = ModelFiles(args, Path(folder))
            for clip in clips:
                name = clip.path.name
                first_frames[name] = clip.frame
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
                print(f"  {name}: each model alone ...", file=sys.stderr, flush=True)
                alone[name] = time_alone(loaded_by_clip[name], clip.frame, args.max_persons + 1)
                for stride in args.stride:
                    print(f"  running {name}, detector stride {stride} ...", file=sys.stderr, flush=True)
                    runs = []
                    for _ in range(args.repeat):  # each run followed by its replay: both see the same machine
                        run = bench_clip(clip, stride, choice, loaded_by_clip[name], args)
                        run.replay_seconds = replay_seconds(
                            capture_settings(clip, stride, choice, args), run.work, loaded_by_clip[name]
                        )
                        runs.append(run)
                    best = min(runs, key=lambda run: run.wall_seconds)
                    best.pair_ratios = tuple(run.replay_seconds / run.wall_seconds for run in runs)
                    results.append(best)
                # again after the runs: the faster of the two is kept (the stricter bound)
                alone[name] = alone[name].merge(time_alone(loaded_by_clip[name], clip.frame, args.max_persons + 1))
            if args.fp16_model is not None:
                print("  fp16 model alone ...", file=sys.stderr, flush=True)
                precision = fp16_rows(args.fp16_model, clips[0].frame, args)
            if not args.no_micro:
                print("  micro-benchmarks ...", file=sys.stderr, flush=True)
                micro = micro_rows(first_frames, loaded_by_clip, results[0].detector_resolution, args)
    except (BenchError, FrameSourceError, ModelError, CaptureError) as error:
        print(f"bench_pipeline: {error}", file=sys.stderr)
        return 2

    resolution = results[0].detector_resolution
    providers = {p for r in results for p in r.providers}
    frames_note = f"at most {args.frames} frames per clip" if args.frames else "whole clips"
    print("## Capture pipeline throughput\n")
    print(describe_models(args, resolution) + "\n")
    print(
        f"Settings: {frames_note}, frame step {args.step}, max persons {args.max_persons}, detector batch "
        f"{args.detector_batch or 'auto'}, models one at a time: {args.serialise}"
        f"{', scripted people' if args.scripted_people else ''}; fastest of {args.repeat} run(s). "
        "Wall time is `run_capture` alone (models "
        "loaded and warmed up before). "
        "Stage columns are the pipeline's own Progress figures: mean ms per frame through that stage; "
        "decoding and detection run in their own threads, so stages overlap and need not add up to "
        "1000 / fps. Detector ms is per frame the detector ran on.\n"
    )
    print(machine_table(args, providers, load_average))
    print(f"\nLoad average at the end (1 / 5 min): {describe_load()}\n")
    print(results_table(results) + "\n")
    print("## Pipeline against the bound\n")
    print(
        "Each model alone: median ms of one whole call (pre-processing included) on this thread with nothing "
        "else running, measured before and after the clip's pipeline runs (the faster kept):\n"
    )
    print(alone_table(alone) + "\n")
    print(
        "Bound: the fps if only the needed work ran, one call after another. **Replayed**: right after each "
        "pipeline run, the very calls it made (the same frames, batches and boxes) are made again one after "
        "another on this thread, only the calls timed; ratio = pipeline fps / replayed fps, the median over the "
        "runs (each run's own in brackets): run and replay see the same machine, so other jobs on a shared "
        "machine move both. **From the medians**: the detector at batch 1 on every frame it ran on, InstantHMR "
        "on every frame with its people at the cheaper of one batched call and one call per person, each call "
        "at the faster of the medians above (a quiet moment's figure set against the whole run).\n"
    )
    print(bound_table(results, alone) + "\n")
    if args.fp16_model is not None:
        print(f"## InstantHMR precision on {precision[0][0].rsplit('(', 1)[1].rstrip(')')}\n")
        lines = ["| model | 1 person ms | 2 people ms |", "|---|---:|---:|"]
        lines += [f"| {label} | {t[1]:.1f} | {t[2]:.1f} |" for label, t in precision]
        print("\n".join(lines) + "\n")
    if not args.no_micro:
        names = list(first_frames)
        sizes = [f"{f.shape[1]}x{f.shape[0]}" for f in first_frames.values()]
        print("## Pre-processing micro-benchmarks\n")
        print(
            "First frame of each clip, median of repeated calls on one thread with no pipeline running "
            "(OpenCV and onnxruntime may still use their own threads). Compare with the stage columns above "
            "to see what running three stages on this machine's cores at once costs.\n"
        )
        print(micro_table(names, sizes, micro))
    return 0


if __name__ == "__main__":
    sys.exit(main())
