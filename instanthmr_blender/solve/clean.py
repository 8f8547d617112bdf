"""The clean stage: find and repair what a pose network gets wrong before anything is smoothed.

Per track, in camera space (OpenCV axes, metres), in this order:
1. reprojection: a 3D keypoint whose projection lands far from its 2D keypoint (`joints_2d`) is dropped;
2. whole-body glitches: runs of at most `max_glitch_seconds` that jump away and back (the body's facing turns
   faster than a person can turn: a front/back flip; the hips jump along or across the camera ray faster than
   a person moves: a depth jump) are dropped, every keypoint of those frames;
3. left/right swaps: per leg, foot, arm and hand, the labelling (as given or swapped) most consistent with the
   neighbouring frames is chosen for the whole track at once (a two-state dynamic programme);
4. per-keypoint glitches: a keypoint that jumps away from the body and back within a glitch;
5. bone lengths: a keypoint whose distance to its parent joint is far off the person's own median length (and
   beyond `noise_multiple` times the track's own spread of that length);
6. dropped keypoints and frames are filled by interpolation (gaps up to `fill_frames`), and a missing neck is
   placed between the shoulders, so a track with hips and shoulders is always solvable.
Thresholds on steps are the larger of a human limit (speed, turn rate) and a multiple of the track's own
noise (its median frame-to-frame step), so noisy depth is not taken for glitches. Depth, the
axis a monocular network gets worst, counts `depth_weight` times in the distances of steps 2-4.

`CleanResult.repairs` records per frame and reason what was repaired (it feeds the quality report).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .contacts import body_length
from .skeleton import FINGER_NAMES, FOOT_KEYPOINTS, MHR70_INDEX, NUM_KEYPOINTS, finger_keypoints

K = MHR70_INDEX
# Repair reasons, in the column order of CleanResult.repairs.
REASONS = ("reprojection", "flip", "depth_jump", "swap", "limb_jump", "bone_length", "gap")
REASON_TEXT = {
    "reprojection": "3D keypoints off their 2D keypoints",
    "flip": "front/back flip",
    "depth_jump": "whole-body jump",
    "swap": "left/right swap",
    "limb_jump": "keypoint jump",
    "bone_length": "bone length off",
    "gap": "missing keypoints filled",
}


@dataclass(frozen=True)
class CleanSettings:
    """Thresholds of the clean stage.

    max_glitch_seconds: longest run treated as a glitch (away and back); turn_degrees_per_second: fastest
    body turn; root_speed / keypoint_speed: fastest hip-centre / keypoint-relative-to-hips motion (m/s);
    noise_multiple: a step must also exceed this many times the track's median step (its noise);
    depth_weight: weight of the camera-ray axis in distances (depth noise is ~4x the lateral noise);
    reprojection_tolerance: largest 3D-to-2D keypoint distance, in body lengths; bone_tolerance: largest
    relative bone-length deviation from the median (also at least bone_slack metres); swap_cost: metres per
    frame a swapped labelling must save before it is chosen.
    """

    max_glitch_seconds: float = 0.3
    turn_degrees_per_second: float = 1500.0
    root_speed: float = 4.5
    keypoint_speed: float = 9.0
    noise_multiple: float = 6.0
    depth_weight: float = 0.5
    reprojection_tolerance: float = 0.15
    bone_tolerance: float = 0.45
    bone_slack: float = 0.08
    swap_cost: float = 0.02


@dataclass
class CleanResult:
    """joints_cam: (F, 70, 3) the repaired keypoints (camera space, metres, NaN where still unknown);
    repairs: (F, len(REASONS)) bool, which repairs touched each frame; repaired_keypoints: (F, 70) bool,
    keypoints replaced or dropped; notes: completions made that are not repairs (e.g. the neck);
    image_points: (F, 70, 2) the 2D keypoints given, with the same swaps, removals and fills (or None)."""

    joints_cam: np.ndarray
    repairs: np.ndarray
    repaired_keypoints: np.ndarray
    notes: list[str] = field(default_factory=list)
    image_points: np.ndarray | None = None

    def ranges(self, reason: str | None = None) -> list[tuple[int, int, str]]:
        """[start, end) row ranges per reason (all reasons when None), in row order."""
        out = []
        for column, name in enumerate(REASONS):
            if reason is None or reason == name:
                out += [(start, end, name) for start, end in runs(self.repairs[:, column])]
        return sorted(out)

    def frames_repaired(self, *, include_gaps: bool = True) -> int:
        columns = [i for i, name in enumerate(REASONS) if include_gaps or name != "gap"]
        return int(self.repairs[:, columns].any(axis=1).sum())


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of a (F,) bool mask."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _image_body_lengths(joints: np.ndarray, image: np.ndarray) -> np.ndarray | None:
    """(F,) the person's size in the image in each frame: their metric body length (contacts.body_length of the
    3D keypoints, over the whole track) over the frame's hip depth, so a person walking towards the camera is
    measured at their own size in every frame (one length for the whole track made every keypoint of a near
    frame look far off); the 2D body length where the depth is unknown. None when neither is known."""
    metric = body_length(joints)
    fallback = body_length(image)
    depth = _hips_mid(joints)[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_frame = np.where(np.isfinite(depth) & (depth > 1e-3), metric / depth, np.nan)
    per_frame = np.where(np.isfinite(per_frame), per_frame, fallback)
    return per_frame if np.isfinite(per_frame).any() else None


def _finite(vectors: np.ndarray) -> np.ndarray:
    return np.all(np.isfinite(vectors), axis=-1)


def _weighted(vectors: np.ndarray, depth_weight: float) -> np.ndarray:
    return vectors * np.array([1.0, 1.0, depth_weight])


def _typical_step(steps: np.ndarray) -> float:
    """The median of a track's known frame-to-frame steps (0 when too few): its noise and motion scale."""
    steps = steps[np.isfinite(steps)]
    return float(np.median(steps)) if len(steps) >= 4 else 0.0


