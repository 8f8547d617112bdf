"""The Markdown report of tools/bench_pipeline.py: the machine, the pipeline's throughput, the pipeline against
the bound, an fp16 file's calls and the pre-processing micro-benchmarks, one table each."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from dataclasses import dataclass, field

import cv2
import numpy as np
import onnxruntime as ort
from bench_alone import AloneTimes, WorkLog, bound_seconds
from bench_common import cpu_model, describe_load


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


@dataclass
class Measurements:
    """What one benchmark run measured: the fastest run per clip and stride, each clip's first frame, each
    clip's models alone; the fp16 rows (--fp16-model) and the micro-benchmarks (unless --no-micro)."""

    results: list[RunResult] = field(default_factory=list)
    first_frames: dict[str, np.ndarray] = field(default_factory=dict)
    alone: dict[str, AloneTimes] = field(default_factory=dict)
    precision: list[tuple[str, dict[int, float]]] = field(default_factory=list)
    micro: list[tuple[str, list[float]]] = field(default_factory=list)


def print_report(args: argparse.Namespace, measured: Measurements, load_average: str) -> None:
    """Every table, in order; `load_average` was taken at the start (the one at the end is taken now)."""
    print_throughput(args, measured.results, load_average)
    print_bound(measured.results, measured.alone)
    if args.fp16_model is not None:
        print_precision(measured.precision)
    if not args.no_micro:
        print_micro(measured.first_frames, measured.micro)


def print_throughput(args: argparse.Namespace, results: list[RunResult], load_average: str) -> None:
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


def print_bound(results: list[RunResult], alone: dict[str, AloneTimes]) -> None:
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


def print_precision(precision: list[tuple[str, dict[int, float]]]) -> None:
    print(f"## InstantHMR precision on {precision[0][0].rsplit('(', 1)[1].rstrip(')')}\n")
    lines = ["| model | 1 person ms | 2 people ms |", "|---|---:|---:|"]
    lines += [f"| {label} | {t[1]:.1f} | {t[2]:.1f} |" for label, t in precision]
    print("\n".join(lines) + "\n")


def print_micro(first_frames: dict[str, np.ndarray], micro: list[tuple[str, list[float]]]) -> None:
    names = list(first_frames)
    sizes = [f"{f.shape[1]}x{f.shape[0]}" for f in first_frames.values()]
    print("## Pre-processing micro-benchmarks\n")
    print(
        "First frame of each clip, median of repeated calls on one thread with no pipeline running "
        "(OpenCV and onnxruntime may still use their own threads). Compare with the stage columns above "
        "to see what running three stages on this machine's cores at once costs.\n"
    )
    print(micro_table(names, sizes, micro))


# ---------------------------------------------------------------------------------------------------------
# The tables and paragraphs.


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
            "**Models: contract-shaped STAND-INS** (`testkit/contract_models.py`: constant outputs, almost no "
            f"compute; stand-in detector at {resolution}x{resolution} reporting {args.stand_in_people} fixed "
            "people per frame). These figures measure decoding, pre-processing, tracking and threading "
            "overhead, NOT the real RF-DETR or InstantHMR networks."
        )
    detector = f"real `{args.detector_model}`" if args.detector_model else "STAND-IN (constant outputs)"
    hmr = f"real `{args.model}`" if args.model else "STAND-IN (constant outputs)"
    return f"**Models:** detector {detector} at {resolution}x{resolution}; InstantHMR {hmr}."
