"""The world the capture lives in: floor fit from the feet, the camera's placement above it, foot contacts
and foot locking (planted feet held still, legs re-solved with two-bone IK).

Camera space is OpenCV's (x right, y down, z forward, metres). World space is Blender's (Z up, metres).
The one conversion between them is `camera_to_world`: `camera_matrix_world @ [x, -y, -z, 1]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .filters import gaussian_smooth
from .rotations import normalize
from .skeleton import FOOT_KEYPOINTS, LEG_KEYPOINTS, MHR70_INDEX

# Points used to find the floor: everything on the feet.
_FOOT_POINTS = np.array(FOOT_KEYPOINTS["left"] + FOOT_KEYPOINTS["right"])
_PELVIS_POINTS = (MHR70_INDEX["left_hip"], MHR70_INDEX["right_hip"])
# Without usable feet, the floor sits this far below the hip midpoint (an adult standing).
FALLBACK_PELVIS_HEIGHT = 0.9


@dataclass(frozen=True)
class FloorEstimate:
    """The floor in camera space and the camera placement derived from it.

    normal_cam: (3,) unit, OpenCV camera axes, pointing up (away from gravity); offset: metres, the floor is
    {p : normal_cam . p = offset}; camera_matrix_world: (4, 4) Blender camera object matrix (see module doc);
    method: "ransac" (fitted to the feet) or "camera" (gravity = the camera's down axis, fallback).
    inlier_count: feet points within the RANSAC threshold (0 for the fallback).
    """

    normal_cam: np.ndarray
    offset: float
    camera_matrix_world: np.ndarray
    method: str
    inlier_count: int = 0


def camera_to_world(points_cam: np.ndarray, camera_matrix_world: np.ndarray) -> np.ndarray:
    """(..., 3) OpenCV camera-space points (metres) -> (..., 3) Blender world points. NaN stays NaN."""
    points = np.asarray(points_cam, dtype=np.float64) * np.array([1.0, -1.0, -1.0])
    matrix = np.asarray(camera_matrix_world, dtype=np.float64)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def world_to_camera(points_world: np.ndarray, camera_matrix_world: np.ndarray) -> np.ndarray:
    """Inverse of `camera_to_world`: (..., 3) Blender world points -> (..., 3) OpenCV camera-space points."""
    matrix = np.asarray(camera_matrix_world, dtype=np.float64)
    local = (np.asarray(points_world, dtype=np.float64) - matrix[:3, 3]) @ matrix[:3, :3]
    return local * np.array([1.0, -1.0, -1.0])


def fit_plane_ransac(
    points: np.ndarray,
    up_hint: np.ndarray,
    *,
    inlier_threshold: float = 0.025,
    max_tilt_degrees: float = 45.0,
    iterations: int = 300,
    seed: int = 0,
) -> tuple[np.ndarray, float, np.ndarray] | None:
    """Fit the floor plane to (N, 3) points: RANSAC over point triples, then a least-squares refit.

    Only planes within max_tilt_degrees of `up_hint` are considered. A candidate scores its inliers (within
    inlier_threshold metres) minus twice the points clearly below it, so the plane under the feet wins over
    planes through raised feet. Returns (normal (3,) unit along up_hint, offset, inlier mask (N,)) with
    normal . p = offset on the plane, or None when fewer than 3 points or no candidate qualifies.
    """
    points = np.asarray(points, dtype=np.float64)
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) < 3:
        return None
    up = normalize(np.asarray(up_hint, dtype=np.float64))
    rng = np.random.default_rng(seed)
    triples = rng.integers(0, len(points), size=(iterations, 3))
    a, b, c = points[triples[:, 0]], points[triples[:, 1]], points[triples[:, 2]]
    normals = np.cross(b - a, c - a)
    lengths = np.linalg.norm(normals, axis=1)
    normals = normals / np.where(lengths > 1e-9, lengths, 1.0)[:, None]
    normals *= np.where(normals @ up < 0, -1.0, 1.0)[:, None]
    usable = (lengths > 1e-9) & (normals @ up > np.cos(np.radians(max_tilt_degrees)))
    if not usable.any():
        return None
    normals, a = normals[usable], a[usable]
    offsets = np.sum(normals * a, axis=1)
    heights = points @ normals.T - offsets  # (N, candidates)
    scores = np.sum(np.abs(heights) < inlier_threshold, axis=0) - 2 * np.sum(heights < -3 * inlier_threshold, axis=0)
    best = int(np.argmax(scores))
    normal, offset = normals[best], offsets[best]
    # Refine: total least squares on the inliers, twice (the inlier set moves with the plane).
    for _ in range(2):
        inliers = np.abs(points @ normal - offset) < inlier_threshold
        if inliers.sum() < 3:
            break
        centre = points[inliers].mean(axis=0)
        _, _, vt = np.linalg.svd(points[inliers] - centre, full_matrices=False)
        normal = vt[-1] * (1.0 if vt[-1] @ up >= 0 else -1.0)
        offset = float(normal @ centre)
    inliers = np.abs(points @ normal - offset) < inlier_threshold
    return normal, float(offset), inliers


def camera_matrix_from_floor(normal_cam: np.ndarray, offset: float, origin_cam: np.ndarray) -> np.ndarray:
    """The (4, 4) camera object matrix for a floor {normal_cam . p = offset} (camera axes, normal up).

    World +Z is the floor normal, the floor is z = 0, world +Y is the camera's viewing direction projected on
    the floor, and the world origin is the floor point under `origin_cam` (3,) (camera axes).
    """
    # In Blender camera-local axes (x right, y up, looking down -z) the OpenCV point (x, y, z) is (x, -y, -z).
    flip = np.array([1.0, -1.0, -1.0])
    up = normalize(np.asarray(normal_cam, dtype=np.float64) * flip)
    view = np.array([0.0, 0.0, -1.0])
    forward = view - (view @ up) * up
    if np.linalg.norm(forward) < 1e-6:  # looking straight down: use the camera's up as world +Y
        forward = np.array([0.0, 1.0, 0.0]) - up[1] * up
    forward = normalize(forward)
    right = np.cross(forward, up)
    rotation = np.stack([right, forward, up])  # rows: world axes in camera-local coordinates
    origin = np.asarray(origin_cam, dtype=np.float64) * flip
    matrix = np.eye(4)
    matrix[:3, :3] = rotation  # camera-local -> world: rows are the world axes
    matrix[:3, 3] = -np.array([right @ origin, forward @ origin, offset])  # floor (up . p = offset) -> z = 0
    return matrix


def _lowest_foot_points(joints_cam: np.ndarray, up_cam: np.ndarray) -> np.ndarray:
    """Per frame and foot, the foot keypoint lowest along up_cam: (N, 3) camera-space points."""
    points = []
    for side in ("left", "right"):
        feet = joints_cam[..., list(FOOT_KEYPOINTS[side]), :].reshape(-1, 4, 3)
        heights = np.where(np.all(np.isfinite(feet), axis=-1), feet @ up_cam, np.inf)
        lowest = np.argmin(heights, axis=1)
        chosen = feet[np.arange(len(feet)), lowest]
        points.append(chosen[np.isfinite(heights.min(axis=1))])
    return np.concatenate(points)


def estimate_floor(
    joints_cam: np.ndarray,
    *,
    main_track: int = 0,
    mode: str = "auto",
    min_inliers: int = 10,
) -> FloorEstimate:
    """Floor and camera placement from camera-space keypoints of a static camera.

    joints_cam: (T, F, 70, 3) metres, OpenCV axes, NaN where absent; main_track: the person whose first
    pelvis position becomes the world origin (on the floor). mode "auto" fits a plane to the lowest foot
    point of every frame (RANSAC + refit) and falls back to the camera's gravity when fewer than
    min_inliers points support it (single images, feet never visible); mode "none" always uses that
    fallback: gravity = the camera's down axis, floor at the lowest foot point, or FALLBACK_PELVIS_HEIGHT
    below the pelvis without feet.
    """
    joints_cam = np.asarray(joints_cam, dtype=np.float64)
    if joints_cam.ndim == 3:
        joints_cam = joints_cam[None]
    hips = joints_cam[main_track][:, list(_PELVIS_POINTS)].mean(axis=1)
    valid_pelvis = np.flatnonzero(np.all(np.isfinite(hips), axis=1))
    if len(valid_pelvis) == 0:
        everything = joints_cam.reshape(-1, 3)
        everything = everything[np.all(np.isfinite(everything), axis=1)]
        origin = everything.mean(axis=0) if len(everything) else np.array([0.0, 0.0, 3.0])
    else:
        origin = hips[valid_pelvis[0]]
    camera_up = np.array([0.0, -1.0, 0.0])
    feet = _lowest_foot_points(joints_cam, camera_up)
    if mode == "auto":
        fit = fit_plane_ransac(feet, camera_up) if len(feet) >= min_inliers else None
        if fit is not None and int(fit[2].sum()) >= min_inliers:
            normal, offset, inliers = fit
            return FloorEstimate(
                normal, offset, camera_matrix_from_floor(normal, offset, origin), "ransac", int(inliers.sum())
            )
    elif mode != "none":
        raise ValueError(f"floor mode {mode!r} is not 'auto' or 'none'")
    if len(feet):
        offset = float(np.min(feet @ camera_up))
    else:
        offset = float(origin @ camera_up) - FALLBACK_PELVIS_HEIGHT
    return FloorEstimate(camera_up, offset, camera_matrix_from_floor(camera_up, offset, origin), "camera")


# -------------------------------------------------------------------------------------------------------
# Foot contacts and locking (world space, Z up).


@dataclass(frozen=True)
class ContactSettings:
    """Contact detection thresholds. Heights are of the lowest foot point above that foot's own standing
    level (its 5th percentile over the clip), speeds of the smoothed foot centre; a contact starts below both
    *_on values and ends above either *_off value (hysteresis). min_duration in seconds."""

    height_on: float = 0.05
    height_off: float = 0.08
    speed_on: float = 0.35
    speed_off: float = 0.6
    min_duration: float = 0.1
    smoothing_seconds: float = 0.04


def _foot_tracks(keypoints_world: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(F,) lowest foot-point height and (F, 3) foot centre (mean of the known foot points) of one side."""
    feet = keypoints_world[:, list(FOOT_KEYPOINTS[side])]
    known = np.all(np.isfinite(feet), axis=-1)
    heights = np.where(known, feet[..., 2], np.inf).min(axis=1)
    heights = np.where(np.isfinite(heights), heights, np.nan)
    count = known.sum(axis=1)
    centre = np.where(known[..., None], feet, 0.0).sum(axis=1) / np.where(count > 0, count, 1)[:, None]
    centre[count == 0] = np.nan
    return heights, centre


def detect_foot_contacts(
    keypoints_world: np.ndarray, fps: float, settings: ContactSettings | None = None
) -> np.ndarray:
    """Foot contacts (F, 2) bool, columns (left, right), from (F, 70, 3) world keypoints (Z up, metres).

    Heights and speeds come from lightly smoothed tracks so keypoint noise does not read as motion; short
    contacts (under min_duration) are dropped.
    """
    settings = settings or ContactSettings()
    sigma = settings.smoothing_seconds * fps
    contacts = np.zeros((keypoints_world.shape[0], 2), dtype=bool)
    min_frames = max(1, int(round(settings.min_duration * fps)))
    for column, side in enumerate(("left", "right")):
        heights, centre = _foot_tracks(keypoints_world, side)
        if np.isfinite(heights).sum() < 2:
            continue
        heights = gaussian_smooth(heights, sigma)
        centre = gaussian_smooth(centre, sigma)
        heights = heights - np.nanpercentile(heights, 5)
        velocity = np.gradient(centre, axis=0) * fps if len(centre) > 1 else np.zeros_like(centre)
        speed = np.linalg.norm(velocity, axis=1)
        state = False
        for frame in range(len(heights)):
            if not (np.isfinite(heights[frame]) and np.isfinite(speed[frame])):
                state = False
            elif state:
                state = heights[frame] < settings.height_off and speed[frame] < settings.speed_off
            else:
                state = heights[frame] < settings.height_on and speed[frame] < settings.speed_on
            contacts[frame, column] = state
        contacts[:, column] = _drop_short_runs(contacts[:, column], min_frames)
    return contacts


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of a (F,) bool mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _drop_short_runs(mask: np.ndarray, min_frames: int) -> np.ndarray:
    out = mask.copy()
    for start, end in _runs(mask):
        if end - start < min_frames:
            out[start:end] = False
    return out


def two_bone_ik(
    root: np.ndarray, middle: np.ndarray, target: np.ndarray, upper_length: np.ndarray, lower_length: np.ndarray
) -> np.ndarray:
    """New middle joints (..., 3) for chains root -> middle -> end reaching `target`, with the given segment
    lengths, keeping the middle joint in its original bend plane (the plane of root, middle and target).

    Targets out of reach straighten the chain towards them. All inputs broadcast over leading axes.
    """
    to_target = target - root
    distance = np.linalg.norm(to_target, axis=-1, keepdims=True)
    direction = to_target / np.where(distance > 1e-9, distance, 1.0)
    reach = np.clip(distance, np.abs(upper_length - lower_length)[..., None] + 1e-9,
                    (upper_length + lower_length)[..., None] - 1e-9)  # fmt: skip
    cos_root = (upper_length[..., None] ** 2 + reach**2 - lower_length[..., None] ** 2) / (
        2.0 * upper_length[..., None] * reach
    )
    cos_root = np.clip(cos_root, -1.0, 1.0)
    pole = middle - root
    pole = pole - np.sum(pole * direction, axis=-1, keepdims=True) * direction
    pole = normalize(pole)
    return root + upper_length[..., None] * (cos_root * direction + np.sqrt(1.0 - cos_root**2) * pole)


def lock_feet(
    keypoints_world: np.ndarray,
    contacts: np.ndarray,
    thigh_lengths: tuple[float, float],
    shin_lengths: tuple[float, float],
    fps: float,
    blend_seconds: float = 0.1,
) -> np.ndarray:
    """Hold planted feet still and re-solve the knees.

    keypoints_world: (F, 70, 3) Z up, metres; contacts: (F, 2) bool (left, right); thigh/shin lengths per
    side (left, right) in metres, the rig's rest lengths. During a contact every foot keypoint is held at its
    mean position over that contact; the hold blends in over blend_seconds before the contact and out after
    it, and the knee is placed by two-bone IK (hip fixed, thigh and shin at their rest lengths) in the leg's
    original bend plane. Returns a new (F, 70, 3) array.
    """
    out = np.array(keypoints_world, dtype=np.float64, copy=True)
    count = out.shape[0]
    blend = max(1, int(round(blend_seconds * fps)))
    for column, side in enumerate(("left", "right")):
        foot = list(FOOT_KEYPOINTS[side])
        hip, knee, ankle = LEG_KEYPOINTS[side]
        weight = np.zeros(count)
        held = np.zeros((count, len(foot), 3))
        for start, end in _runs(contacts[:, column]):
            segment = keypoints_world[start:end, foot]
            seen = np.all(np.isfinite(segment), axis=-1)
            anchor = np.where(seen[..., None], segment, 0.0).sum(axis=0) / np.maximum(seen.sum(axis=0), 1)[:, None]
            anchor[~seen.any(axis=0)] = np.nan  # (4, 3): a foot point never seen in this contact stays free
            ramp_in = np.arange(max(0, start - blend), start)
            ramp_out = np.arange(end, min(count, end + blend))
            frames = np.concatenate([ramp_in, np.arange(start, end), ramp_out])
            ramp = np.concatenate([
                (ramp_in - (start - blend - 1)) / (blend + 1),
                np.ones(end - start),
                1.0 - (ramp_out - end + 1) / (blend + 1),
            ])  # fmt: skip
            # Overlapping ramps of neighbouring contacts: the stronger hold wins.
            stronger = ramp > weight[frames]
            weight[frames[stronger]] = ramp[stronger]
            held[frames[stronger]] = anchor
        locked = weight > 0
        if not locked.any():
            continue
        w = weight[locked][:, None, None]
        original = out[locked][:, foot]
        anchor = held[locked]
        out[np.ix_(np.flatnonzero(locked), foot)] = np.where(
            np.isfinite(anchor) & np.isfinite(original), (1.0 - w) * original + w * anchor, original
        )
        legs = out[locked]
        new_knee = two_bone_ik(
            legs[:, hip], legs[:, knee], legs[:, ankle],
            np.full(locked.sum(), thigh_lengths[column]), np.full(locked.sum(), shin_lengths[column]),
        )  # fmt: skip
        new_knee = np.where(np.isfinite(new_knee), new_knee, legs[:, knee])
        out[np.flatnonzero(locked), knee] = new_knee
    return out
