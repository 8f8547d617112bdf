#!/usr/bin/env python3
"""Benchmark live capture: the fixture videos served as MJPEG over loopback HTTP at 30 fps (a network camera),
captured live (newest frame -> detector -> InstantHMR -> tracking -> causal One-Euro -> per-frame solve).

Prints a Markdown table: the live pose rate, the rate frames go through the models, the share of frames dropped,
the end-to-end latency (frame arrival -> solved pose ready, mean and 95th percentile; and -> taken by a consumer
polling at 60 Hz like the Blender timer) and the per-stage
milliseconds. The networks are the contract-shaped stand-ins of `testkit/contract_models.py` (constant outputs,
almost no compute), so the figures measure everything around the networks. `--simulate-ms DET HMR` adds that many
milliseconds per detector run / per InstantHMR frame (a sleep, which releases the GIL as ONNX Runtime does), to see
how the live pipeline behaves with the real networks' cost: an estimate from given stage costs, not a measurement
of the real networks. The server runs in this process (its pre-encoded frames cost little to send).

`--solve fast reference` runs every row twice: with live's one-frame fast path (`solve/frame_solve.py`) and with
the reference it replaces (the offline `solve_pose` on a one-frame clip, what live ran before), so the two compare
under the same load. The per-frame solve costs are also measured alone, both interleaved frame by frame.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # the engine and testkit as top-level packages

from instanthmr_blender.capture import live as live_module  # noqa: E402
from instanthmr_blender.capture.live import LiveCapture, LivePersonSolver, LiveSettings  # noqa: E402
from instanthmr_blender.capture.offline import CaptureSettings, build_models  # noqa: E402
from instanthmr_blender.solve import build_rest, ground, solve_pose  # noqa: E402
from instanthmr_blender.solve.frame_solve import FramePoseSolver  # noqa: E402
from testkit.contract_models import (  # noqa: E402
    DetectorBox,
    build_instanthmr_model,
    build_rfdetr_model,
    load_sample_pose,
)
from testkit.mjpeg_server import MjpegServer, encode_video  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model  # noqa: E402

DEFAULT_FIXTURES = Path(os.environ.get("INSTANTHMR_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))
CLIPS = ("two_people_walking.mp4", "one_person_lab.mp4", "pedestrians.avi")
STAND_IN_PEOPLE = (DetectorBox(0.35, 0.55, 0.12, 0.55, logit=3.0), DetectorBox(0.70, 0.55, 0.12, 0.55, logit=2.0))


class Delayed:
    """A model that takes `milliseconds` longer per call (detector) or per frame (InstantHMR)."""

    def __init__(self, inner, milliseconds: float, method: str) -> None:
        self.inner, self.seconds, self.method = inner, milliseconds / 1000.0, method

    def __getattr__(self, name):  # the camera, the graph, the confidence: the wrapped model's
        return getattr(self.inner, name)

    def detect(self, frames_rgb):
        time.sleep(self.seconds)
        return self.inner.detect(frames_rgb)

    def predict(self, frame_rgb, boxes):
        time.sleep(self.seconds)
        return self.inner.predict(frame_rgb, boxes)


class ReferenceFrameSolver(FramePoseSolver):
    """What live solved each frame with before the fast path: the offline solve_pose on a one-frame clip."""

    def solve(self, keypoints_world):
        quats, root, keyed, root_keyed = solve_pose(self.rest, keypoints_world[None], self.spine_lengths, 0, 30.0)
        return quats[0], root[0], keyed[0], bool(root_keyed[0])


SOLVERS = {"fast": FramePoseSolver, "reference": ReferenceFrameSolver}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", nargs="+", default=list(CLIPS), help="fixture clips (default: all three)")
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--serve-fps", type=float, default=30.0, help="rate the clips are served at (default 30)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run (default 8)")
    parser.add_argument("--frames", type=int, default=240, help="at most this many frames of each clip, looped")
    parser.add_argument("--stride", type=int, nargs="+", default=[1, 3], help="detector strides (default 1 3)")
    parser.add_argument("--people", type=int, default=1, choices=(1, 2), help="people the stand-in detector sees")
    parser.add_argument("--simulate-ms", type=float, nargs=2, default=(0.0, 0.0), metavar=("DET", "HMR"),
                        help="extra milliseconds per detector run and per InstantHMR frame (default 0 0)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per model (default 1)")
    parser.add_argument("--solve", nargs="+", choices=tuple(SOLVERS), default=["fast", "reference"],
                        help="live per-frame solves to run every row with (default: both, fast first)")
    parser.add_argument("--solve-frames", type=int, default=60, help="frames for the solve-alone figures")
    return parser.parse_args(argv)


def run_one(args, clip: Path, stride: int, folder: Path, served, solve: str) -> dict:
    frames, _, size = served
    detector_file = build_rfdetr_model(folder / "rfdetr.onnx", resolution=384, boxes=STAND_IN_PEOPLE[: args.people])
    hmr_file = build_instanthmr_model(folder / f"hmr_{size[0]}x{size[1]}.onnx", image_size=size)
    models = CaptureSettings(source="", detector_model=str(detector_file), hmr_model=str(hmr_file), device="cpu",
                             threads=args.threads, detector_stride=stride, max_persons=args.people)
    detector, hmr = build_models(models)
    if args.simulate_ms[0]:
        detector = Delayed(detector, args.simulate_ms[0], "detect")
    if args.simulate_ms[1]:
        hmr = Delayed(hmr, args.simulate_ms[1], "predict")
    live_module.FramePoseSolver = SOLVERS[solve]  # the live person solver's per-frame solve for this run
    with MjpegServer(frames, args.serve_fps, lifetime=args.seconds + 30) as server:
        live = LiveCapture(LiveSettings(server.url, models, timeout=5.0), detector=detector, hmr=hmr).start()
        latencies, applied, seen = [], [], -1
        try:
            time.sleep(1.5)  # warm-up: models' first runs, calibration of the rig
            first = live.stats()
            began = time.monotonic()
            while time.monotonic() - began < args.seconds and live.running:
                # a consumer like Blender's 60 Hz timer: take the newest pose, "apply" it
                pose = live.latest()
                if pose is not None and pose.sequence != seen:
                    seen = pose.sequence
                    latencies.append(pose.ready_time - pose.grab_time)
                    applied.append(time.monotonic() - pose.grab_time)
                time.sleep(1.0 / 60.0)
            elapsed = time.monotonic() - began
            last = live.stats()
        finally:
            live.stop()
            live_module.FramePoseSolver = FramePoseSolver
    if live.error:
        raise SystemExit(f"bench_live: error: {clip.name}: {live.error}")
    grabbed = last.grabbed - first.grabbed
    dropped = last.dropped - first.dropped
    return {
        "clip": clip.name, "size": f"{size[1]}x{size[0]}", "stride": stride, "live_solve": solve,
        "source_fps": grabbed / elapsed, "pose_fps": (last.posed - first.posed) / elapsed,
        "model_fps": (last.processed - first.processed) / elapsed,
        "dropped": 100.0 * dropped / max(grabbed, 1),
        "latency": 1000 * float(np.mean(latencies)), "latency95": 1000 * float(np.percentile(latencies, 95)),
        "applied": 1000 * float(np.mean(applied)),
        "decode": last.decode_ms, "detector": last.detector_ms, "hmr": last.hmr_ms, "solve": last.solve_ms,
    }


def solve_alone(frames: int) -> dict:
    """Per-frame solve costs on this thread, ms (median over `frames` frames of the SAM 3D Body sample pose, all 70
    keypoints, with 1 cm noise so no two frames are alike), the three one-frame solves interleaved frame by frame
    so load changes hit them alike: the reference (solve_pose on one frame), the fast path, and the whole live
    update (camera to world, One-Euro "medium", fast path, hold of unseen bones); plus solve_pose per frame of a
    30-frame clip (offline)."""
    rng = np.random.default_rng(0)
    joints = (load_sample_pose().joints_3d + np.array([0.0, 0.0, 3.0]))[None] + rng.normal(0, 0.01, (frames, 70, 3))
    camera = ground.estimate_floor(joints[None], mode="none").camera_matrix_world
    world = ground.camera_to_world(joints, camera)
    rest, spine = build_rest(world, 30.0)
    reference, fast = ReferenceFrameSolver(rest, spine["spine_lengths"]), FramePoseSolver(rest, spine["spine_lengths"])
    person = LivePersonSolver(LiveSettings("0", CaptureSettings(source=""), calibration_frames=1), lambda _: camera)
    person.update(joints[0], 0.0)  # calibrates on the first frame
    times: dict[str, list[float]] = {"reference": [], "fast": [], "live update": []}
    for index in range(frames):
        for name, call, arguments in (("reference", reference.solve, (world[index],)),
                                      ("fast", fast.solve, (world[index],)),
                                      ("live update", person.update, (joints[index], (index + 1) / 30.0))):
            began = time.perf_counter()
            call(*arguments)
            times[name].append(time.perf_counter() - began)
    batch = []
    for _ in range(3):
        began = time.perf_counter()
        solve_pose(rest, world[:30], spine["spine_lengths"], 0, 30.0)
        batch.append(time.perf_counter() - began)
    costs = {name: 1000 * float(np.median(values)) for name, values in times.items()}
    costs["offline per frame of 30"] = 1000 * min(batch) / 30
    return costs


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"bench_live: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; served at "
          f"{args.serve_fps:g} fps for {args.seconds:g} s per run; stand-in models"
          + (f" + {args.simulate_ms[0]:g} ms per detector run, {args.simulate_ms[1]:g} ms per HMR frame (simulated)"
             if any(args.simulate_ms) else ""), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-live-") as folder:
        for name in args.clip:
            clip = args.fixtures / "video" / name
            served = encode_video(clip, max_frames=args.frames)
            for stride in args.stride:
                for solve in args.solve:
                    rows.append(run_one(args, clip, stride, Path(folder), served, solve))
                    print(f"  {rows[-1]['clip']} stride {stride} {solve}: done", file=sys.stderr, flush=True)
    print()
    costs = solve_alone(args.solve_frames)
    print(f"per-frame solve alone (no other thread, median of {args.solve_frames} interleaved frames): "
          + ", ".join(f"{name} {ms:.2f} ms" for name, ms in costs.items())
          + f"; reference / fast = {costs['reference'] / costs['fast']:.0f}x")
    print()
    print("| clip | size | detector stride | live solve | source fps | live pose fps | frames through the models / s "
          "| dropped | latency mean / p95 ms | applied at 60 Hz, mean ms | decode ms | detector ms "
          "| HMR + tracking ms | solve ms |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['clip']} | {r['size']} | {r['stride']} | {r['live_solve']} | {r['source_fps']:.1f} | "
              f"{r['pose_fps']:.1f} | "
              f"{r['model_fps']:.1f} | {r['dropped']:.0f}% | {r['latency']:.0f} / {r['latency95']:.0f} | "
              f"{r['applied']:.0f} | "
              f"{r['decode']:.1f} | {r['detector']:.1f} | {r['hmr']:.1f} | {r['solve']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