def _steps(signal: np.ndarray, distance) -> np.ndarray:
    """(F,) distance of each row from the last known row before it (NaN where either is unknown)."""
    out = np.full(len(signal), np.nan)
    known = np.flatnonzero(_finite(signal))
    if len(known) > 1:
        out[known[1:]] = distance(signal[known[1:]], signal[known[:-1]])
    return out


def glitch_segments(signal: np.ndarray, distance, limit: float, max_len: int) -> list[tuple[int, int]]:
    """Runs [a, b) of at most max_len rows that jump away (step into row a over `limit`) and come back (row
    b is nearer to row a-1 than row a was, by half the jump at least).

    signal: (F, D) NaN where unknown; distance(x, y) -> (N,) row-wise distances. Gaps are skipped over (a step
    is measured from the last known row).
    """
    steps = _steps(signal, distance)
    known = np.flatnonzero(_finite(signal))
    position = {int(row): i for i, row in enumerate(known)}
    jumps = [int(row) for row in np.flatnonzero(steps > limit)]
    segments = []
    used_until = -1
    for a in jumps:
        if a < used_until:
            continue
        before = known[position[a] - 1]
        jump = distance(signal[a][None], signal[before][None])[0]
        for b in jumps:
            if b <= a or b - a > max_len:
                continue
            back = distance(signal[b][None], signal[before][None])[0]
            if back < 0.5 * jump and back < limit * (1.0 + 0.5 * (b - a)):
                segments.append((a, b))
                used_until = b
                break
    return segments


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


