"""The ground stage: the floor fitted to the planted feet, the camera's placement above it, and each person's
support height.

Camera space is OpenCV's (x right, y down, z forward, metres). World space is Blender's (Z up, metres).
The one conversion between them is `camera_to_world`: `camera_matrix_world @ [x, -y, -z, 1]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .rotations import normalize
from .skeleton import FOOT_KEYPOINTS, MHR70_INDEX

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
    inlier_count: feet points within the RANSAC threshold (0 for the fallback); points_used: the foot points
    the fit saw; source: which points those were ("planted feet": feet still in the image, "lowest feet": the
    lowest foot point of every frame, when too few feet were planted).
    """

    normal_cam: np.ndarray
    offset: float
    camera_matrix_world: np.ndarray
    method: str
    inlier_count: int = 0
    points_used: int = 0
    source: str = ""

    @property
    def camera_height(self) -> float:
        """Metres of the camera above the floor."""
        return -float(self.offset)

    @property
    def pitch_degrees(self) -> float:
        """How far the camera looks down from the horizon (negative: up), degrees."""
        return float(np.degrees(np.arcsin(np.clip(-self.normal_cam[2], -1.0, 1.0))))

    def describe(self) -> str:
        """One line: what the fit used and the camera placement it gives."""
        if self.method == "ransac":
            used = f"fitted to {self.inlier_count} of {self.points_used} {self.source or 'foot'} points"
        else:
            used = "gravity from the camera's down axis (too few feet to fit)"
        return (
            f"floor {used}: camera {self.camera_height:.2f} m above it, pitched {self.pitch_degrees:.1f} deg "
            f"{'down' if self.pitch_degrees >= 0 else 'up'}"
        )


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


# The refit weighs points up to this many inlier thresholds off the plane.
REFIT_WIDTH = 3.0


def fit_plane_ransac(
    points: np.ndarray,
    up_hint: np.ndarray,
    *,
    inlier_threshold: float = 0.025,
    max_tilt_degrees: float = 45.0,
    iterations: int = 300,
    seed: int = 0,
    tilt_prior_degrees: float = 10.0,
) -> tuple[np.ndarray, float, np.ndarray] | None:
    """Fit the floor plane to (N, 3) points: RANSAC over point triples, then a reweighted least-squares refit
    whose tilt from up_hint is pulled towards 0 by a prior of tilt_prior_degrees (_level_biased_plane).

    Only planes within max_tilt_degrees of `up_hint` are considered. A candidate scores its inliers (within
    inlier_threshold metres, each by how near) minus twice the points clearly below it, so the plane under the
    feet wins over planes through raised feet. Measured on the real-network take refitted on twelve 80% subsets
    of its frames: the camera height spread 0.28 m with a count of inliers and a plain refit, 0.09 m now.
    Returns (normal (3,) unit along up_hint, offset, inlier mask (N,)) with normal . p = offset on the plane,
    or None when fewer than 3 points or no candidate qualifies.
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
    # Each point near a candidate scores by how near (1 on it, 0 at the threshold; a count would make candidates of
    # nearly equal support swap places with a few frames more or less), minus 2 per point clearly below it.
    near = np.clip(1.0 - (heights / inlier_threshold) ** 2, 0.0, None)
    scores = np.sum(near, axis=0) - 2 * np.sum(heights < -3 * inlier_threshold, axis=0)
    best = int(np.argmax(scores))
    normal, offset = normals[best], offsets[best]
    # Refine by reweighted least squares: each point weighs by its height off the plane (Tukey's biweight, zero
    # beyond REFIT_WIDTH thresholds), so the plane does not jump as points cross a hard inlier band.
    for _ in range(5):
        scaled = (points @ normal - offset) / (REFIT_WIDTH * inlier_threshold)
        weights = np.where(np.abs(scaled) < 1.0, (1.0 - scaled**2) ** 2, 0.0)
        if np.count_nonzero(weights) < 3:
            break
        normal, offset = _level_biased_plane(points, up, tilt_prior_degrees, weights=weights)
    inliers = np.abs(points @ normal - offset) < inlier_threshold
    return normal, float(offset), inliers


def _level_biased_plane(
    points: np.ndarray, up: np.ndarray, prior_degrees: float, weights: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Least-squares plane through (N, 3) points as heights along `up` over the two other axes, its slopes
    pulled towards 0 (a level camera) by a Gaussian prior of prior_degrees: points spread widely decide the
    tilt themselves; points bunched in one spot (a person who barely moves in depth) cannot tilt the floor
    by their noise. weights: (N,) per point (None: equal). Returns (unit normal along up, offset)."""
    across = normalize(np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 0.0, 1.0]))
    along = np.cross(across, up)
    weights = np.ones(len(points)) if weights is None else np.asarray(weights, dtype=np.float64)
    weights = weights / max(float(weights.sum()), 1e-12)
    u, v, h = points @ across, points @ along, points @ up
    mean = np.array([weights @ u, weights @ v, weights @ h])
    design = np.stack([u - mean[0], v - mean[1]], axis=1)
    target = h - mean[2]
    normal_matrix = design.T @ (weights[:, None] * design)
    slopes = np.linalg.lstsq(normal_matrix, design.T @ (weights * target), rcond=None)[0]
    noise = max(float(np.sqrt(weights @ (target - design @ slopes) ** 2)), 0.01)
    # The prior as if it were one more point's worth of evidence per unit weight: the data's spread decides.
    ridge = (noise / np.tan(np.radians(prior_degrees))) ** 2 / max(len(points), 1)
    slopes = np.linalg.solve(normal_matrix + ridge * np.eye(2), design.T @ (weights * target))
    intercept = mean[2] - slopes @ mean[:2]
    normal = up - slopes[0] * across - slopes[1] * along
    scale = float(np.linalg.norm(normal))
    return normal / scale, float(intercept) / scale


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


