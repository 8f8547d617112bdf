#!/usr/bin/env python3
"""Benchmark the camera solve (a moving camera's path from the video's background, pycolmap) on the rendered
handheld test clip (testkit/handheld_clip.py: 150 frames, 640x360, a known camera).

Prints Markdown tables: the still/moving decision's time; the whole solve and its stages for 50, 100 and 150 frames
of the clip, then for longer clips made by playing it forward and back (300 and 600 frames: the camera retraces
its path, the background is the same, the work is real); the solve at a smaller working resolution; and the
accuracy against the known camera. Each row is one run (`--repeat N` for more), on this machine, one after the
other.
    .venv/bin/python tools/bench_camera.py [--lengths 50 100 150 300 600] [--repeat 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from instanthmr_blender.camera.colmap_solve import SolveSettings, solve_camera  # noqa: E402
from instanthmr_blender.camera.motion import decide_motion  # noqa: E402
from instanthmr_blender.take import Take, load_take  # noqa: E402
from testkit import world_figures  # noqa: E402
from testkit.handheld_clip import rendered_case  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model, describe_load  # noqa: E402

_PER_FRAME = ("valid", "score", "bbox", "joints_cam", "cam_trans", "joints_2d", "mhr_params", "shape_params")


def ping_pong(clip: Path, take: Take, truth: np.ndarray, frames: int, folder: Path,
              long_side: int | None = None) -> tuple[Path, Take, np.ndarray]:
    """A clip of `frames` frames playing the rendered clip forward, back, forward...; its take and true cameras.
    long_side: the frames enlarged to that long side (the take's pixels and intrinsics with them), to time the
    solve on a phone-sized input (the solver works at up to 960 px)."""
    reader = cv2.VideoCapture(str(clip))
    images = []
    while True:
        ok, image = reader.read()
        if not ok:
            break
        images.append(image)
    reader.release()
    cycle = list(range(len(images))) + list(range(len(images) - 2, 0, -1))
    order = np.array([cycle[i % len(cycle)] for i in range(frames)])
    path = folder / f"pingpong-{frames}-{long_side or 'native'}.mp4"
    height, width = images[0].shape[:2]
    factor = 1.0 if long_side is None else long_side / max(width, height)
    size = (round(width * factor), round(height * factor))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), take.fps, size)
    for index in order:
        writer.write(images[index] if factor == 1.0 else cv2.resize(images[index], size, interpolation=cv2.INTER_CUBIC))
    writer.release()
    out = copy.copy(take)
    out.frames = np.arange(frames, dtype=np.int64)
    for name in _PER_FRAME:
        setattr(out, name, getattr(take, name)[:, order])
    out.source = str(path)
    if factor != 1.0:
        out.image_size = (size[1], size[0])
        out.focal_length = take.focal_length * factor
        out.principal_point = (take.principal_point[0] * factor, take.principal_point[1] * factor)
        out.bbox = take.bbox[:, order] * factor
        out.joints_2d = take.joints_2d[:, order] * factor
    return path, out, truth[order]


def first_columns(take: Take, count: int) -> Take:
    out = copy.copy(take)
    out.frames = take.frames[:count]
    for name in _PER_FRAME:
        setattr(out, name, getattr(take, name)[:, :count])
    return out


def solve_row(label: str, clip: Path, take: Take, truth_cameras: np.ndarray, settings: SolveSettings,
              repeat: int) -> dict:
    times, path = [], None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-camera-") as work:
            started = time.perf_counter()
            path = solve_camera(clip, take, work_dir=work, settings=settings)
            times.append(time.perf_counter() - started)
    stages = path.info.get("stage_seconds", {})
    centres, rotations = path.center, path.rotation
    if path.method == "rotation-only":
        error = float("nan")
    else:
        error = world_figures.camera_path_error(centres, truth_cameras[:, :3, 3])
    return {
        "label": label, "frames": take.num_frames, "seconds": statistics.median(times),
        "per_100": 100 * statistics.median(times) / take.num_frames, "method": path.method,
        "registered": float(path.registered.mean()), "stages": stages,
        "path_error": error,
        "rotation_error": world_figures.rotation_error_degrees(rotations, truth_cameras[:, :3, :3]),
        "sampled": path.info.get("sampled_frames"), "step": path.info.get("sampled_step"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 150, 300, 600])
    parser.add_argument("--small-side", type=int, default=320, help="the smaller working resolution (long side)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--input-long-side", type=int, default=None,
                        help="also solve the longest clip enlarged to this long side (e.g. 1920: a 1080p phone clip)")
    args = parser.parse_args(argv)

    case = rendered_case("handheld")
    take = load_take(case.take)
    truth = np.load(case.truth)["camera_world"]
    print(f"Machine: {cpu_model()}, load {describe_load()}; clip {case.clip.name} 640x360, "
          f"{take.num_frames} frames\n")

    started = time.perf_counter()
    decision = decide_motion(case.clip, take, fps=take.fps)
    print(f"Still/moving decision: {time.perf_counter() - started:.2f} s ({decision.reason})\n")

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-camera-clips-") as folder:
        for length in args.lengths:
            if length <= take.num_frames:
                rows.append(solve_row(f"first {length} frames", case.clip, first_columns(take, length),
                                      truth[:length], SolveSettings(), args.repeat))  # fmt: skip
            else:
                clip, longer, cameras = ping_pong(case.clip, take, truth, length, Path(folder))
                rows.append(solve_row(f"{length} frames (forward and back)", clip, longer, cameras, SolveSettings(),
                                      args.repeat))  # fmt: skip
        if args.input_long_side:
            length = max(args.lengths)
            clip, longer, cameras = ping_pong(case.clip, take, truth, length, Path(folder), args.input_long_side)
            rows.append(solve_row(f"{length} frames enlarged to {args.input_long_side} px", clip, longer, cameras,
                                  SolveSettings(), args.repeat))  # fmt: skip
        rows.append(solve_row(f"150 frames at {args.small_side} px", case.clip, take, truth,
                              SolveSettings(long_side=args.small_side), args.repeat))  # fmt: skip

    stage_names = []
    for row in rows:
        stage_names += [name for name in row["stages"] if name not in stage_names]
    print("| clip | frames | sampled (step) | solve | per 100 frames | placed from the images | path error | "
          "rotation error | " + " | ".join(stage_names) + " |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(stage_names))
    for row in rows:
        stages = " | ".join(f"{row['stages'].get(name, 0.0):.1f} s" for name in stage_names)
        print(f"| {row['label']} | {row['frames']} | {row['sampled']} ({row['step']}) | {row['seconds']:.1f} s | "
              f"{row['per_100']:.1f} s | {100 * row['registered']:.0f}% | {100 * row['path_error']:.2f}% | "
              f"{row['rotation_error']:.3f} deg | {stages} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
