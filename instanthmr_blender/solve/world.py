"""The people of a moving camera placed in the world, before the solve's stages run.

A moving camera's path (camera/path.py) has no metric scale and no gravity; the bodies have both (their
camera-space keypoints are in metres). This stage joins them (world = s * A * C(t) + A * R(t) * X_cam(t)):
1. the ground: a near-level plane through the background points below the cameras gives gravity, and the
   camera's height over it, measured in metres through the people's lowest feet, gives the scale s;
   without a ground in the background, the scale comes from planted feet staying put in the world and
   gravity from the people's own floor (ground.estimate_floor);
2. depth along the camera ray, the axis a body network gets wrong by a few percent: where a foot is planted,
   the ray through its 2D keypoint meets the ground at the true distance; the body's distance is corrected to
   it, the correction smoothed over time and carried across the frames in between;
3. a virtual still camera: the camera of one frame held still, the keypoints and the 2D keypoints expressed
   in it, so the solve's stages (clean, smooth, contacts, ground) run unchanged in the world.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from . import contacts, ground
from .rotations import normalize
from .skeleton import FOOT_KEYPOINTS, MHR70_INDEX

_FEET = {side: list(points) for side, points in FOOT_KEYPOINTS.items()}
_HIPS = [MHR70_INDEX["left_hip"], MHR70_INDEX["right_hip"]]
# To OpenCV camera axes from Blender camera-local axes (and back: the same flip).
_FLIP = np.diag([1.0, -1.0, -1.0])

#: A foot whose ray meets the ground this slowly (m/s, in the world) while low is planted.
PLANTED_SPEED = 0.6
#: Highest a foot may stand over the ground (metres, through the composed body) and still correct the depth.
PLANTED_HEIGHT = 0.12
#: Depth corrections outside this range are not trusted (a foot ray grazing the ground).
DEPTH_FACTOR_RANGE = (0.7, 1.4)
#: Fewest background points on the ground plane for it to count.
MIN_GROUND_POINTS = 30
#: How high the lowest MHR70 foot keypoint (heel, toe tips) sits over the ground under a standing foot, metres:
#: measured on the SAM 3D Body fixtures (lowest foot keypoint against the lowest mesh vertex: 0.6-1.3 cm).
FOOT_KEYPOINT_HEIGHT = 0.012


@dataclass
class Placement:
    """How the people of a moving-camera take were placed in the world.

    joints_cam / joints_2d: (T, F, 70, 3) metres and (T, F, 70, 2) pixels in the virtual still camera (the
    camera of column `reference`); camera_matrix_world: (4, 4) Blender matrix of that virtual camera;
    camera_path_world: (F, 4, 4) Blender matrix of the real camera at every column (world: Z up, metres,
    floor z = 0); scale: metres per path unit, scale_spread: half the interquartile range of the per-frame
    estimates as a fraction of the scale (0 where not measured); scale_source / gravity_source: what gave
    them; depth_factors: (T, F) the correction of each body's distance (1: unchanged); registered: (F,) the
    columns the solver placed (the others are interpolated); method: the path's method.
    """

    joints_cam: np.ndarray
    joints_2d: np.ndarray
    camera_matrix_world: np.ndarray
    camera_path_world: np.ndarray
    reference: int
    scale: float
    scale_spread: float
    scale_source: str
    gravity_source: str
    depth_factors: np.ndarray
    registered: np.ndarray
    method: str
    ground_points: int = 0
    notes: list[str] = field(default_factory=list)
    frames: np.ndarray | None = None  # (F,) the take's source frame of each column

    def interpolated_ranges(self) -> list[tuple[int, int]]:
        """(first, last) source frames of each run of columns whose camera was interpolated, not placed."""
        frames = np.arange(len(self.registered)) if self.frames is None else np.asarray(self.frames)
        runs, start = [], None
        for column, placed in enumerate(self.registered):
            if not placed and start is None:
                start = column
            if placed and start is not None:
                runs.append((int(frames[start]), int(frames[column - 1])))
                start = None
        if start is not None:
            runs.append((int(frames[start]), int(frames[-1])))
        return runs

    def describe(self) -> str:
        """One line: the camera's motion, its scale and gravity, and the depth correction."""
        placed = int(self.registered.sum())
        moved = self.camera_path_world[:, :3, 3]
        travel = float(np.linalg.norm(np.diff(moved, axis=0), axis=1).sum()) if len(moved) > 1 else 0.0
        parts = [f"moving camera ({self.method}): {placed} of {len(self.registered)} frames placed, "
                 f"{travel:.2f} m travelled"]  # fmt: skip
        runs = self.interpolated_ranges()
        if runs:
            shown = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:5])
            shown += ", ..." if len(runs) > 5 else ""
            parts.append(f"camera interpolated over source frames {shown}")
        if self.scale_source != "rotation only":
            spread = f" (spread {100 * self.scale_spread:.1f}%)" if self.scale_spread > 0 else ""
            parts.append(f"scale from {self.scale_source}{spread}")
        parts.append(f"gravity from {self.gravity_source}")
        finite = self.depth_factors[np.isfinite(self.depth_factors)]
        if len(finite):
            parts.append(f"body distance corrected by {100 * float(np.median(np.abs(finite - 1))):.1f}% (median)")
        return "; ".join(parts)


