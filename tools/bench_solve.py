#!/usr/bin/env python3
"""Benchmark the motion solve (MHR70 keypoints -> capture rig rotations) on the CMU 01_01 mocap take.

Prints Markdown tables for the README: frames solved per second at 30 and 120 fps, smoothing off / medium,
foot lock off / on, then where the time goes inside one solve (cProfile, indicative shares).
    .venv/bin/python tools/bench_solve.py [--rates 30 120] [--repeat 3]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
# The repository root is the Blender extension's package (its __init__ imports bpy): put the root on the path
# so `instanthmr_blender` (the bpy-free engine) and `testkit.cmu_take` import as top-level packages.
sys.path.insert(0, str(REPO_ROOT))

from instanthmr_blender.solve import SolveError, SolveOptions, solve_take  # noqa: E402
from instanthmr_blender.solve.smooth import SMOOTHING_LEVELS, SMOOTHING_METHODS  # noqa: E402
from testkit.cmu_take import CMU_RELATIVE_PATH, CmuTake, cmu_take, load_cmu  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model  # noqa: E402

DEFAULT_FIXTURES = Path(os.environ.get("INSTANTHMR_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))
#: Functions whose cumulative time the breakdown reports, in pipeline order: (module file, function, label).
#: A function the solve no longer has is simply left out of the table.
STAGES = (
    ("clean.py", "clean_track", "clean (swaps, flips, jumps, gaps)"),
    ("smooth.py", "smooth_camera_keypoints", "keypoint smoothing (image position and depth)"),
    ("contacts.py", "still_feet", "feet still in the image"),
    ("ground.py", "estimate_floor", "floor fit (planted feet)"),
    ("ground.py", "camera_to_world", "camera -> world transform"),
    ("skeleton_solve.py", "build_rest", "rest pose (bone lengths, T-pose)"),
    ("contacts.py", "detect_foot_contacts", "foot contact detection"),
    ("contacts.py", "lock_feet", "foot lock (two-bone IK)"),
    ("skeleton_solve.py", "solve_pose", "per-frame bone rotations"),
    ("skeleton_solve.py", "_hinge_roll", "of which: hinge roll (elbows, knees, fingers)"),
    ("quality.py", "person_quality", "quality report"),
)
#: Rows of the "a minute at 30 fps" take.
MINUTE_ROWS = 1800


class BenchError(RuntimeError):
    """A benchmark input is unusable; the message says which and what to do."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES, help="the shared fixtures folder")
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[30.0, 120.0],
        metavar="FPS",
        help="take frame rates: the 120 fps mocap sampled every 120/FPS-th frame (default: 30 120)",
    )
    parser.add_argument(
        "--smoothing",
        nargs="+",
        default=["off", "medium"],
        choices=SMOOTHING_LEVELS,
        help="smoothing levels to measure (default: off medium)",
    )
    parser.add_argument(
        "--foot-lock",
        nargs="+",
        default=["off", "on"],
        choices=("off", "on"),
        help="foot lock settings to measure (default: off on)",
    )
    parser.add_argument(
        "--smoothing-method",
        default=SolveOptions().smoothing_method,
        choices=SMOOTHING_METHODS,
        help="smoothing filter (default: the solve's own, %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="solves per setting; the fastest is reported, to shed other processes' noise (default: 3)",
    )
    parser.add_argument(
        "--clean",
        nargs="+",
        default=["on"],
        choices=("off", "on"),
        help="clean stage settings to measure (default: on)",
    )
    parser.add_argument("--no-breakdown", action="store_true", help="skip the cProfile stage breakdown")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    return args


@dataclass
class RatedTake:
    """A CMU take and the rate of its rows (frames per second of motion the rows cover)."""

    take: CmuTake
    row_fps: float

    @property
    def frames(self) -> int:
        return self.take.joints_cam.shape[1]


def take_at(fixtures: Path, fps: float) -> RatedTake:
    """CMU 01_01 (120 fps; its BVH says 1/0.0083333 s) sampled down to `fps`, which must divide 120."""
    path = fixtures / CMU_RELATIVE_PATH
    if not path.is_file():
        raise BenchError(f"`{path}` is missing: pass --fixtures with the shared fixtures folder")
    source_fps = load_cmu(fixtures).fps
    step = source_fps / fps
    if fps <= 0 or step < 1 or abs(step - round(step)) > 1e-3:
        raise BenchError(
            f"--rates {fps:g}: the take is {source_fps:g} fps; use a rate that divides it (30, 60, 120)"
        )
    return RatedTake(cmu_take(fixtures, step=int(round(step))), source_fps / round(step))


def minute_take(fixtures: Path) -> RatedTake:
    """A minute of rows at 30 fps: CMU 01_01's first 1800 frames (120 fps) relabelled as a 30 fps take (the
    motion plays 4x slower; the solve's cost depends on the number of rows)."""
    take = cmu_take(fixtures, step=1, start=1, stop=1 + MINUTE_ROWS)
    take.fps = 30.0
    return RatedTake(take, 30.0)


@dataclass
class SolveTiming:
    """Seconds of solve_take on one take with one set of options (median and best of `repeat`)."""

    fps: float
    frames: int
    smoothing: str
    foot_lock: bool
    clean: bool
    median_seconds: float
    best_seconds: float
    persons: int
    floor_method: str

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.best_seconds


