"""What tools/bench_pipeline.py sets the pipeline against: work timed alone, on this thread with nothing else
running. Each model's whole call by batch size, and the bound that sets (the needed work one call after another,
from the medians, or replayed: a capture's own logged calls made again); an fp16 InstantHMR file's calls; the
pre-processing pieces (micro-benchmarks). Imported by bench_pipeline.py, which puts the repository root and
tools/ on sys.path.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from bench_common import BenchError
from build_bench_models import LoadedModels, stand_in_boxes

from instanthmr_blender.capture.settings import CaptureSettings
from instanthmr_blender.pose.detector import NUM_CLASSES, NUM_QUERIES, decode_rfdetr, imagenet_chw, preprocess_rfdetr
from instanthmr_blender.pose.hmr import InstantHMR, cliff_condition, crop_person, normalise_crops
from instanthmr_blender.video.frames import open_source

#: Each micro-benchmark repeats its call for at least this long and reports the median call.
MICRO_SECONDS = 0.25
#: Model calls timed alone for the bound: at least this many repeats (median), after one warm-up call.
ALONE_REPEATS = 5


# ---------------------------------------------------------------------------------------------------------
# What a capture asked of the models, logged for the bound and the replay.


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