def approximate_up(rotation: np.ndarray) -> np.ndarray:
    """World up as the cameras see it (their -y axis, averaged): phones are held roughly upright."""
    return normalize(-np.asarray(rotation)[:, :, 1].mean(axis=0))


def ground_plane(points: np.ndarray, centers: np.ndarray, up: np.ndarray, *, max_tilt_degrees: float = 30.0,
                 iterations: int = 600, seed: int = 0) -> tuple[np.ndarray, float, int] | None:
    """(normal up, offset, inliers) of the level plane with the most background points below the cameras, or
    None. points: (N, 3) path units; centers: (F, 3) camera centres; up: the approximate up."""
    points = np.asarray(points, dtype=np.float64)
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) < MIN_GROUND_POINTS:
        return None
    below = points[(points - centers.mean(axis=0)) @ up < 0]
    if len(below) < MIN_GROUND_POINTS:
        return None
    # Threshold in path units: 1% of how far the cameras see the points.
    spread = float(np.median(np.linalg.norm(below - np.median(centers, axis=0), axis=1)))
    threshold = 0.01 * spread
    rng = np.random.default_rng(seed)
    cos_tilt = np.cos(np.radians(max_tilt_degrees))
    best = None
    for _ in range(iterations):
        sample = below[rng.choice(len(below), 3, replace=False)]
        normal = np.cross(sample[1] - sample[0], sample[2] - sample[0])
        if np.linalg.norm(normal) < 1e-12:
            continue
        normal = normalize(normal)
        if normal @ up < 0:
            normal = -normal
        if normal @ up < cos_tilt:
            continue
        offset = float(normal @ sample[0])
        inliers = np.abs(below @ normal - offset) < threshold
        count = int(inliers.sum())
        if best is None or count > best[2]:
            best = (normal, offset, count, inliers)
    if best is None or best[2] < MIN_GROUND_POINTS:
        return None
    chosen = below[best[3]]
    centroid = chosen.mean(axis=0)
    normal = normalize(np.linalg.svd(chosen - centroid)[2][-1])
    if normal @ up < 0:
        normal = -normal
    offset = float(normal @ centroid)
    if np.any(centers @ normal - offset <= 0):
        return None  # a camera below the plane: not the ground
    return normal, offset, int(best[2])


def _foot_points(joints: np.ndarray) -> np.ndarray:
    """(F, P, 3) every foot keypoint of a track, both feet."""
    return joints[:, _FEET["left"] + _FEET["right"]]


