"""Place the take's columns that COLMAP did not (the frames between the sampled ones, and sampled ones it left
out) against its reconstruction, with OpenCV alone.

For each such column the nearest registered columns before and after it ("keys") lend their observations (2D
points of the image COLMAP saw that have a 3D point): each key's points are tracked into the column's frame
(pyramidal Lucas-Kanade started from where the interpolated pose projects them, forward-backward checked,
points on a person's mask dropped), and `cv2.solvePnPRansac` with the fixed intrinsics, seeded with the
interpolated pose, then `cv2.solvePnPRefineLM` on its inliers gives the column's pose. A pose is accepted when
enough points agree with it within a small reprojection error and it stays near the interpolated pose
(compared with the keys' spacing); the others stay for interpolation.

The video is read once, in order, at the solve's scale; only the columns waiting for their next key are held.

Coordinates: COLMAP's pixel centres are at +0.5 (its image origin is the top-left pixel's corner), OpenCV's at
0: the observations are tracked in OpenCV's convention and handed to PnP in COLMAP's again, so the intrinsics
and poses are COLMAP's unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: Lucas-Kanade settings: 15 px windows and 3 pyramid levels are enough from the projected starting guess (on the
#: 640x360 handheld clip, 21 px windows and 4 levels with 1500 points per key took 5.8 s where these with 1000
#: take 1.7 s, for the same poses within 0.003 % of the travel).
_LK = {"winSize": (15, 15), "maxLevel": 2, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
       "flags": cv2.OPTFLOW_USE_INITIAL_FLOW}  # fmt: skip


@dataclass
class Key:
    """A column COLMAP placed: its camera-from-world pose and its observations (xy in COLMAP's pixel
    convention, xyz the 3D points, ids the points' ids)."""

    column: int
    rotation: np.ndarray  # (3, 3) camera-from-world
    translation: np.ndarray  # (3,)
    xy: np.ndarray  # (N, 2) float32
    xyz: np.ndarray  # (N, 3) float64
    ids: np.ndarray  # (N,) int64

    @property
    def center(self) -> np.ndarray:
        return -self.rotation.T @ self.translation


@dataclass
class Acceptance:
    """min_inliers: points within `inlier_px` of the refined pose; max_median_px: their median reprojection
    error; fb_px: the forward-backward tracking check; jump: how far the pose may stray from the interpolated
    one, in units of the keys' spacing (centres) and of their turn (rotations, plus `jump_deg`); points_per_key:
    the observations tracked from each key (its first ones: COLMAP's longest tracks)."""

    min_inliers: int = 30
    max_median_px: float = 1.5
    inlier_px: float = 2.0
    fb_px: float = 1.0
    jump: float = 1.5
    jump_deg: float = 1.0
    points_per_key: int = 1000


def _project(xyz: np.ndarray, rotation: np.ndarray, translation: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    camera = xyz @ rotation.T + translation
    z = np.where(camera[:, 2] > 1e-9, camera[:, 2], np.nan)
    return np.stack([intrinsics[0, 0] * camera[:, 0] / z + intrinsics[0, 2],
                     intrinsics[1, 1] * camera[:, 1] / z + intrinsics[1, 2]], 1)  # fmt: skip


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip((np.trace(a.T @ b) - 1) / 2, -1.0, 1.0))))


def _track(key: Key, key_gray: np.ndarray, gray: np.ndarray, mask: np.ndarray, guess_r, guess_t, intrinsics,
           fb_px: float, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The key's observations found in `gray`: (xy in COLMAP's convention, xyz, ids)."""
    xyz, ids = key.xyz[:limit], key.ids[:limit]
    start = (key.xy[:limit] - 0.5).astype(np.float32)
    moved = _project(xyz, guess_r, guess_t, intrinsics) - _project(xyz, key.rotation, key.translation, intrinsics)
    guess = start + np.nan_to_num(moved, nan=0.0).astype(np.float32)
    forward, status_f, _ = cv2.calcOpticalFlowPyrLK(key_gray, gray, start.reshape(-1, 1, 2),
                                                    guess.reshape(-1, 1, 2).copy(), **_LK)  # fmt: skip
    backward, status_b, _ = cv2.calcOpticalFlowPyrLK(gray, key_gray, forward, start.reshape(-1, 1, 2).copy(), **_LK)
    forward, backward = forward.reshape(-1, 2), backward.reshape(-1, 2)
    keep = (status_f.ravel() == 1) & (status_b.ravel() == 1) & (np.linalg.norm(backward - start, axis=1) < fb_px)
    height, width = gray.shape
    keep &= (forward[:, 0] >= 0) & (forward[:, 1] >= 0) & (forward[:, 0] < width - 1) & (forward[:, 1] < height - 1)
    inside = np.flatnonzero(keep)
    on_background = mask[forward[inside, 1].astype(int), forward[inside, 0].astype(int)] > 0
    chosen = inside[on_background]
    return forward[chosen].astype(np.float64) + 0.5, xyz[chosen], ids[chosen]


def place_column(gray: np.ndarray, mask: np.ndarray, keys: list[tuple[Key, np.ndarray]], guess_rotation: np.ndarray,
                 guess_center: np.ndarray, spacing: float, turn_deg: float, intrinsics: np.ndarray,
                 accept: Acceptance) -> tuple[np.ndarray, np.ndarray] | None:
    """The world-from-camera rotation and centre of the column whose frame is `gray`, from `keys` ((Key, its
    gray frame), the nearest first), or None when no pose passes the checks. The guess (interpolated) pose is
    world-from-camera; `spacing` and `turn_deg` measure the keys' distance and turn for the jump check."""
    guess_r = guess_rotation.T
    guess_t = -guess_r @ guess_center
    found = [_track(key, key_gray, gray, mask, guess_r, guess_t, intrinsics, accept.fb_px, accept.points_per_key)
             for key, key_gray in keys]  # fmt: skip
    xy = np.concatenate([f[0] for f in found])
    xyz = np.concatenate([f[1] for f in found])
    _, first = np.unique(np.concatenate([f[2] for f in found]), return_index=True)  # the nearest key's, once
    xy, xyz = xy[first], xyz[first]
    if len(xy) < accept.min_inliers:
        return None
    rvec, _ = cv2.Rodrigues(guess_r)
    tvec = guess_t.reshape(3, 1).copy()
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(xyz, xy, intrinsics, None, rvec, tvec, useExtrinsicGuess=True,
                                                 iterationsCount=100, reprojectionError=accept.inlier_px,
                                                 confidence=0.999, flags=cv2.SOLVEPNP_ITERATIVE)  # fmt: skip
    if not ok or inliers is None or len(inliers) < accept.min_inliers:
        return None
    inliers = inliers.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(xyz[inliers], xy[inliers], intrinsics, None, rvec, tvec)
    rotation = cv2.Rodrigues(rvec)[0]
    translation = tvec.ravel()
    errors = np.linalg.norm(_project(xyz, rotation, translation, intrinsics) - xy, axis=1)
    good = np.nan_to_num(errors, nan=np.inf) < accept.inlier_px
    if good.sum() < accept.min_inliers or np.median(errors[good]) > accept.max_median_px:
        return None
    world_rotation, center = rotation.T, -rotation.T @ translation
    if np.linalg.norm(center - guess_center) > accept.jump * spacing:
        return None
    if _angle_deg(world_rotation, guess_rotation) > accept.jump * turn_deg + accept.jump_deg:
        return None
    return world_rotation, center


