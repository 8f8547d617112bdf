"""Figures of people and cameras in the world against a known truth (moving-camera tests and benchmarks).

The people figures follow the world-coordinate benchmarks (EMDB / WHAM / TRAM): over windows of 100 frames
(starting every 50 frames), W-MPJPE100 aligns each window rigidly by its first two frames and WA-MPJPE100 by a
similarity over the whole window; root path error is the root's mean distance after a rigid alignment of the
whole path, over the distance the true root travelled. Camera path error is measured after a similarity
alignment of the centres (the solver's scale is free), over the distance the true camera travelled.
"""

from __future__ import annotations

import numpy as np


def umeyama(source: np.ndarray, target: np.ndarray, *, scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) minimising |s R source + t - target|^2 over (N, 3) point pairs (Umeyama 1991)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    xs, xt = source - mu_s, target - mu_t
    u, d, vt = np.linalg.svd(xt.T @ xs / len(source))
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1
    rotation = u @ sign @ vt
    s = float(np.trace(np.diag(d) @ sign) / xs.var(axis=0).sum()) if scale else 1.0
    return s, rotation, mu_t - s * rotation @ mu_s


def _apply(transform, points: np.ndarray) -> np.ndarray:
    s, rotation, t = transform
    return s * points @ rotation.T + t


def _pairs(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = np.all(np.isfinite(predicted), axis=-1) & np.all(np.isfinite(truth), axis=-1)
    return predicted[both], truth[both]


def windows(frames: int, length: int = 100, stride: int = 50) -> list[slice]:
    starts = list(range(0, max(1, frames - length + 1), stride))
    return [slice(start, min(frames, start + length)) for start in starts]


def w_mpjpe(predicted: np.ndarray, truth: np.ndarray, length: int = 100) -> float:
    """Mean joint error (metres) with each window aligned rigidly by its first two frames. (F, K, 3) each."""
    errors = []
    for window in windows(len(truth), length):
        p, t = predicted[window], truth[window]
        transform = umeyama(*_pairs(p[:2].reshape(-1, 3), t[:2].reshape(-1, 3)), scale=False)
        aligned = _apply(transform, p.reshape(-1, 3)).reshape(p.shape)
        errors.append(np.nanmean(np.linalg.norm(aligned - t, axis=-1)))
    return float(np.mean(errors))


def wa_mpjpe(predicted: np.ndarray, truth: np.ndarray, length: int = 100) -> float:
    """Mean joint error (metres) with each window aligned by a similarity over the whole window."""
    errors = []
    for window in windows(len(truth), length):
        p, t = predicted[window], truth[window]
        transform = umeyama(*_pairs(p.reshape(-1, 3), t.reshape(-1, 3)))
        aligned = _apply(transform, p.reshape(-1, 3)).reshape(p.shape)
        errors.append(np.nanmean(np.linalg.norm(aligned - t, axis=-1)))
    return float(np.mean(errors))


def travelled(path: np.ndarray) -> float:
    steps = np.linalg.norm(np.diff(path[np.all(np.isfinite(path), axis=1)], axis=0), axis=1)
    return float(steps.sum())


def root_path_error(predicted_root: np.ndarray, true_root: np.ndarray) -> float:
    """Mean root distance after a rigid alignment of the whole path, over the true distance travelled."""
    p, t = _pairs(predicted_root, true_root)
    aligned = _apply(umeyama(p, t, scale=False), p)
    return float(np.mean(np.linalg.norm(aligned - t, axis=1)) / travelled(true_root))


def camera_path_error(centers: np.ndarray, true_centers: np.ndarray) -> float:
    """Mean centre distance after a similarity alignment, over the distance the true camera travelled."""
    aligned = _apply(umeyama(centers, true_centers), centers)
    return float(np.mean(np.linalg.norm(aligned - true_centers, axis=1)) / travelled(true_centers))


def rotation_error_degrees(rotations: np.ndarray, true_rotations: np.ndarray) -> float:
    """Mean angle (degrees) between (F, 3, 3) camera rotations after the best single rotation aligns them."""
    u, _, vt = np.linalg.svd(np.einsum("fij,fkj->ik", true_rotations, rotations))
    align = u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt
    relative = np.einsum("fji,jk,fkl->fil", true_rotations, align, rotations)
    cosine = np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1, 1)
    return float(np.degrees(np.arccos(cosine)).mean())