def scale_from_ground(
    joints_cam: np.ndarray, valid: np.ndarray, rotation: np.ndarray, centers: np.ndarray, normal: np.ndarray,
    offset: float, foot_height: float = FOOT_KEYPOINT_HEIGHT,
) -> tuple[float, float, int]:
    """(scale, spread, frames used): metres per path unit from the camera's height over the ground, measured
    in metres down to the people's lowest foot and in path units down to the plane; frames whose lowest foot
    stands clearly off the ground at the first estimate (a jump, a box) are left out."""
    heights = centers @ normal - offset  # (F,) path units
    estimates = []
    for track in range(joints_cam.shape[0]):
        feet = _foot_points(joints_cam[track])  # (F, P, 3) camera axes, metres
        normal_cam = np.einsum("fji,j->fi", rotation, normal)  # (F, 3) the up axis in each camera
        drop = -np.einsum("fpi,fi->fp", feet, normal_cam)  # metres below the camera
        lowest = np.nanmax(np.where(np.isfinite(drop), drop, -np.inf), axis=1) + foot_height
        usable = valid[track] & np.isfinite(lowest) & (lowest > 0) & (heights > 0)
        estimates.append(np.stack([lowest[usable] / heights[usable], lowest[usable], heights[usable]], axis=1))
    values = np.concatenate(estimates) if estimates else np.zeros((0, 3))
    if len(values) < 3:
        return float("nan"), 0.0, 0
    scale = float(np.median(values[:, 0]))
    for _ in range(3):
        off_ground = scale * values[:, 2] - values[:, 1]  # metres the lowest foot stands above the ground
        keep = np.abs(off_ground) < max(0.08, 3 * float(np.median(np.abs(off_ground))))
        if keep.sum() >= 3:
            scale = float(np.median(values[keep, 0]))
    kept = values[keep, 0] if keep.sum() >= 3 else values[:, 0]
    spread = float(np.subtract(*np.percentile(kept, [75, 25]))) / 2 / scale
    return scale, spread, int(len(kept))


def scale_from_planted_feet(joints_cam: np.ndarray, valid: np.ndarray, rotation: np.ndarray, centers: np.ndarray,
                            up: np.ndarray, step: int = 2) -> tuple[float, float, int]:
    """(scale, spread, pairs used) without a ground: the scale that keeps the lowest foot still in the world
    between frames `step` apart, where the camera moved (planted feet do not move with the camera)."""
    pairs_dc, pairs_dq = [], []
    for track in range(joints_cam.shape[0]):
        feet = _foot_points(joints_cam[track])
        world_feet = np.einsum("fij,fpj->fpi", rotation, feet)  # metres, path orientation, camera at 0
        heights = world_feet @ up
        lowest = np.argmin(np.where(np.isfinite(heights), heights, np.inf), axis=1)
        point = world_feet[np.arange(len(lowest)), lowest]
        ok = valid[track] & np.all(np.isfinite(point), axis=1)
        first = np.arange(len(point) - step)
        both = ok[first] & ok[first + step]
        pairs_dc.append(centers[first + step][both] - centers[first][both])
        pairs_dq.append(point[first + step][both] - point[first][both])
    dc = np.concatenate(pairs_dc) if pairs_dc else np.zeros((0, 3))
    dq = np.concatenate(pairs_dq) if pairs_dq else np.zeros((0, 3))
    moved = np.linalg.norm(dc, axis=1)
    usable = moved > 1e-9
    if usable.sum() < 5:
        return float("nan"), 0.0, 0
    dc, dq, moved = dc[usable], dq[usable], moved[usable]
    estimates = -np.einsum("ni,ni->n", dc, dq) / moved**2
    positive = estimates > 0
    if positive.sum() < 5:
        return float("nan"), 0.0, 0
    scale = float(np.median(estimates[positive]))
    keep = positive
    for _ in range(4):  # least squares over the pairs whose foot stays within 5 cm: the planted ones
        residual = np.linalg.norm(scale * dc + dq, axis=1)
        keep = residual < max(0.05, float(np.percentile(residual, 30)))
        if keep.sum() < 5:
            break
        scale = float(-np.sum(np.einsum("ni,ni->n", dc[keep], dq[keep])) / np.sum(moved[keep] ** 2))
    kept = estimates[keep] if keep.sum() >= 5 else estimates[positive]
    spread = float(np.subtract(*np.percentile(kept, [75, 25]))) / 2 / abs(scale)
    return scale, spread, int(len(kept))


