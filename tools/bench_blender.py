"""Benchmark the Blender side: how long the capture pump blocks the UI, how long the final bake takes, and
bulk key writing against per-frame keyframe_insert. Prints Markdown tables.

    .venv/bin/python tools/bench_blender.py [--clip PATH] [--frames N]

Runs in the dev venv (Blender 4.5 as the bpy module), registering the extension from this checkout the way
capture.py does, with contract-shaped stand-in models (testkit/contract_models.py): the pump and bake figures do
not depend on the networks.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Everything this benchmark writes (user resources with the installed wheels, models, take); removed at the end,
# since the process leaves with os._exit (bpy's exit hang) and skips every other cleanup.
SCRATCH = Path(tempfile.mkdtemp(prefix="instanthmr-bench-"))
FIXTURES = ROOT.parent / "shared" / "fixtures"


def enable_addon():
    os.environ.setdefault("BLENDER_USER_RESOURCES", str(SCRATCH / "blender-user"))
    import importlib.util

    import bpy  # noqa: F401  (Blender first: addon_utils lives in its scripts)

    spec = importlib.util.spec_from_file_location("instanthmr_capture_entry", ROOT / "capture.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    return entry._enable_addon()


def bench_pump(addon, clip: Path, frames: int, models: Path) -> None:
    import bpy

    capture_ops = sys.modules[addon.__name__ + ".operators.capture"]
    prefs = bpy.context.preferences.addons[addon.__name__].preferences
    prefs.model_folder = str(models)
    settings = bpy.context.scene.instanthmr
    settings.clip, settings.frame_end = str(clip), frames
    settings.take_path = str(SCRATCH / "bench.take.npz")
    capture_ops.start_capture(bpy.context)
    ticks, finish = [], None
    while True:
        start = time.perf_counter()
        state, message = capture_ops.pump(bpy.context)
        elapsed = time.perf_counter() - start
        if state != "RUNNING":
            finish = elapsed
            break
        ticks.append(elapsed)
        time.sleep(0.1)  # the modal timer's period
    print(f"### Capture pump ({clip.name}, {frames} frames, {state.lower()})\n")
    print("| what | ms |\n|---|---|")
    print(f"| pump tick while the worker runs, median ({len(ticks)} ticks) | {statistics.median(ticks) * 1e3:.2f} |")
    print(f"| pump tick while the worker runs, max | {max(ticks) * 1e3:.2f} |")
    print(f"| final main-thread step: build the scene (the worker saved and solved the take) | {finish * 1e3:.0f} |\n")


def bench_keys(bones: int = 30, frames: int = 1800) -> None:
    import bpy
    import numpy as np

    scene_actions = sys.modules[[m for m in sys.modules if m.endswith(".scene.actions")][0]]
    data = bpy.data.armatures.new("bench")
    obj = bpy.data.objects.new("bench", data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    for index in range(bones):
        bone = data.edit_bones.new(f"b{index}")
        bone.head, bone.tail = (0, 0, index * 0.1), (0, 0, index * 0.1 + 0.1)
    bpy.ops.object.mode_set(mode="OBJECT")
    rng = np.random.default_rng(0)
    quats = rng.normal(size=(frames, bones, 4)).astype(np.float32)
    scene_frames = np.arange(1, frames + 1)

    start = time.perf_counter()
    writer = scene_actions.new_action(obj, "bulk")
    for index in range(bones):
        writer.write(f'pose.bones["b{index}"].rotation_quaternion', f"b{index}", scene_frames, quats[:, index])
    bulk = time.perf_counter() - start

    obj.animation_data.action = None
    subset = 120  # keyframe_insert is slow: time a slice and scale it
    start = time.perf_counter()
    for frame in range(1, subset + 1):
        for index in range(bones):
            pose_bone = obj.pose.bones[f"b{index}"]
            pose_bone.rotation_quaternion = quats[frame - 1, index]
            pose_bone.keyframe_insert("rotation_quaternion", frame=frame)
    per_frame = (time.perf_counter() - start) * frames / subset
    print(f"### Writing keys ({bones} bones x 4 quaternion channels x {frames} frames)\n")
    print("| method | seconds |\n|---|---|")
    print(f"| `keyframe_points.add` + `foreach_set` (what the add-on does) | {bulk:.3f} |")
    print(f"| `keyframe_insert` per bone per frame (extrapolated from {subset} frames) | {per_frame:.1f} |\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=FIXTURES / "video" / "two_people_walking.mp4")
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    addon = enable_addon()
    # testkit, reached from the checkout once the add-on is registered (before, this folder's packages would
    # shadow real modules: see capture.py)
    sys.path.append(str(ROOT))
    import bpy

    from testkit.model_folder import make_models

    models = make_models(SCRATCH / "models")
    print(f"Blender {bpy.app.version_string}, {os.cpu_count()} CPUs\n")
    bench_pump(addon, args.clip, args.frames, models)
    bench_keys()
    return 0


if __name__ == "__main__":
    try:
        status = main()
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    sys.stdout.flush()
    os._exit(status)
