"""The rendered test clips' camera solved once per suite and cached (test helper): the camera solve is the heavy
part of the moving-camera tests (about half a minute for 150 frames on 2 cores), and the engine tier's figures
and checks all read the same solved take.

The cache key covers the rendered case (its folder name is its own key) and the source of every module of the
camera solve, so a change to the solver solves again."""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from instanthmr_blender.take import Take, load_take, save_take
from testkit.handheld_clip import DEFAULT_CACHE, HandheldCase, rendered_case

CAMERA_PACKAGE = Path(__file__).resolve().parents[1] / "instanthmr_blender" / "camera"


def _key(case: HandheldCase) -> str:
    digest = hashlib.sha256(case.clip.parent.name.encode())
    for source in sorted(CAMERA_PACKAGE.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def solved_take(kind: str, cache_root: Path | None = None) -> tuple[HandheldCase, Take]:
    """(the rendered case, its take with the camera path solved from its clip), from the cache when there."""
    from instanthmr_blender.camera.colmap_solve import solve_camera

    case = rendered_case(kind)
    root = Path(cache_root) if cache_root is not None else DEFAULT_CACHE.parent / "camera-solve"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{kind}-{_key(case)}.take.npz"
    if target.is_file():
        return case, load_take(target)
    with open(root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return case, load_take(target)
        take = load_take(case.take)
        with tempfile.TemporaryDirectory(prefix=f"solve-{kind}-") as work:
            take.camera_path = solve_camera(case.clip, take, work_dir=work)
        staging = root / f".{target.name}.{os.getpid()}.npz"
        save_take(take, staging)
        os.replace(staging, target)
        for stale in root.glob(f"{kind}-*.take.npz"):  # solved by an earlier solver
            if stale != target:
                stale.unlink(missing_ok=True)
    return case, load_take(target)