def world_frame(up: np.ndarray, rotation: np.ndarray, registered: np.ndarray) -> np.ndarray:
    """(3, 3) rows: world x, y, z in path axes: z = up, y = the first placed camera's view on the floor."""
    view = rotation[int(np.flatnonzero(registered)[0])][:, 2]
    forward = view - (view @ up) * up
    if np.linalg.norm(forward) < 1e-6:
        forward = rotation[0][:, 1] * -1 - ((rotation[0][:, 1] * -1) @ up) * up
    forward = normalize(forward)
    return np.stack([np.cross(forward, up), forward, up])


def _rays(joints_2d: np.ndarray, focal: float, principal: np.ndarray) -> np.ndarray:
    """(..., 2) pixels -> (..., 3) camera rays with z = 1."""
    xy = (np.asarray(joints_2d, dtype=np.float64) - principal) / focal
    return np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], axis=-1)


def _running_median(values: np.ndarray, index: np.ndarray, half_width: float) -> np.ndarray:
    out = np.empty_like(values)
    for i, at in enumerate(index):
        near = np.abs(index - at) <= half_width
        out[i] = np.median(values[near])
    return out


def size_factors(joints_cam: np.ndarray, rays: np.ndarray, iterations: int = 6) -> np.ndarray:
    """(F,) how much farther each frame's body is than the network placed it, from its 2D keypoints: the
    factor k that moves the body along its root's ray (X + (k - 1) * root) so that its keypoints project best
    onto the 2D keypoints (a body's image size pins its distance). 1 where the 3D keypoints already project
    onto the 2D ones (a network's own 2D), NaN without enough keypoints."""
    joints = np.asarray(joints_cam, dtype=np.float64)
    roots = _roots(joints)
    target = rays[..., :2]
    usable = np.all(np.isfinite(joints), axis=-1) & np.all(np.isfinite(target), axis=-1)
    usable &= np.all(np.isfinite(roots), axis=-1)[:, None]
    factor = np.ones(len(joints))
    x = np.where(usable[..., None], joints, 0.0)
    r = np.where(np.isfinite(roots), roots, 0.0)[:, None]
    goal = np.where(usable[..., None], target, 0.0)
    for _ in range(iterations):  # Gauss-Newton on k for every frame at once
        points = x + (factor[:, None, None] - 1) * r
        z = np.where(usable, points[..., 2], 1.0)
        projected = points[..., :2] / z[..., None]
        residual = np.where(usable[..., None], projected - goal, 0.0)
        # d(projected)/dk = (r_xy * z - p_xy * r_z) / z^2
        jacobian = np.where(usable[..., None], (r[..., :2] * z[..., None] - points[..., :2] * r[..., 2:3])
                            / z[..., None] ** 2, 0.0)  # fmt: skip
        numerator = np.einsum("fkc,fkc->f", jacobian, residual)
        denominator = np.einsum("fkc,fkc->f", jacobian, jacobian)
        step = np.where(denominator > 1e-12, numerator / np.maximum(denominator, 1e-12), 0.0)
        factor = np.clip(factor - step, DEPTH_FACTOR_RANGE[0], DEPTH_FACTOR_RANGE[1])
    return np.where(usable.sum(axis=1) >= 6, factor, np.nan)


