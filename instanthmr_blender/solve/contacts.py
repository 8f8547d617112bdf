"""The contacts stage: which foot is planted when, from the evidence that holds up on real network output,
and planted feet held still on their support (legs re-solved with two-bone IK).

A foot is planted when its 2D keypoints stand still in the image (the centre of its 2D foot keypoints moves
slower than `still_speed` body lengths per second for at least `min_duration`) and it is low: its lowest
point within `height_on` of the person's support (hysteresis: it leaves above `height_off`). The 2D test is
what makes contacts reliable: depth wobble along the camera ray makes a still foot look fast in 3D, but it
does not move its 2D keypoints. Takes without 2D keypoints use the projection of the 3D keypoints, which
is as still as the foot is across the image. World space is Blender's (Z up, metres).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rotations import normalize
from .skeleton import FOOT_KEYPOINTS, LEG_KEYPOINTS, MHR70_INDEX
from .smooth import gaussian_smooth

K = MHR70_INDEX


@dataclass(frozen=True)
class ContactSettings:
    """Contact thresholds. still_speed: body lengths per second the 2D foot centre may move and count as still;
    height_on / height_off: metres of the lowest foot point above the support to start / keep a contact;
    speed_on / speed_off: 3D foot speed (m/s), used only when no image evidence is given; min_duration:
    seconds a contact must last; smoothing_seconds: Gaussian sigma applied to the tracks before the tests."""

    still_speed: float = 0.25
    height_on: float = 0.10
    height_off: float = 0.15
    speed_on: float = 0.35
    speed_off: float = 0.6
    min_duration: float = 0.1
    smoothing_seconds: float = 0.05  # 0.03: 20 mm noise at 30 fps read as lifted feet (lighter keypoint smoothing)


def image_points(
    joints_cam: np.ndarray,
    joints_2d: np.ndarray | None = None,
    focal_length: float | None = None,
    principal_point: tuple[float, float] | None = None,
) -> np.ndarray:
    """(F, 70, 2) normalised image coordinates ((u - cx) / f, (v - cy) / f) of a track: the 2D keypoints where
    given (joints_2d (F, 70, 2) pixels with the camera's focal_length and principal_point), else the
    projection of the camera-space joints_cam (F, 70, 3)."""
    joints_cam = np.asarray(joints_cam, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        points = joints_cam[..., :2] / joints_cam[..., 2:3]
    points = np.where(joints_cam[..., 2:3] > 1e-6, points, np.nan)
    if joints_2d is not None and focal_length and principal_point is not None:
        given = (np.asarray(joints_2d, dtype=np.float64) - np.asarray(principal_point)) / float(focal_length)
        points = np.where(np.all(np.isfinite(given), axis=-1)[..., None], given, points)
    return points


def body_length(image: np.ndarray) -> float:
    """The person's size in the image (same units as `image` (F, 70, 2)): median over frames of neck-to-hips
    plus mean thigh and shin length (the shoulders' middle stands in for a missing neck). NaN if unseen."""
    hips = 0.5 * (image[:, K["left_hip"]] + image[:, K["right_hip"]])
    neck = image[:, K["neck"]]
    shoulders = 0.5 * (image[:, K["left_shoulder"]] + image[:, K["right_shoulder"]])
    neck = np.where(np.all(np.isfinite(neck), axis=-1)[:, None], neck, shoulders)
    legs = np.stack([
        np.linalg.norm(image[:, K[f"{s}_hip"]] - image[:, K[f"{s}_knee"]], axis=-1)
        + np.linalg.norm(image[:, K[f"{s}_knee"]] - image[:, K[f"{s}_ankle"]], axis=-1)
        for s in ("left", "right")
    ])  # fmt: skip
    known = np.isfinite(legs)
    legs = np.where(known, legs, 0.0).sum(axis=0) / np.where(known.any(axis=0), known.sum(axis=0), np.nan)
    length = np.linalg.norm(neck - hips, axis=-1) + legs
    length = length[np.isfinite(length)]
    return float(np.median(length)) if len(length) else float("nan")


def _foot_centre(points: np.ndarray, side: str) -> np.ndarray:
    """(F, D) mean of the known foot keypoints of one side, NaN where none is known."""
    feet = points[:, list(FOOT_KEYPOINTS[side])]
    known = np.all(np.isfinite(feet), axis=-1)
    count = known.sum(axis=1)
    centre = np.where(known[..., None], feet, 0.0).sum(axis=1) / np.where(count > 0, count, 1)[:, None]
    centre[count == 0] = np.nan
    return centre


def still_feet(image: np.ndarray, fps: float, settings: ContactSettings | None = None) -> np.ndarray:
    """(F, 2) bool (left, right): the 2D foot centre moves slower than still_speed body lengths per second
    for at least min_duration. image: (F, 70, 2) normalised image coordinates (image_points)."""
    settings = settings or ContactSettings()
    image = np.asarray(image, dtype=np.float64)
    still = np.zeros((image.shape[0], 2), dtype=bool)
    length = body_length(image)
    if not np.isfinite(length) or image.shape[0] < 2:
        return still
    min_frames = max(1, int(round(settings.min_duration * fps)))
    for column, side in enumerate(("left", "right")):
        centre = gaussian_smooth(_foot_centre(image, side), settings.smoothing_seconds * fps)
        speed = np.linalg.norm(np.gradient(centre, axis=0), axis=1) * fps / length
        still[:, column] = keep_long_runs(np.nan_to_num(speed, nan=np.inf) < settings.still_speed, min_frames)
    return still


def _foot_tracks(keypoints_world: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(F,) lowest foot-point height and (F, 3) foot centre (mean of the known foot points) of one side."""
    feet = keypoints_world[:, list(FOOT_KEYPOINTS[side])]
    known = np.all(np.isfinite(feet), axis=-1)
    heights = np.where(known, feet[..., 2], np.inf).min(axis=1)
    heights = np.where(np.isfinite(heights), heights, np.nan)
    return heights, _foot_centre(keypoints_world, side)


def detect_foot_contacts(
    keypoints_world: np.ndarray,
    fps: float,
    settings: ContactSettings | None = None,
    *,
    still: np.ndarray | None = None,
    support: float | None = None,
) -> np.ndarray:
    """Foot contacts (F, 2) bool, columns (left, right), from (F, 70, 3) world keypoints (Z up, metres).

    still: (F, 2) bool from still_feet (the 2D evidence); without it a foot must also be slow in 3D (speed_on
    / speed_off). support: the height (world z, metres) the person stands on; None: each foot's own 5th
    percentile height. Tracks are lightly smoothed so keypoint noise does not read as motion; contacts shorter
    than min_duration are dropped.
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
        heights = heights - (np.nanpercentile(heights, 5) if support is None else support)
        if still is not None:
            slow_on = slow_off = still[:, column]
        else:
            centre = gaussian_smooth(centre, sigma)
            velocity = np.gradient(centre, axis=0) * fps if len(centre) > 1 else np.zeros_like(centre)
            speed = np.nan_to_num(np.linalg.norm(velocity, axis=1), nan=np.inf)
            slow_on, slow_off = speed < settings.speed_on, speed < settings.speed_off
        state = False
        for frame in range(len(heights)):
            if not np.isfinite(heights[frame]):
                state = False
            elif state:
                state = bool(heights[frame] < settings.height_off and slow_off[frame])
            else:
                state = bool(heights[frame] < settings.height_on and slow_on[frame])
            contacts[frame, column] = state
        contacts[:, column] = keep_long_runs(contacts[:, column], min_frames)
    return contacts


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of a (F,) bool mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def keep_long_runs(mask: np.ndarray, min_frames: int) -> np.ndarray:
    """The (F,) bool mask without its True runs shorter than min_frames."""
    out = np.asarray(mask, dtype=bool).copy()
    for start, end in _runs(out):
        if end - start < min_frames:
            out[start:end] = False
    return out


# How far off the straight line a knee must sit before its own side decides the bend (bend_hint below).
_STRAIGHT_CHAIN_METRES = 0.04


def two_bone_ik(
    root: np.ndarray,
    middle: np.ndarray,
    target: np.ndarray,
    upper_length: np.ndarray,
    lower_length: np.ndarray,
    bend_hint: np.ndarray | None = None,
) -> np.ndarray:
    """New middle joints (..., 3) for chains root -> middle -> end reaching `target`, with the given segment
    lengths, keeping the middle joint in its original bend plane (the plane of root, middle and target).

    Targets out of reach straighten the chain towards them. bend_hint: (..., 3) the way the joint bends when
    the chain is nearly straight (the knee goes towards the toes): it decides the plane where the original
    middle joint sits within a few centimetres of the straight line, whose side is then noise. All inputs
    broadcast over leading axes.
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
    if bend_hint is not None:
        hint = np.nan_to_num(np.asarray(bend_hint, dtype=np.float64))
        hint = hint - np.sum(hint * direction, axis=-1, keepdims=True) * direction
        pole = pole + _STRAIGHT_CHAIN_METRES * normalize(hint + 1e-12)
    pole = pole - np.sum(pole * direction, axis=-1, keepdims=True) * direction
    pole = normalize(pole)
    return root + upper_length[..., None] * (cos_root * direction + np.sqrt(1.0 - cos_root**2) * pole)


def lock_feet(
    keypoints_world: np.ndarray,
    contacts: np.ndarray,
    thigh_lengths: tuple[float, float],
    shin_lengths: tuple[float, float],
    fps: float,
    blend_seconds: float = 0.15,
    *,
    support: float | None = None,
    foot_lengths: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Hold planted feet still on their support and re-solve the knees.

    keypoints_world: (F, 70, 3) Z up, metres; contacts: (F, 2) bool (left, right); thigh/shin lengths per
    side (left, right) in metres, the rig's rest lengths. During a contact every foot keypoint is held at its
    mean position over that contact; the hold blends in over blend_seconds before the contact and out after
    it (the knee blended in with the hold). A held foot out of the leg's reach (depth noise stretches legs)
    pulls the body towards it until the leg reaches, so the rig's foot does not slide with the hips; then
    the knee is placed by two-bone IK (hip fixed, thigh and shin at their rest lengths) in the leg's original
    bend plane. support: the person's support height (world z, metres), or None: then a held foot stays at
    its mean height; with it the held foot's lowest point stands exactly on the support and no foot point of
    any frame sinks below it (the foot is lifted). foot_lengths: per side (left, right) the rig's (3,) ankle to
    big toe, small toe and heel lengths: a held foot is given exactly these, so the rig's foot lands on the
    held points (and on the support) instead of overshooting them. Returns a new (F, 70, 3) array.
    """
    out = np.array(keypoints_world, dtype=np.float64, copy=True)
    count = out.shape[0]
    blend = max(1, int(round(blend_seconds * fps)))
    weights = np.zeros((count, 2))
    touched = np.zeros((count, 2), dtype=bool)
    for column, side in enumerate(("left", "right")):
        foot = list(FOOT_KEYPOINTS[side])
        weight = weights[:, column]
        held = np.zeros((count, len(foot), 3))
        for start, end in _runs(contacts[:, column]):
            segment = keypoints_world[start:end, foot]
            seen = np.all(np.isfinite(segment), axis=-1)
            anchor = np.where(seen[..., None], segment, 0.0).sum(axis=0) / np.maximum(seen.sum(axis=0), 1)[:, None]
            anchor[~seen.any(axis=0)] = np.nan  # (4, 3): a foot point never seen in this contact stays free
            if foot_lengths is not None:
                toes = anchor[1:] - anchor[0]
                distance = np.linalg.norm(toes, axis=-1, keepdims=True)
                wanted = np.asarray(foot_lengths[column], dtype=np.float64)[:, None]
                scale = wanted / np.where(distance > 1e-9, distance, np.nan)
                anchor[1:] = np.where(np.isfinite(scale), anchor[0] + toes * scale, anchor[1:])
            if support is not None and np.isfinite(anchor[:, 2]).any():
                anchor[:, 2] += support - np.nanmin(anchor[:, 2])  # standing on the support, not in or above it
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
        if locked.any():
            w = weight[locked][:, None, None]
            original = out[locked][:, foot]
            anchor = held[locked]
            out[np.ix_(np.flatnonzero(locked), foot)] = np.where(
                np.isfinite(anchor) & np.isfinite(original), (1.0 - w) * original + w * anchor, original
            )
        if support is not None:
            lowest = np.nanmin(np.where(np.isfinite(out[:, foot, 2]), out[:, foot, 2], np.inf), axis=1)
            sunk = np.isfinite(lowest) & (lowest < support)
            out[np.ix_(np.flatnonzero(sunk), foot, [2])] += (support - lowest[sunk])[:, None, None]
            locked = locked | sunk
        touched[:, column] = locked
    _keep_held_feet_in_reach(out, weights, thigh_lengths, shin_lengths)
    for column, side in enumerate(("left", "right")):
        locked = touched[:, column]
        if not locked.any():
            continue
        foot = list(FOOT_KEYPOINTS[side])
        hip, knee, ankle = LEG_KEYPOINTS[side]
        legs = out[locked]
        toes = legs[:, foot[1]] - legs[:, ankle]
        new_knee = two_bone_ik(
            legs[:, hip], legs[:, knee], legs[:, ankle],
            np.full(locked.sum(), thigh_lengths[column]), np.full(locked.sum(), shin_lengths[column]), toes,
        )  # fmt: skip
        new_knee = np.where(np.isfinite(new_knee), new_knee, legs[:, knee])
        # Blend the re-solved knee in with the hold, so the knee does not jump where a hold starts or ends; a
        # foot only lifted out of the support keeps its knee (the lift is continuous, the re-solve is not).
        blend_weight = weights[locked, column][:, None]
        out[np.flatnonzero(locked), knee] = legs[:, knee] + blend_weight * (new_knee - legs[:, knee])
    return out


def _keep_held_feet_in_reach(
    keypoints: np.ndarray, weights: np.ndarray, thigh_lengths: tuple[float, float], shin_lengths: tuple[float, float]
) -> None:
    """In place: where a held ankle (weights (F, 2) > 0) is further from its hip than the leg's length, move
    every keypoint but the held feet towards it by the excess, weighted by the hold (a few passes, so two
    held feet settle together)."""
    feet = {column: list(FOOT_KEYPOINTS[side]) for column, side in enumerate(("left", "right"))}
    for _ in range(3):
        for column, side in enumerate(("left", "right")):
            hip, _, ankle = LEG_KEYPOINTS[side]
            reach = 0.999 * (thigh_lengths[column] + shin_lengths[column])
            to_ankle = keypoints[:, ankle] - keypoints[:, hip]
            distance = np.linalg.norm(to_ankle, axis=-1)
            excess = np.nan_to_num((distance - reach) * weights[:, column], nan=0.0)
            rows = np.flatnonzero(excess > 1e-4)
            if len(rows) == 0:
                continue
            shift = to_ankle[rows] / distance[rows, None] * excess[rows, None]
            body = np.ones((len(rows), keypoints.shape[1]), dtype=bool)
            for other, points in feet.items():
                body[np.ix_(weights[rows, other] > 0, points)] = False
            keypoints[rows] += np.where(body[..., None], shift[:, None], 0.0)