def _lowest_foot_points(joints_cam: np.ndarray, up_cam: np.ndarray, planted: np.ndarray | None = None) -> np.ndarray:
    """Per frame and foot, the foot keypoint lowest along up_cam: (N, 3) camera-space points; only where
    planted (T, F, 2) bool (left, right) is True when given."""
    points = []
    for column, side in enumerate(("left", "right")):
        feet = joints_cam[..., list(FOOT_KEYPOINTS[side]), :].reshape(-1, 4, 3)
        heights = np.where(np.all(np.isfinite(feet), axis=-1), feet @ up_cam, np.inf)
        lowest = np.argmin(heights, axis=1)
        chosen = feet[np.arange(len(feet)), lowest]
        keep = np.isfinite(heights.min(axis=1))
        if planted is not None:
            keep &= np.asarray(planted)[..., column].reshape(-1)
        points.append(chosen[keep])
    return np.concatenate(points)


# Fewer planted runs than this leave the floor's tilt to the noise of a few feet: the lowest-foot fit is used.
MIN_PLANTED_RUNS = 4
# A planted run shorter than this gives the run fit no point: the median of a few frames of a wobbling foot is no
# steadier than one frame. Measured on the real-network take: at 30 fps a 3-frame run (0.1 s) made the fourth run,
# and the floor fitted to those four points put the camera 0.73 m up, pitched 2.7 deg, where the same clip at 60 fps
# (three runs of 0.15 s or more: the lowest-foot fit) gives 0.92 m and 4.9 deg; without it 30 fps gives 0.93 m, 5.0.
MIN_RUN_SECONDS = 0.15


def _planted_run_points(joints_cam: np.ndarray, planted: np.ndarray, up_cam: np.ndarray, min_frames: int = 1):
    """One point per planted run of a foot at least min_frames long: the per-coordinate median of its lowest foot
    point over the run (a still foot's keypoints drift and wobble in depth; the median of the run does not).
    Returns (points (R, 3), run lengths (R,))."""
    points, lengths = [], []
    for track in range(joints_cam.shape[0]):
        for column, side in enumerate(("left", "right")):
            feet = joints_cam[track][:, list(FOOT_KEYPOINTS[side])]
            heights = np.where(np.all(np.isfinite(feet), axis=-1), feet @ up_cam, np.inf)
            lowest = feet[np.arange(len(feet)), np.argmin(heights, axis=1)]
            usable = np.asarray(planted[track][:, column]) & np.isfinite(heights.min(axis=1))
            padded = np.concatenate([[0], usable.astype(np.int8), [0]])
            edges = np.flatnonzero(np.diff(padded))
            for start, end in zip(edges[::2], edges[1::2]):
                if end - start < min_frames:
                    continue
                points.append(np.median(lowest[start:end], axis=0))
                lengths.append(end - start)
    return np.array(points).reshape(-1, 3), np.array(lengths, dtype=np.float64)


