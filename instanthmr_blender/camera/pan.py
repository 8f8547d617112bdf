"""A camera that turns but does not travel (a tripod pan, a phone swung from one spot): no baseline, so the
structure-from-motion mappers fail (or return noise) and the path is solved as rotation only.

Background corners (people masked) are tracked between sampled frames i and i + k for k in `gaps`; each pair
gives a relative rotation, fitted to the corners' viewing rays (RANSAC on a homography for the inliers, then
the least-squares rotation between the rays, i.e. K^-1 H K made exactly orthonormal). The first frame's camera
is the world; rotations are chained along neighbouring pairs and then averaged over all pairs (the wider
gaps hold the drift down).

`pan_test` says whether a clip is a pan: the rotation-only model's residual over every tracked corner between
frames several samples apart (parallax makes it grow when the camera travels). Figures are in pixels of a
frame with a 960 px long side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .motion import REFERENCE_LONG_SIDE, track_background
from .path import CameraPath, fill_unregistered

#: Tracked corners a frame pair needs before its rotation is trusted.
MIN_PAIR_POINTS = 30


@dataclass
class PanTest:
    """is_pan: a rotation alone explains the background's motion; residual_px: the median rotation-only residual
    over the tested pairs; shift_px: their median background shift (both at a 960 px long side); pairs: pairs
    tested; gap: sampled frames between the two frames of a tested pair."""

    is_pan: bool
    residual_px: float
    shift_px: float
    pairs: int
    gap: int

    def as_info(self) -> dict:
        return {"is_pan": self.is_pan, "residual_px": round(self.residual_px, 3),
                "shift_px": round(self.shift_px, 3), "pairs": self.pairs, "gap": self.gap}  # fmt: skip


def _rays(points: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    homogeneous = np.column_stack([points, np.ones(len(points))]) @ np.linalg.inv(intrinsics).T
    return homogeneous / np.linalg.norm(homogeneous, axis=1, keepdims=True)


def _best_rotation(rays_a: np.ndarray, rays_b: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The rotation Q minimising sum |b - Q a|^2 (Kabsch)."""
    w = np.ones(len(rays_a)) if weights is None else weights
    u, _, vt = np.linalg.svd((rays_b * w[:, None]).T @ rays_a)
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt


