#!/usr/bin/env python3
"""Print the figures the solve must reach on real network output (issue 10) and the CMU exactness.

The real-network take (MediaPipe Pose on the lab clip, 60 fps) is solved with the default settings at its own
rate and at 30 fps (every other frame); per rate it prints the largest body-bone turn between frames, the
jitter reduction, foot slide and depth during the stances seen in the 2D keypoints, how closely the rig
follows the input, the quality report and the solve time. Then the CMU round trip (smoothing off) and the
same with a 6 cm spine compression. --follow-breakdown adds where the 30 fps follow figure goes: the 30 fps solve
with the foot lock off, and the 60 fps solve (twice the samples) taken every other frame, measured against the 30 fps
input, at "medium" and at "strong" smoothing, foot lock on and off.
    .venv/bin/python tools/solve_figures.py [--fixtures ../shared/fixtures] [--clean on|off] [--follow-breakdown]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the engine and testkit.cmu_take as top-level packages (see bench_solve.py)

from instanthmr_blender.solve import SolveError, SolveOptions, solve_take  # noqa: E402
from instanthmr_blender.take import TakeError  # noqa: E402
from testkit.realnet_take import cmu_exactness, realnet_figures, realnet_take  # noqa: E402

DEFAULT_FIXTURES = Path(os.environ.get("INSTANTHMR_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES, help="the shared fixtures folder")
    parser.add_argument("--clean", choices=("on", "off"), default="on", help="the clean stage (default on)")
    parser.add_argument("--follow-breakdown", action="store_true", help="where the 30 fps follow figure goes")
    args = parser.parse_args(argv)
    options = SolveOptions(clean=args.clean == "on")
    try:
        solve_take(realnet_take(args.fixtures, 2), options)  # warm-up: imports and numpy set-up out of the times
        for step in (1, 2):
            take = realnet_take(args.fixtures, step)
            began = time.perf_counter()
            solution = solve_take(take, options)
            seconds = time.perf_counter() - began
            figures = realnet_figures(take, solution)
            print("\n".join(figures.lines()))
            print(f"  solve: {seconds:.3f} s for {take.num_frames} frames; {solution.floor.describe()}")
            print(f"  quality: {solution.persons[0].quality.summary()}")
        if args.follow_breakdown:
            print("\n".join(follow_breakdown(args.fixtures, options)))
        from testkit.cmu_take import cmu_take

        for compression in (0.0, 0.06):
            mean = cmu_exactness(cmu_take(args.fixtures), spine_compression=compression)
            print(f"CMU round trip, smoothing off, spine compression {100 * compression:.0f} cm: "
                  f"mean {1000 * mean:.2f} mm")
    except (SolveError, TakeError, OSError) as error:
        print(f"solve_figures: {error}", file=sys.stderr)
        return 2
    return 0


def follow_breakdown(fixtures: Path, options: SolveOptions) -> list[str]:
    """Follow (median rig joint to input keypoint, mm) and jitter reduction at 30 fps: the 30 fps solve with the
    foot lock on and off, and the 60 fps solve taken every other frame against the same 30 fps input."""
    import dataclasses

    import numpy as np

    from instanthmr_blender.solve.quality import jitter, rig_keypoints, world_from_camera

    take30, take60 = realnet_take(fixtures, 2), realnet_take(fixtures, 1)
    lines = ["Follow at 30 fps, median mm / jitter below the 30 fps input:"]
    for smoothing in ("medium", "strong"):
        for lock in (True, False):
            variant = dataclasses.replace(options, smoothing=smoothing, foot_lock=lock)
            own = realnet_figures(take30, solve_take(take30, variant))
            solution = solve_take(take60, variant)
            person = solution.persons[0]
            rig = rig_keypoints(person.rest, person.quats, person.root_location)[::2]
            given = world_from_camera(take30.joints_cam[0].astype(np.float64), solution.camera_matrix_world)
            both = np.all(np.isfinite(rig), axis=-1) & np.all(np.isfinite(given), axis=-1)
            follow = 1000.0 * float(np.median(np.linalg.norm(rig - given, axis=-1)[both]))
            reduction = 1.0 - jitter(rig, both) / jitter(given, both)
            lines.append(f"  {smoothing}, foot lock {'on' if lock else 'off'}: 30 fps solve "
                         f"{own.follow_median_mm:.1f} mm / {100 * own.jitter_reduction:.1f}%; 60 fps solve every "
                         f"other frame {follow:.1f} mm / {100 * reduction:.1f}%")  # fmt: skip
    return lines


if __name__ == "__main__":
    sys.exit(main())
