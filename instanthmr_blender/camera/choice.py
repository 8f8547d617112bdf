"""The camera-motion choice, the one path the command line and the panel share: `auto` (decide from the
background, then solve when it moves), `static` (a still camera, as before the camera solve existed) or
`solve` (always solve), and a path the user already has (a scene camera) taking precedence over all three."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .colmap_solve import CameraSolveError, SolveSettings, pycolmap_problem, solve_camera
from .motion import decide_motion
from .path import CameraPath, CameraPathError

#: The choices, as the command line spells them; the panel shows them as automatic / still / moving.
MODES = ("auto", "static", "solve")


def check_mode(mode: str) -> None:
    """Raise CameraSolveError (one line) when `mode` cannot work here: an unknown mode, or `solve` where
    pycolmap cannot load (checked before any model runs)."""
    if mode not in MODES:
        raise CameraSolveError(f"camera motion must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "solve":
        problem = pycolmap_problem()
        if problem:
            raise CameraSolveError(problem)


def camera_for_take(
    mode: str,
    source_path: str | os.PathLike | None,
    take,
    *,
    work_dir: str | os.PathLike,
    log: Callable[[str], None] = lambda line: None,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: threading.Event | None = None,
    settings: SolveSettings | None = None,
) -> CameraPath | None:
    """The camera path for `take`, or None for a still camera. A take that already has a path keeps it (a
    rebuild never solves again) unless `mode` is static. `auto` measures the background's motion (people
    masked) and solves only when it moves; without the clip it keeps the camera still and says so. Every
    decision is logged as one line. Raises CameraSolveError (one line) when a solve is needed and fails."""
    check_mode(mode)
    if mode == "static":
        return None
    existing = getattr(take, "camera_path", None)
    if existing is not None:
        log(f"camera: the take already holds its camera path ({existing.method}, "
            f"{int(existing.registered.sum())} of {existing.num_frames} frames placed): not solved again")
        return existing
    source = os.fspath(source_path) if source_path else None
    if source is None or not (Path(source).exists() or "%" in Path(source).name):
        if mode == "solve":
            raise CameraSolveError("the camera's motion is solved from the video, but the take's clip was not "
                                   "found: give the clip too (capture.py CLIP --take TAKE.npz)")
        log("camera: no clip to measure the background's motion from: the camera is taken as still")
        return None
    decision = None
    if mode == "auto":
        decision = decide_motion(source, take, fps=float(take.fps), cancel=cancel)
        log(f"camera: {decision.reason}")
        if not decision.moving:
            return None
        problem = pycolmap_problem()
        if problem:
            raise CameraSolveError(f"the camera moves in `{Path(source).name}`, but {problem}")
    path = solve_camera(source, take, work_dir=work_dir, settings=settings, progress=progress, cancel=cancel)
    if decision is not None:
        path.info["decision"] = decision.as_info()
    log(f"camera: solved ({path.method}): {int(path.registered.sum())} of {path.num_frames} frames placed")
    return path


def path_from_matrices(matrices: np.ndarray, *, source: str) -> CameraPath:
    """A CameraPath from a scene camera's world matrices (F, 4, 4), Blender's camera axes (looking down -Z, +Y
    up), any object scale removed. Raises CameraPathError when the camera never moves (no animation)."""
    matrices = np.asarray(matrices, dtype=np.float64)
    if matrices.ndim != 3 or matrices.shape[1:] != (4, 4) or len(matrices) == 0:
        raise CameraPathError(f"the camera {source} gave no per-frame matrices")
    axes = matrices[:, :3, :3]
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    rotation = axes @ np.diag([1.0, -1.0, -1.0])  # Blender camera axes -> OpenCV camera axes
    center = matrices[:, :3, 3]
    if len(matrices) > 1 and np.ptp(center, axis=0).max() < 1e-9 and np.ptp(rotation, axis=0).max() < 1e-9:
        raise CameraPathError(f"the camera {source} does not move over the take's frames (no animation): solve "
                              "or track it first, or use --camera-motion static")
    path = CameraPath(rotation=rotation, center=center, registered=np.ones(len(matrices), bool),
                      method="scene-camera", info={"source": source})  # fmt: skip
    path.validate()
    return path