def _facing(joints: np.ndarray) -> np.ndarray:
    """(F, 3) unit vector the torso faces (camera space), NaN without hips and shoulders."""
    hips = joints[:, K["left_hip"]] - joints[:, K["right_hip"]]
    shoulders = joints[:, K["left_shoulder"]] - joints[:, K["right_shoulder"]]
    across = hips + np.where(_finite(shoulders)[:, None], shoulders, 0.0)
    hips_mid = 0.5 * (joints[:, K["left_hip"]] + joints[:, K["right_hip"]])
    up = 0.5 * (joints[:, K["left_shoulder"]] + joints[:, K["right_shoulder"]]) - hips_mid
    up = np.where(_finite(up)[:, None], up, np.array([0.0, -1.0, 0.0]))
    facing = np.cross(up, across)  # camera y is down: up x left-to-right points out of the chest
    norm = np.linalg.norm(facing, axis=-1, keepdims=True)
    return facing / np.where(norm > 1e-9, norm, np.nan)


def _hips_mid(joints: np.ndarray) -> np.ndarray:
    return 0.5 * (joints[:, K["left_hip"]] + joints[:, K["right_hip"]])


# Left/right units: (left keypoints, right keypoints), largest first so a whole leg is fixed before a foot.
def _side_unit(side: str, part: str) -> list[int]:
    if part == "leg":
        return [K[f"{side}_knee"], *FOOT_KEYPOINTS[side]]
    if part == "foot":
        return list(FOOT_KEYPOINTS[side])
    hand = [K[f"{side}_wrist"]] + [kp for finger in FINGER_NAMES for kp in finger_keypoints(side, finger)]
    if part == "arm":
        return [K[f"{side}_elbow"], *hand]
    return hand


SWAP_UNITS = tuple(
    (part, _side_unit("left", part), _side_unit("right", part)) for part in ("leg", "foot", "arm", "hand")
)
# Keypoint -> its parent joint's keypoint, for the bone-length check (limbs only: the torso is checked as a whole).
BONE_CHECKS = tuple(
    (K[f"{side}_{parent}"], K[f"{side}_{child}"])
    for side in ("left", "right")
    for parent, child in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"))
)


def _swap_labelling(relative: np.ndarray, left: list[int], right: list[int], swap_cost: float) -> np.ndarray:
    """(F,) bool: frames whose left/right labels of this unit should be swapped.

    relative: (F, 70, 3) keypoints relative to the hips, depth weighted. Two states per frame (as given,
    swapped); the cost of a path is the distance the labelled keypoints travel between consecutive known
    frames plus swap_cost per swapped frame; Viterbi finds the cheapest path.
    """
    count = len(relative)
    a, b = relative[:, left], relative[:, right]
    # Per frame, the unit as labelled under each state: (F, 2, P, 3) for the left side and the right side.
    lhs = np.stack([a, b], axis=1)
    rhs = np.stack([b, a], axis=1)
    usable = np.any(_finite(a) & _finite(b), axis=1)
    frames = np.flatnonzero(usable)
    swapped = np.zeros(count, dtype=bool)
    if len(frames) < 3:
        return swapped
    # Travel between consecutive usable frames for each (state now, state before): (N-1, 2, 2).
    now, before = frames[1:], frames[:-1]
    steps = np.zeros((len(frames) - 1, 2, 2))
    for state_now in range(2):
        for state_before in range(2):
            d = np.concatenate([
                np.linalg.norm(lhs[now, state_now] - lhs[before, state_before], axis=-1),
                np.linalg.norm(rhs[now, state_now] - rhs[before, state_before], axis=-1),
            ], axis=1)  # fmt: skip
            known = np.isfinite(d)
            steps[:, state_now, state_before] = np.where(known, d, 0.0).sum(axis=1) / np.maximum(known.sum(axis=1), 1)
    # Viterbi over the two states, in plain floats (a sequential loop; numpy per step would cost more than it does).
    as_given, swap = 0.0, swap_cost  # cheapest path cost ending in each state
    back = [(0, 0)]  # per frame, the state before that the cheapest path into (as given, swapped) came from
    for (given_given, given_swapped), (swapped_given, swapped_swapped) in steps.tolist():
        into_given = (as_given + given_given, swap + given_swapped)
        into_swapped = (as_given + swapped_given, swap + swapped_swapped)
        from_given = 0 if into_given[0] <= into_given[1] else 1
        from_swapped = 0 if into_swapped[0] <= into_swapped[1] else 1
        back.append((from_given, from_swapped))
        as_given, swap = into_given[from_given], into_swapped[from_swapped] + swap_cost
    back = np.array(back, dtype=np.int8)
    cost = [as_given, swap]
    state = int(np.argmin(cost))
    for i in range(len(frames) - 1, -1, -1):
        swapped[frames[i]] = bool(state)
        state = int(back[i, state]) if i > 0 else state
    # Frames between usable ones follow the state on both sides only when they agree.
    for start, end in runs(~usable):
        if start > 0 and end < count and swapped[start - 1] and swapped[end]:
            swapped[start:end] = True
    return swapped


