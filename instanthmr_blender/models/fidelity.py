"""How far one pose model's keypoints are from another's on the same crops (an INT8 build against FP32, InstantHMR
against SAM 3D Body): 3D deviation raw and after rigid alignment, 2D deviation, in mm and px.

Raw 3D deviation compares camera-space keypoints (`joints_3d + cam_trans`), so it includes depth and placement;
after rigid alignment (the best rotation and translation, no scale: Kabsch) only the pose and body shape remain,
like the PA-MPJPE of benchmarks but without rescaling, so a body that shrank still shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def rigid_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(K, 3) source points moved by the rotation and translation that best fit them onto (K, 3) target (least
    squares over the rows finite in both); rows not finite stay NaN. Fewer than 3 common rows: all NaN."""
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    common = np.isfinite(source).all(axis=1) & np.isfinite(target).all(axis=1)
    if common.sum() < 3:
        return np.full(source.shape, np.nan)
    mean_source, mean_target = source[common].mean(axis=0), target[common].mean(axis=0)
    covariance = (source[common] - mean_source).T @ (target[common] - mean_target)
    u, _, vt = np.linalg.svd(covariance)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0  # a proper rotation, never a reflection
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    aligned = (source - mean_source) @ rotation.T + mean_target
    aligned[~common] = np.nan
    return aligned


@dataclass
class Deviations:
    """Per crop and keypoint deviations between two models (NaN where either lacks the keypoint)."""

    raw_mm: list[np.ndarray] = field(default_factory=list)  # (K,) per crop, camera space
    aligned_mm: list[np.ndarray] = field(default_factory=list)  # (K,) per crop, after rigid alignment
    pixels: list[np.ndarray] = field(default_factory=list)  # (K,) per crop, 2D keypoints

    def add(self, joints_cam_a, joints_cam_b, joints_2d_a, joints_2d_b) -> None:
        """One frame's people: joints_cam (N, K, 3) m and joints_2d (N, K, 2) px from each model, same rows."""
        for cam_a, cam_b, px_a, px_b in zip(joints_cam_a, joints_cam_b, joints_2d_a, joints_2d_b):
            cam_a, cam_b = np.asarray(cam_a, np.float64), np.asarray(cam_b, np.float64)
            self.raw_mm.append(1000.0 * np.linalg.norm(cam_a - cam_b, axis=1))
            self.aligned_mm.append(1000.0 * np.linalg.norm(rigid_align(cam_a, cam_b) - cam_b, axis=1))
            self.pixels.append(np.linalg.norm(np.asarray(px_a, np.float64) - np.asarray(px_b, np.float64), axis=1))

    @property
    def crops(self) -> int:
        return len(self.raw_mm)

    def summary(self) -> dict[str, dict[str, float]]:
        """{"raw_mm" | "aligned_mm" | "pixels": {"mean", "p95", "max"}} over every keypoint of every crop."""
        result = {}
        for name in ("raw_mm", "aligned_mm", "pixels"):
            values = np.concatenate(getattr(self, name)) if self.crops else np.zeros(0)
            values = values[np.isfinite(values)]
            if values.size:
                result[name] = {"mean": float(values.mean()), "p95": float(np.percentile(values, 95)),
                                "max": float(values.max())}
            else:
                result[name] = {"mean": float("nan"), "p95": float("nan"), "max": float("nan")}
        return result
