"""The camera's path through the world over a take: one pose per take column, how it was obtained, and the
background points it was solved from.

Conventions: `rotation[i]` is world-from-camera (3, 3) with the camera's OpenCV axes (x right, y down, z
forward), `center[i]` the camera centre in the path's world, so a camera-space point X is at
`rotation[i] @ X + center[i]`. The path's world has the solver's arbitrary scale and orientation (COLMAP's,
or a Blender scene's); the solve (solve/world.py) finds the metric scale and gravity from the people and the
ground.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

#: How a path was obtained.
METHODS = ("colmap-incremental", "colmap-global", "rotation-only", "scene-camera")


class CameraPathError(ValueError):
    """A camera path that is malformed or does not fit its take; the message names what is wrong."""


@dataclass
class CameraPath:
    """rotation: (F, 3, 3) float64 world-from-camera; center: (F, 3) float64; registered: (F,) bool, False where
    the pose was filled by interpolation between registered frames; points: (N, 3) float64 background points in
    the path's world (may be empty); method: one of METHODS; info: JSON-ready figures and notes (the solver's
    stages, times, registered count, the decision that chose a moving camera)."""

    rotation: np.ndarray
    center: np.ndarray
    registered: np.ndarray
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    method: str = "colmap-incremental"
    info: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.rotation.shape[0])

    def validate(self, num_frames: int | None = None) -> None:
        """Raise CameraPathError naming the first thing wrong (shapes, finiteness, rotations, method)."""
        frames = self.num_frames
        if num_frames is not None and frames != num_frames:
            raise CameraPathError(f"the camera path has {frames} poses but the take has {num_frames} frames")
        checks = (("rotation", self.rotation, (frames, 3, 3)), ("center", self.center, (frames, 3)),
                  ("registered", self.registered, (frames,)))  # fmt: skip
        for name, value, shape in checks:
            if not isinstance(value, np.ndarray) or value.shape != shape:
                raise CameraPathError(f"camera path field `{name}` must have shape {shape}")
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise CameraPathError("camera path field `points` must have shape (N, 3)")
        if not (np.isfinite(self.rotation).all() and np.isfinite(self.center).all()):
            raise CameraPathError("the camera path has poses that are not finite numbers")
        if frames and not np.allclose(self.rotation @ np.swapaxes(self.rotation, 1, 2), np.eye(3), atol=1e-4):
            raise CameraPathError("the camera path's rotations are not rotation matrices")
        if not self.registered.any():
            raise CameraPathError("the camera path has no registered frame")
        if self.method not in METHODS:
            raise CameraPathError(f"camera path method must be one of {', '.join(METHODS)}, got {self.method!r}")
        try:
            json.dumps(self.info)
        except (TypeError, ValueError) as error:
            raise CameraPathError(f"camera path `info` must hold only text and numbers ({error})") from None

    def matrices(self) -> np.ndarray:
        """(F, 4, 4) world-from-camera matrices (OpenCV camera axes)."""
        out = np.tile(np.eye(4), (self.num_frames, 1, 1))
        out[:, :3, :3] = self.rotation
        out[:, :3, 3] = self.center
        return out

    def registered_fraction(self) -> float:
        return float(np.mean(self.registered)) if self.num_frames else 0.0


def quaternions_from_matrices(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (w, x, y, z), w >= 0."""
    r = np.asarray(rotation, dtype=np.float64)
    m00, m11, m22 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    quats = np.stack([
        np.sqrt(np.maximum(0.0, 1 + m00 + m11 + m22)) / 2,
        np.sqrt(np.maximum(0.0, 1 + m00 - m11 - m22)) / 2,
        np.sqrt(np.maximum(0.0, 1 - m00 + m11 - m22)) / 2,
        np.sqrt(np.maximum(0.0, 1 - m00 - m11 + m22)) / 2,
    ], axis=-1)  # fmt: skip
    quats[..., 1] = np.copysign(quats[..., 1], r[..., 2, 1] - r[..., 1, 2])
    quats[..., 2] = np.copysign(quats[..., 2], r[..., 0, 2] - r[..., 2, 0])
    quats[..., 3] = np.copysign(quats[..., 3], r[..., 1, 0] - r[..., 0, 1])
    return quats / np.linalg.norm(quats, axis=-1, keepdims=True)


def matrices_from_quaternions(quats: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z) -> (..., 3, 3) rotation matrices."""
    q = np.asarray(quats, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
    ], axis=-2)  # fmt: skip


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    if np.dot(a, b) < 0:
        b = -b
    angle = math.acos(min(1.0, float(np.dot(a, b))))
    if angle < 1e-8:
        return a
    return (math.sin((1 - t) * angle) * a + math.sin(t * angle) * b) / math.sin(angle)


def fill_unregistered(
    rotation: np.ndarray, center: np.ndarray, registered: np.ndarray, frames: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Poses for the frames that are not registered: rotations slerped and centres interpolated linearly
    between the registered neighbours (by source frame index when `frames` is given), held at the ends.
    Returns new (rotation, center); registered rows are unchanged. Needs at least one registered frame."""
    registered = np.asarray(registered, dtype=bool)
    if not registered.any():
        raise CameraPathError("the camera path has no registered frame to interpolate from")
    rotation = np.array(rotation, dtype=np.float64)
    center = np.array(center, dtype=np.float64)
    index = np.arange(len(registered), dtype=np.float64) if frames is None else np.asarray(frames, np.float64)
    known = np.flatnonzero(registered)
    quats = quaternions_from_matrices(rotation[known])
    for row in np.flatnonzero(~registered):
        after = np.searchsorted(known, row)
        if after == 0 or after == len(known):
            nearest = known[0] if after == 0 else known[-1]
            rotation[row], center[row] = rotation[nearest], center[nearest]
            continue
        lo, hi = known[after - 1], known[after]
        t = (index[row] - index[lo]) / (index[hi] - index[lo])
        rotation[row] = matrices_from_quaternions(_slerp(quats[after - 1], quats[after], t))
        center[row] = (1 - t) * center[lo] + t * center[hi]
    return rotation, center