def fill_gaps_linear(joints: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate (F, 70, D) keypoints linearly over gaps of at most max_gap rows between known rows.
    Returns (filled copy, (F, 70) bool: filled here)."""
    out = np.array(joints, dtype=np.float64, copy=True)
    filled = np.zeros(out.shape[:2], dtype=bool)
    known = _finite(out)
    for kp in range(out.shape[1]):
        for start, end in runs(~known[:, kp]):
            if start == 0 or end >= len(out) or end - start > max_gap:
                continue
            t = (np.arange(start, end) - (start - 1)) / (end - start + 1)
            out[start:end, kp] = out[start - 1, kp] + t[:, None] * (out[end, kp] - out[start - 1, kp])
            filled[start:end, kp] = True
    return out, filled


def clean_track(
    joints_cam: np.ndarray,
    fps: float,
    image_points: np.ndarray | None = None,
    settings: CleanSettings | None = None,
    *,
    fill_frames: int = 0,
    enabled: bool = True,
) -> CleanResult:
    """Repair one track (module docstring).

    joints_cam: (F, 70, 3) camera-space keypoints (metres, NaN where absent); fps: rows per second;
    image_points: (F, 70, 2) the 2D keypoints as normalised image coordinates ((u - cx) / f, (v - cy) / f),
    or None; fill_frames: longest gap interpolated; enabled False: only the gap fill and neck completion.
    """
    settings = settings or CleanSettings()
    joints = np.array(joints_cam, dtype=np.float64, copy=True)
    image = None if image_points is None else np.array(image_points, dtype=np.float64, copy=True)
    count = len(joints)
    repairs = np.zeros((count, len(REASONS)), dtype=bool)
    touched = np.zeros((count, NUM_KEYPOINTS), dtype=bool)
    column = {name: i for i, name in enumerate(REASONS)}
    max_len = max(1, int(round(settings.max_glitch_seconds * fps)))
    w = settings.depth_weight

    def weighted_distance(x, y):
        return np.linalg.norm(_weighted(x - y, w), axis=-1)

    def drop(rows, keypoints, reason):
        rows = np.asarray(rows)
        if rows.size == 0:
            return
        sub = joints[np.ix_(rows, keypoints)]
        hit = _finite(sub)
        if not hit.any():
            return
        joints[np.ix_(rows, keypoints)] = np.nan
        if image is not None and reason not in ("reprojection", "bone_length", "depth_jump"):
            image[np.ix_(rows, keypoints)] = np.nan  # a flip or jump is in the 2D labels too
        touched[np.ix_(rows, keypoints)] |= hit
        repairs[rows[hit.any(axis=1)], column[reason]] = True

    if enabled and count > 2:
        everything = list(range(NUM_KEYPOINTS))
        # 1. 3D keypoints that contradict the 2D keypoints.
        if image is not None:
            length = _image_body_lengths(joints, image)
            with np.errstate(invalid="ignore", divide="ignore"):
                projected = joints[..., :2] / joints[..., 2:3]
            error = np.linalg.norm(projected - image, axis=-1) / length[:, None] if length is not None else None
            if error is not None:
                bad = np.nan_to_num(error, nan=0.0) > settings.reprojection_tolerance
                for kp in np.flatnonzero(bad.any(axis=0)):
                    drop(np.flatnonzero(bad[:, kp]), [int(kp)], "reprojection")
        # 2. Whole-body glitches: flips (the facing turns too fast and back) and body jumps.
        facing = _facing(joints)
        turn_limit = max(40.0, settings.turn_degrees_per_second / fps)
        for a, b in glitch_segments(facing, _angle, turn_limit, max_len):
            drop(np.arange(a, b), everything, "flip")
        root = _hips_mid(joints)
        root_steps = _steps(root, weighted_distance)
        root_limit = max(settings.root_speed / fps, settings.noise_multiple * _typical_step(root_steps))
        for a, b in glitch_segments(root, weighted_distance, root_limit, max_len):
            drop(np.arange(a, b), everything, "depth_jump")
        # 3. Left/right swaps, the whole track at once per unit.
        for _part, left, right in SWAP_UNITS:
            relative = _weighted(joints - _hips_mid(joints)[:, None], w)
            swapped = _swap_labelling(relative, left, right, settings.swap_cost)
            if swapped.any():
                rows = np.flatnonzero(swapped)
                a, b = joints[np.ix_(rows, left)].copy(), joints[np.ix_(rows, right)].copy()
                joints[np.ix_(rows, left)], joints[np.ix_(rows, right)] = b, a
                if image is not None:
                    a, b = image[np.ix_(rows, left)].copy(), image[np.ix_(rows, right)].copy()
                    image[np.ix_(rows, left)], image[np.ix_(rows, right)] = b, a
                touched[np.ix_(rows, left + right)] = True
                repairs[rows, column["swap"]] = True
        # 4. Single keypoints that jump away from the body and back.
        relative = joints - _hips_mid(joints)[:, None]
        for kp in range(NUM_KEYPOINTS):
            track = relative[:, kp]
            if _finite(track).sum() < 3:
                continue
            steps = _steps(track, weighted_distance)
            limit = max(settings.keypoint_speed / fps, settings.noise_multiple * _typical_step(steps))
            for a, b in glitch_segments(track, weighted_distance, limit, max_len):
                drop(np.arange(a, b), [kp], "limb_jump")
        # 5. Bone lengths far off the person's own.
        for parent, child in BONE_CHECKS:
            lengths = np.linalg.norm(joints[:, child] - joints[:, parent], axis=-1)
            if np.isfinite(lengths).sum() < 3:
                continue
            median = np.nanmedian(lengths)
            off = np.abs(lengths - median)
            # The track's own spread (a robust sigma) counts too: keypoint noise alone puts a short bone past a
            # fixed slack now and then over thousands of frames, which is noise, not a glitch.
            spread = settings.noise_multiple * 1.4826 * float(np.nanmedian(off))
            bad = np.nan_to_num(off, nan=0.0) > max(settings.bone_tolerance * median, settings.bone_slack, spread)
            drop(np.flatnonzero(bad), [child], "bone_length")

    # 6. Fill gaps (dropped frames, removed glitches) and complete the neck.
    was_known = _finite(joints)
    fill = max(fill_frames, max_len if enabled else 0)
    joints, filled = fill_gaps_linear(joints, fill)
    if image is not None:
        image, _ = fill_gaps_linear(image, fill)
    touched |= filled
    missing_before = ~_finite(np.asarray(joints_cam, dtype=np.float64))
    gap_rows = (filled & missing_before & ~was_known).any(axis=1)
    repairs[gap_rows, column["gap"]] = True
    notes = []
    neck, shoulders = K["neck"], (K["left_shoulder"], K["right_shoulder"])
    no_neck = ~_finite(joints[:, neck]) & _finite(joints[:, shoulders[0]]) & _finite(joints[:, shoulders[1]])
    if no_neck.any():
        joints[no_neck, neck] = 0.5 * (joints[no_neck, shoulders[0]] + joints[no_neck, shoulders[1]])
        notes.append(f"neck placed between the shoulders in {int(no_neck.sum())} frame(s)")
    return CleanResult(joints, repairs, touched, notes, image)
