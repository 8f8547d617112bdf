"""Benchmark the optional body-mesh data path: a minute of video (1800 frames at 30 fps) of one person through
a TorchScript module with MHR's vertex and face counts into a PC2 point cache, in-process and in a separate
Python worker. Prints a Markdown table.

    .venv/bin/python tools/bench_mesh.py [--frames 1800]

The module is the test stand-in (testkit/mhr_stub.py: template + translation, no skinning), so the figures cover
everything around Meta's module (parameters, transfer, units and axes, world transform, cache writing), not its
own compute.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the engine and testkit

VERTICES, FACES = 18439, 36874  # MHR LOD1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1800)
    args = parser.parse_args()

    from instanthmr_blender.take import Take
    from testkit import mhr_stub

    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="instanthmr-bench-mesh-"))
    template = rng.normal(scale=50, size=(1, VERTICES, 3)).astype(np.float32)
    faces = rng.integers(0, VERTICES, size=(FACES, 3)).astype(np.int32)
    identities = rng.normal(size=(1, 45)).astype(np.float32)
    stub = mhr_stub.build_stub(folder / "mhr_model.pt", template, identities, faces, pose_gain=1.0)
    frames = args.frames
    take = Take.empty(1, np.arange(frames), fps=30.0, image_size=(1080, 1920), focal_length=2203.0,
                      principal_point=(960.0, 540.0))
    take.valid[0] = True
    take.cam_trans[0] = np.stack([np.linspace(-1, 1, frames), np.zeros(frames), np.full(frames, 5.0)], 1)
    take.mhr_params[0] = rng.normal(size=(frames, 204)).astype(np.float32)
    take.shape_params[0] = identities[0]

    try:
        run(folder, stub, take, frames)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the caches are ~0.4 GB each
    return 0


def run(folder: Path, stub: Path, take, frames: int) -> None:
    from instanthmr_blender import mesh

    print(f"{os.cpu_count()} CPUs, {frames} frames x {VERTICES} vertices, one person\n")
    print("| runner | open (s) | frames -> PC2 (s) | ms per frame | cache size (MB) |")
    print("|---|---:|---:|---:|---:|")
    for label, python in (("in-process", None), ("separate Python (worker)", sys.executable)):
        start = time.perf_counter()
        with mesh.open_runner(stub, python=python) as runner:
            opened = time.perf_counter()
            cache = mesh.write_person_cache(runner, take, 0, np.eye(4), folder / f"{len(label)}.pc2", frame_offset=1)
        done = time.perf_counter()
        print(f"| {label} | {opened - start:.2f} | {done - opened:.2f} | {(done - opened) / frames * 1e3:.2f} | "
              f"{cache.path.stat().st_size / 1e6:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