def depth_factors(
    joints_cam: np.ndarray, rays: np.ndarray, valid: np.ndarray, camera_rotation: np.ndarray,
    camera_center: np.ndarray, fps: float, support: float = 0.0, foot_height: float = FOOT_KEYPOINT_HEIGHT,
) -> tuple[np.ndarray, int]:
    """((F,) factor, planted frames) for one track: how much farther (> 1) or nearer each frame's body is
    than the network said, from the rays of its planted feet meeting the ground (world z = support).

    joints_cam: (F, 70, 3) metres; rays: (F, 70, 3) rays through the 2D keypoints (z = 1); camera_rotation /
    camera_center: (F, 3, 3) world-from-camera and (F, 3) metres, world Z up. Frames with no planted foot get
    the correction of their neighbours (interpolated, held at the ends); no planted foot at all: all 1. The
    ray of a planted foot keypoint meets the plane `foot_height` above the support."""
    frames = len(joints_cam)
    estimates = np.full((frames, 2), np.nan)
    ground_points = np.full((frames, 2, 3), np.nan)
    heights = np.full((frames, 2), np.nan)
    root_depth = _roots(joints_cam)[:, 2]
    for column, side in enumerate(("left", "right")):
        points = joints_cam[:, _FEET[side]]  # (F, P, 3)
        directions = np.einsum("fij,fpj->fpi", camera_rotation, rays[:, _FEET[side]])  # world, per unit depth
        with np.errstate(invalid="ignore", divide="ignore"):
            # The camera-space depth at which each foot ray meets the ground plane.
            depth = (support + foot_height - camera_center[:, None, 2]) / directions[..., 2]
            hits = camera_center[:, None] + depth[..., None] * directions
            # The body moves along its root's ray (X + (k - 1) * root) until this foot point has that depth.
            factor = 1 + (depth - points[..., 2]) / root_depth[:, None]
        composed = np.einsum("fij,fpj->fpi", camera_rotation, points) + camera_center[:, None]
        good = (depth > 0) & np.isfinite(factor) & np.all(np.isfinite(points), axis=-1)
        # Only the side's lowest point touches the ground (the ankle stands higher than the heel and toes).
        height = np.where(good, composed[..., 2], np.inf)
        pick = np.argmin(height, axis=1)
        rows = np.arange(frames)
        found = np.isfinite(height[rows, pick])
        estimates[:, column] = np.where(found, factor[rows, pick], np.nan)
        ground_points[:, column] = np.where(found[:, None], hits[rows, pick], np.nan)
        heights[:, column] = np.where(found, height[rows, pick], np.nan)
    # How fast each foot's ground point moves: the means over the 0.1 s before and after each frame (single
    # frames are too noisy: a pixel of 2D noise moves a far ground point by centimetres along the ray).
    half = max(1, int(round(0.1 * fps)))
    speed = np.full((frames, 2), np.inf)
    for row in range(half, frames - half):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            before = np.nanmean(ground_points[row - half:row + 1], axis=0)
            after = np.nanmean(ground_points[row:row + half + 1], axis=0)
        moved = np.linalg.norm(after - before, axis=-1) / (half / fps)
        speed[row] = np.where(np.isfinite(moved), moved, np.inf)
    lowest = np.nanmin(np.where(np.isfinite(heights), heights, np.inf), axis=1)
    low = (heights - support - foot_height < PLANTED_HEIGHT) & (heights <= lowest[:, None] + 0.05)
    planted = low & (speed < PLANTED_SPEED) & valid[:, None] & np.isfinite(estimates)
    planted &= (estimates > DEPTH_FACTOR_RANGE[0]) & (estimates < DEPTH_FACTOR_RANGE[1])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames with no planted foot: NaN, as meant
        per_frame = np.nanmean(np.where(planted, estimates, np.nan), axis=1)
    # The image size gives every frame's distance; the planted feet on the ground correct its slow bias (a
    # body a few percent too large or small sits a few percent too far or near in every frame).
    sized = size_factors(joints_cam, rays)
    sized = np.where(np.isfinite(sized) & valid, sized, np.nan)
    if np.isfinite(sized).sum() < 3:
        sized = np.ones(frames)
    else:
        known_size = np.flatnonzero(np.isfinite(sized))
        sized = np.interp(np.arange(frames), known_size, sized[known_size])
    known = np.flatnonzero(np.isfinite(per_frame))
    if len(known) < 3:
        return sized, int(len(known))
    bias = _running_median(per_frame[known] / sized[known], known.astype(np.float64), max(1.0, 0.5 * fps))
    return sized * np.interp(np.arange(frames), known, bias), int(len(known))