def time_solve(rated: RatedTake, options: SolveOptions, repeat: int) -> SolveTiming:
    seconds = []
    solution = None
    for _ in range(repeat):
        began = time.perf_counter()
        solution = solve_take(rated.take, options)
        seconds.append(time.perf_counter() - began)
    assert solution is not None
    return SolveTiming(
        fps=rated.row_fps,
        frames=rated.frames,
        smoothing=options.smoothing,
        foot_lock=options.foot_lock,
        clean=options.clean,
        median_seconds=statistics.median(seconds),
        best_seconds=min(seconds),
        persons=len(solution.persons),
        floor_method=solution.floor_method,
    )


def stage_breakdown(rated: RatedTake, options: SolveOptions) -> tuple[float, list[tuple[str, float]]]:
    """Profile one solve: (total seconds under the profiler, [(stage label, cumulative seconds)])."""
    profiler = cProfile.Profile()
    profiler.enable()
    solve_take(rated.take, options)
    profiler.disable()
    stats = pstats.Stats(profiler)
    cumulative: dict[tuple[str, str], float] = {}
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        key = (Path(filename).name, function)
        # row = (primitive calls, total calls, own time, cumulative time, callers); recursion counted once
        cumulative[key] = max(cumulative.get(key, 0.0), row[3])
    total = cumulative.get(("__init__.py", "solve_take"), 0.0)
    found = [(label, cumulative[(module, fn)]) for module, fn, label in STAGES if (module, fn) in cumulative]
    return total, found


def machine_line() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # on a shared machine the load average says how much else was running
    load = (
        "/".join(f"{v:.2f}" for v in os.getloadavg()[:2]) + " (1/5 min)"
        if hasattr(os, "getloadavg")
        else "n/a"
    )
    return (
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs ({usable} usable), "
        f"Python {platform.python_version()}, numpy {np.__version__}, load average at the start {load}."
    )


def timings_table(timings: list[SolveTiming]) -> str:
    lines = [
        "| take fps | frames | clean | smoothing | foot lock | best s | median s | frames solved / s | ms / frame |",
        "|---:|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for t in timings:
        lines.append(
            f"| {t.fps:.4g} | {t.frames} | {'on' if t.clean else 'off'} | {t.smoothing} "
            f"| {'on' if t.foot_lock else 'off'} "
            f"| {t.best_seconds:.2f} | {t.median_seconds:.2f} | {t.frames_per_second:.0f} "
            f"| {1000 * t.best_seconds / t.frames:.2f} |"
        )
    return "\n".join(lines)


def breakdown_table(total: float, stages: list[tuple[str, float]]) -> str:
    lines = ["| stage | seconds | share |", "|---|---:|---:|"]
    for label, seconds in stages:
        lines.append(f"| {label} | {seconds:.2f} | {100 * seconds / total:.0f}% |")
    lines.append(f"| whole solve_take (under the profiler) | {total:.2f} | 100% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_line()  # before the solves, so the load average is other processes'
    try:
        takes = [take_at(args.fixtures, fps) for fps in args.rates]
        # the first solve pays for imports and numpy/LAPACK set-up: keep that out of the table
        solve_take(takes[0].take, SolveOptions())
        timings = []
        for take in takes:
            for clean in args.clean:
                for smoothing in args.smoothing:
                    for foot_lock in args.foot_lock:
                        options = SolveOptions(
                            smoothing=smoothing,
                            smoothing_method=args.smoothing_method,
                            foot_lock=foot_lock == "on",
                            clean=clean == "on",
                        )
                        what = f"{take.row_fps:.4g} fps, clean {clean}, smoothing {smoothing}, foot lock {foot_lock}"
                        print(f"  solving {what} ...", file=sys.stderr, flush=True)
                        timings.append(time_solve(take, options, args.repeat))
        minute = time_solve(minute_take(args.fixtures), SolveOptions(), args.repeat)
        if not args.no_breakdown:
            heaviest = max(takes, key=lambda t: t.frames)
            profiled = SolveOptions(
                smoothing="medium", smoothing_method=args.smoothing_method, foot_lock=True
            )
            total, stages = stage_breakdown(heaviest, profiled)
    except (BenchError, SolveError) as error:
        print(f"bench_solve: {error}", file=sys.stderr)
        return 2

    print("## Motion solve speed\n")
    print(
        f"CMU 01_01 mocap as a one-person take (`testkit/cmu_take.py`, {len(takes)} rate(s) of the same "
        f"{takes[0].frames / takes[0].row_fps:.1f} s of motion), `solve_take` with smoothing method "
        f"{args.smoothing_method}; frames/s and ms/frame from the fastest of {args.repeat} run(s) after one "
        f"warm-up solve. Floor: {timings[0].floor_method or 'n/a'}. {machine}\n"
    )
    print(timings_table(timings) + "\n")
    print(
        f"A minute at 30 fps ({minute.frames} rows: CMU 01_01's 120 fps frames taken as 30 fps rows), default "
        f"settings: solve_take {minute.best_seconds:.2f} s (median {minute.median_seconds:.2f} s), "
        f"{minute.frames_per_second:.0f} frames/s.\n"
    )
    if not args.no_breakdown:
        setting = f"{heaviest.row_fps:.4g} fps, smoothing medium {args.smoothing_method}, foot lock on"
        print(f"### Where the time goes ({setting})\n")
        print(
            "Cumulative time per stage from one cProfile run (the profiler slows Python-heavy stages more "
            "than numpy-heavy ones, so read the shares as indicative).\n"
        )
        print(breakdown_table(total, stages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