def _project(rays: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    pixels = rays @ intrinsics.T
    return pixels[:, :2] / np.maximum(pixels[:, 2:3], 1e-9)


def relative_rotation(points_a: np.ndarray, points_b: np.ndarray, intrinsics: np.ndarray,
                      inlier_px: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The rotation Q with ray_b = Q ray_a for tracked points of two frames of a camera that only turns, or None
    when too few points agree. Returns (Q, residual px per point, inlier mask)."""
    if len(points_a) < MIN_PAIR_POINTS:
        return None
    _, inliers = cv2.findHomography(points_a, points_b, cv2.RANSAC, inlier_px)
    if inliers is None or inliers.sum() < MIN_PAIR_POINTS // 2:
        return None
    inliers = inliers.ravel().astype(bool)
    rays_a, rays_b = _rays(points_a, intrinsics), _rays(points_b, intrinsics)
    for _ in range(3):  # fit on the inliers, then re-select them by the rotation's own residual
        rotation = _best_rotation(rays_a[inliers], rays_b[inliers])
        residual = np.linalg.norm(_project(rays_a @ rotation.T, intrinsics) - points_b, axis=1)
        refined = residual < max(inlier_px, np.median(residual))
        if refined.sum() < MIN_PAIR_POINTS // 2:
            break
        inliers = refined
    return rotation, residual, inliers


def pan_test(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], intrinsics: np.ndarray, *,
             residual_px: float = 1.0, gap: int = 6, max_pairs: int = 12) -> PanTest:
    """Whether rotation alone explains the background's motion between sampled frames `gap` apart (gray
    frames, background masks, the frames' 3x3 intrinsics). Pan when the median rotation-only residual over every
    tracked corner is below `residual_px` (at a 960 px long side)."""
    count = len(frames)
    gap = max(1, min(gap, count - 1))
    to_reference = REFERENCE_LONG_SIDE / max(frames[0].shape[:2])
    starts = np.unique(np.linspace(0, count - 1 - gap, min(max_pairs, count - gap)).round().astype(int))
    residuals, shifts = [], []
    for start in starts:
        a, b = track_background(frames[start], frames[start + gap], masks[start], masks[start + gap])
        fit = relative_rotation(a, b, intrinsics)
        if fit is None:
            continue
        residuals.append(float(np.median(fit[1])) * to_reference)
        shifts.append(float(np.median(np.linalg.norm(b - a, axis=1))) * to_reference)
    if not residuals:
        return PanTest(False, float("nan"), float("nan"), 0, gap)
    residual = float(np.median(residuals))
    return PanTest(residual < residual_px, residual, float(np.median(shifts)), len(residuals), gap)


def _project_rotation(matrix: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(matrix)
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt


def pan_rotations(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], intrinsics: np.ndarray, *,
                  gaps: Sequence[int] = (1, 2, 4, 8), iterations: int = 20,
                  progress: Callable[[int, int], None] | None = None,
                  cancelled: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """World-from-camera rotations (N, 3, 3) (OpenCV axes, the first frame's camera is the world) of a camera
    that only turns, a (N,) bool mask of the frames that could be linked to the first, and figures (pairs,
    mean inlier residual px at a 960 px long side)."""
    count = len(frames)
    to_reference = REFERENCE_LONG_SIDE / max(frames[0].shape[:2])
    edges: list[tuple[int, int, np.ndarray, float]] = []  # (i, j, Q with ray_j = Q ray_i, weight)
    residuals = []
    for i in range(count):
        if cancelled is not None and cancelled():
            raise InterruptedError("cancelled")
        for gap in gaps:
            j = i + gap
            if j >= count:
                break
            a, b = track_background(frames[i], frames[j], masks[i], masks[j])
            fit = relative_rotation(a, b, intrinsics)
            if fit is None:
                continue
            rotation, residual, inliers = fit
            edges.append((i, j, rotation, float(inliers.sum())))
            residuals.append(float(np.mean(residual[inliers])) * to_reference)
        if progress is not None:
            progress(i + 1, count)
    rotations = np.tile(np.eye(3), (count, 1, 1))
    linked = np.zeros(count, bool)
    linked[0] = True
    incoming: dict[int, list] = {}
    for i, j, rotation, weight in edges:
        incoming.setdefault(j, []).append((i, rotation, weight))
    for j in range(1, count):  # chain: from the linked earlier frame with the most inliers (the nearest first)
        options = [(weight, i, rotation) for i, rotation, weight in incoming.get(j, []) if linked[i]]
        if options:
            _, i, rotation = max(options, key=lambda option: (option[0] * (1.0 / (j - option[1])) ** 0.5))
            rotations[j] = rotations[i] @ rotation.T
            linked[j] = True
    for _ in range(iterations):  # average over every pair: R_j = R_i Q^T, R_i = R_j Q
        total = np.zeros((count, 3, 3))
        for i, j, rotation, weight in edges:
            if linked[i] and linked[j]:
                total[j] += weight * rotations[i] @ rotation.T
                total[i] += weight * rotations[j] @ rotation
        for k in np.flatnonzero(linked)[1:]:
            rotations[k] = _project_rotation(total[k])
    figures = {"pairs": len(edges), "mean_residual_px": round(float(np.mean(residuals)), 3) if residuals else None}
    return rotations, linked, figures


def rotation_only_path(rotations: np.ndarray, linked: np.ndarray, sampled_columns: np.ndarray,
                       take_frames: np.ndarray, info: dict | None = None) -> CameraPath:
    """A CameraPath for every take column from the rotations of the sampled columns (centres all zero, columns
    not sampled or not linked interpolated and marked unregistered)."""
    count = len(take_frames)
    rotation = np.tile(np.eye(3), (count, 1, 1))
    registered = np.zeros(count, bool)
    rotation[sampled_columns] = rotations
    registered[sampled_columns] = linked
    rotation, _ = fill_unregistered(rotation, np.zeros((count, 3)), registered, take_frames)
    return CameraPath(rotation=rotation, center=np.zeros((count, 3)), registered=registered,
                      points=np.zeros((0, 3)), method="rotation-only", info=dict(info or {}))  # fmt: skip



def place_between(path: CameraPath, frames: Iterable[tuple[int, np.ndarray, np.ndarray]], intrinsics: np.ndarray,
                  *, progress: Callable[[int, int], None] | None = None,
                  cancelled: Callable[[], bool] | None = None) -> int:
    """Place the unregistered columns of a rotation-only path from the images: each column's background is
    tracked from the registered column before it and their relative rotation fitted (the same fit as between
    samples). frames: (column, gray frame, background mask) in column order, at the scale of `intrinsics`, for the
    registered and the unregistered columns. Updates path.rotation and path.registered in place and returns how
    many columns were placed; the caller interpolates the rest again."""
    todo = set(np.flatnonzero(~path.registered).tolist())
    keys = set(np.flatnonzero(path.registered).tolist())
    total, done, placed = len(todo), 0, 0
    key: tuple[int, np.ndarray, np.ndarray] | None = None
    for column, gray, mask in frames:
        if cancelled is not None and cancelled():
            raise InterruptedError("cancelled")
        if column in keys:
            key = (column, gray, mask)
            continue
        if column not in todo:
            continue
        if key is not None:
            a, b = track_background(key[1], gray, key[2], mask)
            fit = relative_rotation(a, b, intrinsics)
            if fit is not None and float(np.median(fit[1][fit[2]])) < 1.5:
                path.rotation[column] = path.rotation[key[0]] @ fit[0].T
                path.registered[column] = True
                placed += 1
        done += 1
        if progress is not None:
            progress(done, total)
    return placed