def _roots(joints: np.ndarray) -> np.ndarray:
    """(F, 3) hip midpoint, else the mean of the keypoints there are."""
    hips = joints[:, _HIPS].mean(axis=1)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(np.isfinite(joints), joints, np.nan), axis=1)
    return np.where(np.all(np.isfinite(hips), axis=1)[:, None], hips, mean)


def _blender_matrix(rotation: np.ndarray, center: np.ndarray) -> np.ndarray:
    matrix = np.tile(np.eye(4), rotation.shape[:-2] + (1, 1))
    matrix[..., :3, :3] = rotation @ _FLIP
    matrix[..., :3, 3] = center
    return matrix


def place_people(take, path, fps: float, *, floor_mode: str = "auto",
                 foot_height: float = FOOT_KEYPOINT_HEIGHT) -> Placement:
    """Place every track of a moving-camera take in the world (module docstring). take: the take's
    fields (joints_cam, joints_2d, valid, focal_length, principal_point); path: its CameraPath; fps: the rows'
    rate. Returns the Placement the solve runs on."""
    valid = np.asarray(take.valid, dtype=bool)
    joints = np.where(valid[..., None, None], np.asarray(take.joints_cam, dtype=np.float64), np.nan)
    focal = float(take.focal_length)
    principal = np.asarray(take.principal_point, dtype=np.float64)
    given_2d = getattr(take, "joints_2d", None)
    with np.errstate(invalid="ignore", divide="ignore"):
        projected = joints[..., :2] / joints[..., 2:3] * focal + principal
    if given_2d is None:
        pixels = projected
    else:
        given_2d = np.asarray(given_2d, dtype=np.float64)
        pixels = np.where(np.all(np.isfinite(given_2d), axis=-1)[..., None], given_2d, projected)
    rays = _rays(pixels, focal, principal)

    rotation, centers, registered = path.rotation, path.center, np.asarray(path.registered, dtype=bool)
    up = approximate_up(rotation[registered])
    notes = []
    plane = None
    centres_move = float(np.ptp(centers[registered], axis=0).max()) if registered.sum() > 1 else 0.0
    if path.method == "rotation-only" or centres_move <= 1e-9:
        scale, spread, scale_source = 1.0, 0.0, "rotation only"
    else:
        plane = ground_plane(path.points, centers[registered], up) if len(path.points) else None
        scale = float("nan")
        if plane is not None:
            scale, spread, used = scale_from_ground(joints, valid & registered, rotation, centers, plane[0],
                                                    plane[1], foot_height)  # fmt: skip
            scale_source = f"the camera's height over the ground ({used} frames)"
            if not np.isfinite(scale):
                plane = None
                notes.append("the ground was found but no feet reach it: scale from planted feet instead")
        if plane is None:
            scale, spread, used = scale_from_planted_feet(joints, valid & registered, rotation, centers, up)
            scale_source = f"planted feet staying put ({used} frame pairs)"
            if not np.isfinite(scale):
                raise ValueError(
                    "the camera path's scale could not be found: nobody's feet are seen while the camera "
                    "moves; try --camera-motion static, or a scene camera with its scale set"
                )
    gravity_up = plane[0] if plane is not None else up
    axes = world_frame(gravity_up, rotation, registered)  # rows: world axes in path axes
    world_rotation = np.einsum("ij,fjk->fik", axes, rotation)  # (F, 3, 3) world-from-camera
    world_center = scale * centers @ axes.T
    world_center[:, 2] -= scale * plane[1] if plane is not None else 0.0
    gravity_source = f"the ground in the background ({plane[2]} points)" if plane is not None else ""

    def compose(joints_now: np.ndarray, support: float) -> tuple[np.ndarray, np.ndarray]:
        factors = np.ones(joints_now.shape[:2])
        out = joints_now.copy()
        for track in range(joints_now.shape[0]):
            factors[track], _ = depth_factors(joints_now[track], rays[track], valid[track], world_rotation,
                                              world_center, fps, support, foot_height)  # fmt: skip
            roots = _roots(joints_now[track])
            out[track] = joints_now[track] + (factors[track][:, None, None] - 1) * roots[:, None]
        return out, factors

    reference = int(np.flatnonzero(registered)[np.argmin(np.abs(np.flatnonzero(registered) - len(registered) / 2))])
    if plane is None:
        # The people's own floor: the bodies as the network placed them, seen from the reference camera.
        virtual = _to_virtual(joints, world_rotation, world_center, reference)
        # Feet still in the still virtual camera's image stand still in the world: the floor is fitted to them.
        planted = np.stack([contacts.still_feet(contacts.image_points(track), fps) for track in virtual])
        floor = ground.estimate_floor(virtual, main_track=int(np.argmax(valid.sum(axis=1))), mode=floor_mode,
                                      planted=planted, fps=fps)  # fmt: skip
        floor_world = _blender_matrix(world_rotation[reference], world_center[reference])
        # estimate_floor's matrix maps the reference camera into a world on that floor: re-base every camera.
        rebase = floor.camera_matrix_world @ np.linalg.inv(floor_world)
        world_rotation = np.einsum("ij,fjk->fik", rebase[:3, :3], world_rotation)
        world_center = world_center @ rebase[:3, :3].T + rebase[:3, 3]
        gravity_source = "the people's own floor (" + floor.describe() + ")"
    corrected, factors = compose(joints, 0.0)
    virtual = _to_virtual(corrected, world_rotation, world_center, reference)
    # The 2D keypoints seen from the virtual camera: each ray at its keypoint's corrected depth.
    lifted = rays * corrected[..., 2:3]
    virtual_2d_cam = _to_virtual(lifted, world_rotation, world_center, reference)
    with np.errstate(invalid="ignore", divide="ignore"):
        virtual_2d = virtual_2d_cam[..., :2] / virtual_2d_cam[..., 2:3] * focal + principal
    behind = ~(virtual_2d_cam[..., 2] > 0.05)
    virtual_2d[behind] = np.nan
    virtual[~(virtual[..., 2] > 0.05)] = np.nan
    if behind[valid].mean() > 0.2 if valid.any() else False:
        notes.append("the camera turns far from its middle view: some keypoints are behind the reference view")

    # World origin on the floor under the main subject's first pelvis (as for a still camera).
    main = int(np.argmax(valid.sum(axis=1)))
    roots = _roots(corrected[main])
    first = np.flatnonzero(np.all(np.isfinite(roots), axis=1))
    if len(first):
        at = first[0]
        origin = world_rotation[at] @ roots[at] + world_center[at]
        world_center = world_center - np.array([origin[0], origin[1], 0.0])
    camera_path_world = _blender_matrix(world_rotation, world_center)
    return Placement(
        joints_cam=virtual, joints_2d=virtual_2d, camera_matrix_world=camera_path_world[reference].copy(),
        camera_path_world=camera_path_world, reference=reference, scale=float(scale), scale_spread=float(spread),
        scale_source=scale_source, gravity_source=gravity_source,
        depth_factors=np.where(valid, factors, np.nan), registered=registered.copy(), method=path.method,
        ground_points=int(plane[2]) if plane is not None else 0, notes=notes,
        frames=np.asarray(getattr(take, "frames", np.arange(len(registered)))),
    )  # fmt: skip


def _to_virtual(points: np.ndarray, rotation: np.ndarray, center: np.ndarray, reference: int) -> np.ndarray:
    """(T, F, K, 3) camera-space points of each column's camera -> the camera of column `reference`."""
    world = np.einsum("fij,tfkj->tfki", rotation, points) + center[None, :, None]
    return np.einsum("ji,tfkj->tfki", rotation[reference], world - center[reference])