def place_between(source, frames: np.ndarray, boxes: np.ndarray | None, scale: float, intrinsics: np.ndarray,
                  keys: dict[int, Key], targets: np.ndarray, rotation: np.ndarray, center: np.ndarray,
                  accept: Acceptance, report, check) -> np.ndarray:
    """Place the `targets` columns against the `keys` (registered columns with observations), reading the frames
    of `source` (an open frame source) in order. `rotation`/`center` hold the interpolated poses and receive the
    placed ones; returns the boolean mask (over `targets`) of the placed columns. `report(done, total)` is
    called after each target, `check()` for each frame read (it raises to cancel)."""
    from .motion import background_mask, resize

    placed = np.zeros(len(targets), bool)
    if not len(targets) or not keys:
        return placed
    key_columns = np.array(sorted(keys))
    key_centers = np.array([keys[c].center for c in key_columns])
    steps = np.linalg.norm(np.diff(key_centers, axis=0), axis=1) if len(key_columns) > 1 else np.zeros(1)
    gaps = np.diff(key_columns) if len(key_columns) > 1 else np.ones(1)
    per_column = float(np.median(steps / gaps))  # typical travel per column
    index_of = {int(c): i for i, c in enumerate(targets)}
    needed = np.union1d(targets, key_columns)
    wanted: dict[int, list[int]] = {}
    for column in needed:
        wanted.setdefault(int(frames[column]), []).append(int(column))
    last_key = int(key_columns[-1])
    key_grays: dict[int, np.ndarray] = {}
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []
    done = [0]

    def solve(column: int, gray: np.ndarray, mask: np.ndarray) -> None:
        after = np.searchsorted(key_columns, column)
        lo = int(key_columns[after - 1]) if after > 0 else None
        hi = int(key_columns[after]) if after < len(key_columns) else None  # targets are never keys
        near = sorted((c for c in (lo, hi) if c is not None), key=lambda c: abs(c - column))
        chosen = [(keys[c], key_grays[c]) for c in near]
        if lo is not None and hi is not None:
            spacing = float(np.linalg.norm(keys[hi].center - keys[lo].center))
            turn = _angle_deg(keys[hi].rotation, keys[lo].rotation)
        else:
            spacing, turn = 0.0, 0.0
        spacing = max(spacing, per_column * max(1, abs(near[0] - column)) * 2)
        pose = place_column(gray, mask, chosen, rotation[column], center[column], spacing, turn, intrinsics, accept)
        if pose is not None:
            rotation[column], center[column] = pose
            placed[index_of[column]] = True
        done[0] += 1
        report(done[0], len(targets))

    first, last = int(frames[needed[0]]), int(frames[needed[-1]]) + 1
    for index, rgb in source.frames(first, last):
        check()
        for column in wanted.get(index, ()):
            gray = cv2.cvtColor(resize(rgb, scale), cv2.COLOR_RGB2GRAY)
            if column in keys:
                key_grays[column] = gray
                for waiting in pending:
                    solve(*waiting)
                pending = []
                for old in [c for c in key_grays if c < column]:  # only the newest key is needed from here on
                    del key_grays[old]
            if column in index_of:
                mask = background_mask(gray.shape, None if boxes is None else boxes[:, column], scale)
                if column > last_key:
                    solve(column, gray, mask)
                else:
                    pending.append((column, gray, mask))
    return placed