def fit_floor_to_runs(
    points: np.ndarray,
    weights: np.ndarray,
    up: np.ndarray,
    tilt_prior_degrees: float = 10.0,
    *,
    inlier_threshold: float = 0.05,
    max_tilt_degrees: float = 45.0,
) -> tuple[np.ndarray, float, np.ndarray]:
    """The floor through planted-run points (R, 3) weighted by their run lengths (R,).

    Candidates: the plane through every triple of points (at most 2000, tilted at most max_tilt_degrees from
    up) and the level plane through every point; each scores the run weight within inlier_threshold minus
    twice the weight clearly below it, so the floor under most planted feet wins over a box someone stands on.
    The best is refined by a level-biased least squares (_level_biased_plane) with Tukey reweighting, so a
    foot held still in the air does not lift the floor. Returns (unit normal along up, offset, inliers (R,)).
    """
    points = np.asarray(points, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    up = normalize(np.asarray(up, dtype=np.float64))
    normals = [np.tile(up, (len(points), 1))]
    anchors = [points]
    if len(points) >= 3:
        rng = np.random.default_rng(0)
        triples = rng.integers(0, len(points), size=(2000, 3))
        a, b, c = points[triples[:, 0]], points[triples[:, 1]], points[triples[:, 2]]
        cross = np.cross(b - a, c - a)
        length = np.linalg.norm(cross, axis=1)
        cross = cross / np.where(length > 1e-9, length, 1.0)[:, None]
        cross *= np.where(cross @ up < 0, -1.0, 1.0)[:, None]
        usable = (length > 1e-9) & (cross @ up > np.cos(np.radians(max_tilt_degrees)))
        normals.append(cross[usable])
        anchors.append(a[usable])
    normals, anchors = np.concatenate(normals), np.concatenate(anchors)
    offsets = np.sum(normals * anchors, axis=1)
    heights = points @ normals.T - offsets  # (R, candidates)
    scores = weights @ (np.abs(heights) < inlier_threshold) - 2.0 * weights @ (heights < -2 * inlier_threshold)
    best = int(np.argmax(scores))
    normal, offset = normals[best], float(offsets[best])
    # Start the refit from a wide band around the best candidate: runs bunched near a line leave its tilt
    # to chance, and the band keeps runs a few centimetres off it (depth noise) while a box stays out.
    robust = (np.abs(points @ normal - offset) < 3.0 * inlier_threshold).astype(np.float64)
    for _ in range(6):
        if robust.sum() < 1e-6:
            break
        normal, offset = _level_biased_plane(points, up, tilt_prior_degrees, weights * robust)
        residual = points @ normal - offset
        inliers = robust > 0
        scale = float(np.clip(1.4826 * np.median(np.abs(residual[inliers])), 0.02, inlier_threshold))
        robust = np.clip(1.0 - (residual / (4.685 * scale)) ** 2, 0.0, None) ** 2
    return normal, offset, robust > 0


def estimate_floor(
    joints_cam: np.ndarray,
    *,
    main_track: int = 0,
    mode: str = "auto",
    min_inliers: int = 10,
    planted: np.ndarray | None = None,
    fps: float | None = None,
) -> FloorEstimate:
    """Floor and camera placement from camera-space keypoints of a static camera.

    joints_cam: (T, F, 70, 3) metres, OpenCV axes, NaN where absent; main_track: the person whose first
    pelvis position becomes the world origin (on the floor). mode "auto" fits a plane to the lowest foot
    point of every frame (RANSAC + refit) and falls back to the camera's gravity when fewer than
    min_inliers points support it (single images, feet never visible); mode "none" always uses that
    fallback: gravity = the camera's down axis, floor at the lowest foot point, or FALLBACK_PELVIS_HEIGHT
    below the pelvis without feet. planted: (T, F, 2) bool, feet known to be planted (contacts.still_feet):
    when they give at least 2 * min_inliers frames in MIN_PLANTED_RUNS runs or more, the floor is fitted to
    one point per planted run (fit_floor_to_runs: robust, stable under resampling) instead; fps: the rows' rate,
    when given runs shorter than MIN_RUN_SECONDS give no point. Either fit pulls
    the camera's tilt towards level (a prior of 10 degrees that well-spread feet override); planes tilt at
    most 45 degrees.
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
    source = "lowest-foot"
    if planted is not None and mode == "auto":
        shortest = 1 if fps is None else max(1, int(math.ceil(MIN_RUN_SECONDS * fps - 1e-9)))
        runs, lengths = _planted_run_points(joints_cam, planted, camera_up, shortest)
        if lengths.sum() >= 2 * min_inliers and len(runs) >= MIN_PLANTED_RUNS:
            normal, offset, inliers = fit_floor_to_runs(runs, lengths, camera_up)
            return FloorEstimate(
                normal, offset, camera_matrix_from_floor(normal, offset, origin), "ransac", int(inliers.sum()),
                len(runs), "planted-foot run",
            )  # fmt: skip
    if mode == "auto":
        fit = fit_plane_ransac(feet, camera_up, iterations=1000) if len(feet) >= min_inliers else None
        if fit is not None and int(fit[2].sum()) >= min_inliers:
            normal, offset, inliers = fit
            return FloorEstimate(
                normal, offset, camera_matrix_from_floor(normal, offset, origin), "ransac", int(inliers.sum()),
                len(feet), source,
            )  # fmt: skip
    elif mode != "none":
        raise ValueError(f"floor mode {mode!r} is not 'auto' or 'none'")
    if len(feet):
        offset = float(np.min(feet @ camera_up))
    else:
        offset = float(origin @ camera_up) - FALLBACK_PELVIS_HEIGHT
    return FloorEstimate(
        camera_up, offset, camera_matrix_from_floor(camera_up, offset, origin), "camera", 0, len(feet), source
    )


# A person's planted feet standing further than this above or below the floor stand on something else.
SUPPORT_TOLERANCE = 0.06


def support_height(planted_heights: np.ndarray, tolerance: float = SUPPORT_TOLERANCE) -> float:
    """The height (world z, metres) a person stands on, from the lowest foot point of their planted frames
    (N,): the floor (0) when their median is within `tolerance` of it, else that median (a box, a step)."""
    heights = np.asarray(planted_heights, dtype=np.float64)
    heights = heights[np.isfinite(heights)]
    if len(heights) == 0:
        return 0.0
    median = float(np.median(heights))
    return 0.0 if abs(median) <= tolerance else median
