"""The skeleton solve stage: world keypoints of one person -> a T-pose capture rig and per-frame bone rotations.

Output semantics are Blender pose bones with rotation_mode QUATERNION (w, x, y, z), armature object at the
world origin with an identity transform: for bone b with parent p,
    pose_arm[b] = pose_arm[p] @ inv(rest4[p]) @ rest4[b] @ R(quat[b])
    pose_arm[root] = rest4[root] @ T(root_location) @ R(quat[root])
`forward_kinematics` implements exactly that, so the solve is checked without Blender.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .options import SolveError
from .rotations import (
    frame_from_axes,
    frame_from_x_y,
    matrix_from_quat,
    normalize,
    quat_from_matrix,
    quat_identity,
    quat_make_continuous,
    quat_slerp,
    rotation_between,
)
from .skeleton import (
    BONE_INDEX,
    BONE_NAMES,
    BONE_PARENTS,
    CAPTURE_RIG,
    MHR70_INDEX,
    VIRTUAL_JOINTS,
    BoneDef,
    mirror_name,
)
from .smooth import gaussian_smooth

# A hinge (elbow, knee, finger joint) defines the roll only once it is clearly bent: below the first
# angle its plane is noise, above the second it fully decides; in between it blends with the parent's roll.
BEND_DEGREES = (10.0, 25.0)
# A hinge bent against the inherited roll (more than 90 degrees from it) is trusted only from these angles.
REVERSED_DEGREES = (30.0, 60.0)
# The spine's reach is measured on the neck distance smoothed over this long, so keypoint noise does not
# lengthen the spine (which would bend it at every frame).
_SPINE_REACH_SMOOTHING_SECONDS = 0.15
# The two spine bones are this much longer than the neck's reach, so the spine is always slightly bowed
# (about 14 degrees per bone at full reach): a two-bone chain near straight turns millimetres of keypoint
# noise into tens of degrees of bend; bowed, 1 cm of noise moves it about 4 degrees.
_SPINE_SLACK = 1.03
_SPINE_BOW_SMOOTHING_SECONDS = 0.1
_DEFAULT_HEAD_LENGTH = 0.15  # metres, when the take never sees both ears
_DEFAULT_LENGTH = 0.05  # metres, for bones never seen (fingers of a body-only take)
_SPINE_REACH_PERCENTILE = 99.0


@dataclass
class RigRest:
    """The capture rig's rest pose (T-pose), armature space (Z up, facing -Y, left = +X, metres).

    parents: (B,) int64, -1 for the root; heads, tails: (B, 3) float64; rest_matrices: (B, 3, 3), columns are
    the bone's X, Y (head -> tail), Z axes; mhr70_head / mhr70_tail: (B,) int64 keypoint at each end or -1.
    """

    bone_names: list[str]
    parents: np.ndarray
    heads: np.ndarray
    tails: np.ndarray
    rest_matrices: np.ndarray
    mhr70_head: np.ndarray
    mhr70_tail: np.ndarray
    groups: list[str]

    @property
    def num_bones(self) -> int:
        return len(self.bone_names)

    @property
    def lengths(self) -> np.ndarray:
        """(B,) metres."""
        return np.linalg.norm(self.tails - self.heads, axis=1)

    def rest4(self) -> np.ndarray:
        """(B, 4, 4) armature-space rest matrices (rest_matrices with the head as translation)."""
        matrices = np.broadcast_to(np.eye(4), (self.num_bones, 4, 4)).copy()
        matrices[:, :3, :3] = self.rest_matrices
        matrices[:, :3, 3] = self.heads
        return matrices


# ---------------------------------------------------------------------------------------------------------
# Joint positions and roll references from keypoints.


def _virtual_joint(keypoints: np.ndarray, name: str) -> np.ndarray:
    """(F, 3) position of a linear virtual joint; NaN where any keypoint it needs is missing."""
    return sum(weight * keypoints[:, index] for index, weight in VIRTUAL_JOINTS[name].items())


def _joint(keypoints: np.ndarray, kp: int, joint_name: str) -> np.ndarray | None:
    if kp >= 0:
        return keypoints[:, kp]
    if joint_name in VIRTUAL_JOINTS:
        return _virtual_joint(keypoints, joint_name)
    return None


def _finite(vectors: np.ndarray) -> np.ndarray:
    return np.all(np.isfinite(vectors), axis=-1)


def _axis_to_z(reference: np.ndarray, axis: str, y: np.ndarray) -> np.ndarray:
    """The Z-column direction (..., 3) implied by `reference` lying along local `axis` of a frame with Y = y."""
    sign = 1.0 if axis[0] == "+" else -1.0
    reference = sign * reference
    if axis[1] == "Z":
        return reference
    return np.cross(reference, y)  # X = ref  =>  Z = X x Y


def _project(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return normalize(z - np.sum(z * y, axis=-1, keepdims=True) * y)


def _side_reference(bone: BoneDef, keypoints: np.ndarray) -> np.ndarray:
    """(F, 3) the bone's side vector from its side_refs, NaN where none is known."""
    result = np.full((keypoints.shape[0], 3), np.nan)
    if bone.side_average:
        total = np.zeros((keypoints.shape[0], 3))
        count = np.zeros(keypoints.shape[0])
        for a, b in bone.side_refs:
            vector = normalize(keypoints[:, a] - keypoints[:, b])
            known = _finite(vector)
            total[known] += vector[known]
            count += known
        return np.where((count > 0)[:, None], total, np.nan)
    for a, b in bone.side_refs:
        vector = keypoints[:, a] - keypoints[:, b]
        fill = ~_finite(result) & _finite(vector)
        result[fill] = vector[fill]
    return result


def _hand_or_pelvis_frames(bone: BoneDef, keypoints: np.ndarray, head: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """Target frames (F, 3, 3) of a bone from keypoints only (no parent), NaN where not defined: used to
    measure where children sit in it (thighs on the pelvis, knuckles on the hand)."""
    side = _side_reference(bone, keypoints)
    if bone.parent is None:
        return frame_from_x_y(side, tail - head)
    y = tail - head
    return frame_from_axes(y, _axis_to_z(side, bone.side_axis, normalize(y)))


def _pelvis_frames(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pelvis target frames (F, 3, 3) and hip midpoints (F, 3): X along the hip line (exact, so both hips
    land), Y towards the neck keypoint (or the shoulders, or world up) made perpendicular to X."""
    hips_mid = _virtual_joint(keypoints, "hips_mid")
    up = keypoints[:, MHR70_INDEX["neck"]] - hips_mid
    shoulders = 0.5 * (keypoints[:, MHR70_INDEX["left_shoulder"]] + keypoints[:, MHR70_INDEX["right_shoulder"]])
    up = np.where(_finite(up)[:, None], up, shoulders - hips_mid)
    up = np.where(_finite(up)[:, None], up, np.array([0.0, 0.0, 1.0]))
    side = _side_reference(CAPTURE_RIG[0], keypoints)
    return frame_from_x_y(side, up), hips_mid


def _spine_middle(start: np.ndarray, end: np.ndarray, lower: float, upper: float, back: np.ndarray) -> np.ndarray:
    """The joint between spine.01 and spine.02 (F, 3): a two-bone chain start -> middle -> end with the
    given lengths, bowing towards `back` (F, 3) when the neck is nearer than the chain's full length."""
    to_end = end - start
    distance = np.linalg.norm(to_end, axis=-1, keepdims=True)
    direction = to_end / np.where(distance > 1e-9, distance, 1.0)
    reach = np.clip(distance, abs(lower - upper) + 1e-9, lower + upper)
    cos_angle = np.clip((lower**2 + reach**2 - upper**2) / (2.0 * lower * reach), -1.0, 1.0)
    pole = normalize(back - np.sum(back * direction, axis=-1, keepdims=True) * direction)
    return start + lower * (cos_angle * direction + np.sqrt(1.0 - cos_angle**2) * pole)


# ---------------------------------------------------------------------------------------------------------
# The rest pose.


def _median_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return math.nan
    distance = np.linalg.norm(a - b, axis=-1)
    distance = distance[np.isfinite(distance)]
    return float(np.median(distance)) if len(distance) else math.nan


def build_rest(
    keypoints_world: np.ndarray, fps: float = 30.0, *, symmetric_lengths: bool = True
) -> tuple[RigRest, dict]:
    """The T-pose rig of one person from their world keypoints.

    keypoints_world: (F, 70, 3) metres, NaN where absent; fps: their rate. Bone lengths are medians of
    per-frame distances (left/right averaged when symmetric_lengths); children that do not start at their
    parent's head or tail (thighs, knuckles) sit at their median position in the parent's frame. The spine
    (spine.01 + spine.02) is 3% longer than the neck's reach from the pelvis. Returns the RigRest and the
    spine parameters the pose solve needs.
    """
    kp = np.asarray(keypoints_world, dtype=np.float64)
    count = len(CAPTURE_RIG)
    lengths = np.full(count, np.nan)
    offsets: dict[int, np.ndarray] = {}
    pelvis_frames, hips_mid = _pelvis_frames(kp)
    neck = kp[:, MHR70_INDEX["neck"]]
    torso_length = _median_distance(hips_mid, neck)
    if not np.isfinite(torso_length):
        raise SolveError(
            "the track never shows both hips together with the neck or both shoulders: the body cannot be solved"
        )
    lengths[0] = torso_length / 3.0
    spine_lower = hips_mid + lengths[0] * pelvis_frames[:, :, 1]
    spine_reach = np.linalg.norm(neck - spine_lower, axis=-1)
    spine_reach = gaussian_smooth(spine_reach, _SPINE_REACH_SMOOTHING_SECONDS * fps)
    spine_reach = spine_reach[np.isfinite(spine_reach)]
    reach = float(np.percentile(spine_reach, _SPINE_REACH_PERCENTILE)) if len(spine_reach) else torso_length
    lengths[BONE_INDEX["spine.01"]] = lengths[BONE_INDEX["spine.02"]] = 0.5 * reach * _SPINE_SLACK
    ears = (kp[:, MHR70_INDEX["left_ear"]], kp[:, MHR70_INDEX["right_ear"]])
    head_length = _median_distance(*ears)
    lengths[BONE_INDEX["head"]] = head_length if np.isfinite(head_length) else _DEFAULT_HEAD_LENGTH

    parent_frames: dict[int, np.ndarray] = {0: pelvis_frames}
    for b, bone in enumerate(CAPTURE_RIG):
        head = _joint(kp, bone.head_kp, bone.head_joint)
        tail = _joint(kp, bone.tail_kp, bone.tail_joint)
        if np.isnan(lengths[b]):
            lengths[b] = _median_distance(head, tail)
        if bone.name.startswith("hand"):
            parent_frames[b] = _hand_or_pelvis_frames(bone, kp, head, tail)
        p = BONE_PARENTS[b]
        if p < 0 or _starts_at_parent_end(b) is not None:
            continue
        parent = CAPTURE_RIG[p]
        parent_head = _joint(kp, parent.head_kp, parent.head_joint)
        frames = parent_frames.get(p)
        if frames is None or head is None or parent_head is None:
            continue
        local = np.einsum("fji,fj->fi", frames, head - parent_head)
        local = local[_finite(local)]
        if len(local):
            offsets[b] = np.median(local, axis=0)

    if symmetric_lengths:
        for b, name in enumerate(BONE_NAMES):
            mirror = BONE_INDEX[mirror_name(name)]
            if mirror > b and np.isfinite(lengths[b]) and np.isfinite(lengths[mirror]):
                lengths[b] = lengths[mirror] = 0.5 * (lengths[b] + lengths[mirror])
            if mirror > b and b in offsets and mirror in offsets:
                mean = 0.5 * (offsets[b] + offsets[mirror] * np.array([-1.0, 1.0, 1.0]))
                offsets[b], offsets[mirror] = mean, mean * np.array([-1.0, 1.0, 1.0])
    lengths = np.where(np.isfinite(lengths), lengths, _DEFAULT_LENGTH)

    rest_matrices = frame_from_axes(
        np.array([bone.rest_direction for bone in CAPTURE_RIG]), np.array([bone.rest_z for bone in CAPTURE_RIG])
    )
    heads = np.zeros((count, 3))
    tails = np.zeros((count, 3))
    for b, bone in enumerate(CAPTURE_RIG):
        p = BONE_PARENTS[b]
        if p < 0:
            heads[b] = 0.0
        elif (end := _starts_at_parent_end(b)) is not None:
            heads[b] = tails[p] if end == "tail" else heads[p]
        else:
            heads[b] = heads[p] + rest_matrices[p] @ offsets.get(b, _default_offset(bone))
        tails[b] = heads[b] + lengths[b] * rest_matrices[b][:, 1]
    # Stand the T-pose on the floor: the lowest rest point at z = 0.
    lift = -min(heads[:, 2].min(), tails[:, 2].min())
    heads[:, 2] += lift
    tails[:, 2] += lift
    rest = RigRest(
        bone_names=list(BONE_NAMES),
        parents=BONE_PARENTS.copy(),
        heads=heads,
        tails=tails,
        rest_matrices=rest_matrices,
        mhr70_head=np.array([bone.head_kp for bone in CAPTURE_RIG], dtype=np.int64),
        mhr70_tail=np.array([bone.tail_kp for bone in CAPTURE_RIG], dtype=np.int64),
        groups=[bone.group for bone in CAPTURE_RIG],
    )
    return rest, {"spine_lengths": (lengths[1], lengths[2])}


def _starts_at_parent_end(b: int) -> str | None:
    """"tail" when bone b starts at its parent's tail joint, "head" at its head joint, None otherwise."""
    bone, parent = CAPTURE_RIG[b], CAPTURE_RIG[BONE_PARENTS[b]]
    own = (bone.head_kp, bone.head_joint)
    if own == (parent.tail_kp, parent.tail_joint):
        return "tail"
    if own == (parent.head_kp, parent.head_joint):
        return "head"
    return None


def _default_offset(bone: BoneDef) -> np.ndarray:
    """Where a child sits in its parent's frame when the take never shows it (metres, parent-local)."""
    side = 1.0 if bone.name.endswith(".L") else -1.0
    if bone.name.startswith("thigh"):
        return np.array([side * 0.09, 0.0, 0.0])
    # Knuckles across the back of the hand, index forward (local +X of the left hand, -X of the right).
    spread = {"thumb": (0.03, 0.03), "index": (0.02, 0.09), "ring": (-0.02, 0.09), "pinky": (-0.04, 0.08)}
    across, along = spread.get(bone.name.split(".")[0], (0.0, 0.09))
    return np.array([side * across, along, 0.0])


# ---------------------------------------------------------------------------------------------------------
# Gaps.


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def fill_gaps(values: np.ndarray, known: np.ndarray, max_gap: int, *, rotation: bool) -> tuple[np.ndarray, np.ndarray]:
    """Fill unknown rows of a per-frame track.

    values: (F, D) (quaternions (F, 4) when rotation, else e.g. locations (F, 3)); known: (F,) bool.
    Gaps of at most max_gap frames between two known frames are interpolated (slerp for rotations, linear
    otherwise) and count as keyed; longer, leading and trailing gaps hold the last known value (the rest,
    identity or zero, before the first) and are not keyed. Returns (filled (F, D), keyed (F,) bool).
    """
    filled = np.array(values, dtype=np.float64, copy=True)
    keyed = known.copy()
    rest = quat_identity() if rotation else np.zeros(values.shape[1])
    for start, end in _runs(~known):
        before, after = start - 1, end
        if before >= 0 and after < len(known) and end - start <= max_gap:
            t = (np.arange(start, end) - before) / (after - before)
            if rotation:
                filled[start:end] = quat_slerp(filled[before], filled[after], t[:, None])
            else:
                filled[start:end] = filled[before] + t[:, None] * (filled[after] - filled[before])
            keyed[start:end] = True
        else:
            filled[start:end] = filled[before] if before >= 0 else rest
    return filled, keyed


# ---------------------------------------------------------------------------------------------------------
# The pose solve.


def _bend_angles(bone: BoneDef, y: np.ndarray, parent_y: np.ndarray, keypoints: np.ndarray):
    """The hinge this bone forms with bone.bend_partner: (Z-column hint (F, 3) from the hinge normal, bend
    angle (F,) degrees); NaN where the partner is not seen."""
    partner = CAPTURE_RIG[BONE_INDEX[bone.bend_partner]]
    if partner.parent == bone.name:  # the hinge is at our tail: partner is the lower bone
        upper, lower = y, keypoints[:, partner.tail_kp] - keypoints[:, bone.tail_kp]
    else:
        upper, lower = parent_y, y
    normal = np.cross(normalize(upper), normalize(lower))
    angle = np.degrees(np.arcsin(np.clip(np.linalg.norm(normal, axis=-1), 0.0, 1.0)))
    hint = _project(_axis_to_z(normalize(normal), bone.bend_axis, y), y)
    return hint, angle


def _hinge_roll(
    carry: np.ndarray, y: np.ndarray, swing_z: np.ndarray, bend_z: np.ndarray, bend_angle: np.ndarray
) -> np.ndarray:
    """Z columns (F, 3) of a hinged bone (upper arm, forearm, thigh, shin, finger segments).

    A bent hinge (over BEND_DEGREES[1]) decides the roll. As it straightens its plane turns to noise, so
    the roll is carried over from the previous frame (in the parent's frame, made perpendicular to the new
    direction) and the hinge only pulls it by its weight; a hinge bent against that carried roll (noise,
    hyperextension) pulls only once it is bent past REVERSED_DEGREES. The first frame of each run of known
    frames starts from the twist-free swing of the rest pose (swing_z). Carrying keeps the roll continuous:
    no flips when an arm passes through straight.
    """
    count = y.shape[0]
    y_local = np.einsum("fji,fj->fi", carry, y)
    swing_local = np.einsum("fji,fj->fi", carry, swing_z)
    bend_local = np.einsum("fji,fj->fi", carry, bend_z)
    weight = np.clip((bend_angle - BEND_DEGREES[0]) / (BEND_DEGREES[1] - BEND_DEGREES[0]), 0.0, 1.0)
    trust = np.clip((bend_angle - REVERSED_DEGREES[0]) / (REVERSED_DEGREES[1] - REVERSED_DEGREES[0]), 0.0, 1.0)
    known = _finite(y_local) & _finite(swing_local)
    bend_known = _finite(bend_local) & np.isfinite(weight)
    out = np.full((count, 3), np.nan)
    # A sequential recurrence over frames: plain Python floats, ten times faster than numpy per 3-vector.
    axes, swings, bends = y_local.tolist(), swing_local.tolist(), bend_local.tolist()
    weights, trusts = weight.tolist(), trust.tolist()
    known_list, bend_known_list = known.tolist(), bend_known.tolist()
    previous = None
    for frame in range(count):
        if not known_list[frame]:
            previous = None
            continue
        ax, ay, az = axes[frame]
        if previous is None:
            bx, by, bz = swings[frame]
        else:
            along = previous[0] * ax + previous[1] * ay + previous[2] * az
            bx, by, bz = previous[0] - along * ax, previous[1] - along * ay, previous[2] - along * az
            norm = math.sqrt(bx * bx + by * by + bz * bz)
            if norm < 1e-6:
                bx, by, bz = swings[frame]
            else:
                bx, by, bz = bx / norm, by / norm, bz / norm
        if bend_known_list[frame] and weights[frame] > 0:
            tx, ty, tz = bends[frame]
            dot = bx * tx + by * ty + bz * tz
            pull = weights[frame] * (trusts[frame] if dot < 0 else 1.0)
            # angle from base to target about the axis: atan2((base x target) . axis, base . target)
            crossed = (by * tz - bz * ty) * ax + (bz * tx - bx * tz) * ay + (bx * ty - by * tx) * az
            angle = pull * math.atan2(crossed, dot)
            c, s_ = math.cos(angle), math.sin(angle)
            # rotate base about the axis: cos * base + sin * (axis x base)
            bx, by, bz = (
                c * bx + s_ * (ay * bz - az * by),
                c * by + s_ * (az * bx - ax * bz),
                c * bz + s_ * (ax * by - ay * bx),
            )
        previous = (bx, by, bz)
        out[frame] = previous
    return np.einsum("fij,fj->fi", carry, out)


def _swing_carried_z(carry: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The Z column the bone would have if it swung from its carried rest direction onto y with no twist
    (the smallest rotation): the roll inherited from the parent when nothing else decides it."""
    return np.einsum("fij,fj->fi", rotation_between(carry[:, :, 1], y), carry[:, :, 2])


def _head_frames(keypoints: np.ndarray) -> np.ndarray:
    """Head target frames (F, 3, 3): X along the ears (or eyes), Z towards the nose (or the eyes' middle),
    Y = Z x X; NaN where the face is not seen."""
    k = MHR70_INDEX
    side = keypoints[:, k["left_ear"]] - keypoints[:, k["right_ear"]]
    side = np.where(_finite(side)[:, None], side, keypoints[:, k["left_eye"]] - keypoints[:, k["right_eye"]])
    centre = _virtual_joint(keypoints, "ears_mid")
    eyes_mid = 0.5 * (keypoints[:, k["left_eye"]] + keypoints[:, k["right_eye"]])
    forward = keypoints[:, k["nose"]] - centre
    forward = np.where(_finite(forward)[:, None], forward, eyes_mid - centre)
    z = _project(forward, normalize(side))
    x = normalize(side)
    return np.stack([x, np.cross(z, x), z], axis=-1)


def solve_pose(
    rest: RigRest, keypoints_world: np.ndarray, spine_lengths: tuple[float, float], max_gap: int, fps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bone rotations reproducing world keypoints on the rest rig.

    keypoints_world: (F, 70, 3) Z up, metres, fps their rate. Each bone aims from its posed head (forward kinematics of
    its parent) at its target tail, so lengths are kept and directions are exact; the roll follows the
    bone's side reference, else its hinge plane blended by bend angle with the roll inherited from the
    parent, else the inherited roll alone. Unknown bones hold their local rotation (fill_gaps).
    Returns quats (F, B, 4), root_location (F, 3), keyed (F, B) bool, root_keyed (F,) bool.
    """
    kp = np.asarray(keypoints_world, dtype=np.float64)
    frames_count, bone_count = kp.shape[0], rest.num_bones
    rest_rot, rest_head = rest.rest_matrices, rest.heads
    posed_rot = np.zeros((frames_count, bone_count, 3, 3))
    posed_head = np.zeros((frames_count, bone_count, 3))
    quats = np.zeros((frames_count, bone_count, 4))
    keyed = np.zeros((frames_count, bone_count), dtype=bool)

    # Root: hips exact, location from the hip midpoint.
    pelvis_target, hips_mid = _pelvis_frames(kp)
    root_known = _finite(hips_mid) & np.all(np.isfinite(pelvis_target), axis=(-2, -1))
    local = np.einsum("ji,fjk->fik", rest_rot[0], np.nan_to_num(pelvis_target))
    root_quats = quat_make_continuous(np.where(root_known[:, None], quat_from_matrix(local), np.nan))
    quats[:, 0], keyed[:, 0] = fill_gaps(root_quats, root_known, max_gap, rotation=True)
    location = np.einsum("ji,fj->fi", rest_rot[0], hips_mid - rest_head[0])
    root_location, root_keyed = fill_gaps(location, root_known, max_gap, rotation=False)
    posed_rot[:, 0] = rest_rot[0] @ matrix_from_quat(quats[:, 0])
    posed_head[:, 0] = rest_head[0] + root_location @ rest_rot[0].T

    head_frames = _head_frames(kp)
    for b in range(1, bone_count):
        bone, p = CAPTURE_RIG[b], int(rest.parents[b])
        # The bone's orientation with an identity local rotation: the parent's pose carries the rest offset.
        carry = posed_rot[:, p] @ (rest_rot[p].T @ rest_rot[b])
        head = posed_head[:, p] + np.einsum("fij,j->fi", posed_rot[:, p], rest_rot[p].T @ (rest_head[b] - rest_head[p]))
        if bone.name == "head":
            target = head_frames
        else:
            if bone.tail_joint == "spine_upper":
                neck = kp[:, MHR70_INDEX["neck"]]
                back = -posed_rot[:, 0][:, :, 2]
                # The bow follows the neck distance smoothed over time, so keypoint noise along the spine
                # moves the neck (by millimetres) instead of bending the spine (by tens of degrees).
                chord = neck - head
                distance = np.linalg.norm(chord, axis=-1, keepdims=True)
                steady = gaussian_smooth(distance, _SPINE_BOW_SMOOTHING_SECONDS * fps)
                steady_neck = head + chord * (steady / np.where(distance > 1e-9, distance, 1.0))
                tail = _spine_middle(head, steady_neck, spine_lengths[0], spine_lengths[1], back)
            else:
                tail = _joint(kp, bone.tail_kp, bone.tail_joint)
            y = normalize(tail - head)
            y = np.where((np.linalg.norm(tail - head, axis=-1) > 1e-6)[:, None], y, np.nan)
            z = _project(_swing_carried_z(carry, np.nan_to_num(y)), y)
            if bone.bend_partner:
                bend, angle = _bend_angles(bone, y, posed_rot[:, p][:, :, 1], kp)
                z = _hinge_roll(carry, y, z, bend, angle)
            if bone.side_refs:
                side = _side_reference(bone, kp)
                side_z = _project(_axis_to_z(normalize(side), bone.side_axis, y), y)
                z = np.where(_finite(side_z)[:, None], side_z, z)
            target = frame_from_axes(y, z)
        known = np.all(np.isfinite(target), axis=(-2, -1))
        local = np.einsum("fji,fjk->fik", carry, np.nan_to_num(target))
        bone_quats = quat_make_continuous(np.where(known[:, None], quat_from_matrix(local), np.nan))
        quats[:, b], keyed[:, b] = fill_gaps(bone_quats, known, max_gap, rotation=True)
        posed_rot[:, b] = carry @ matrix_from_quat(quats[:, b])
        posed_head[:, b] = head
    quats = quat_make_continuous(quats, axis=0)
    return quats, root_location, keyed, root_keyed


def pose_matrices(rest: RigRest, quats: np.ndarray) -> np.ndarray:
    """(F, B, 3, 3) posed armature-space bone orientations (columns X, Y, Z) from local quats (F, B, 4)."""
    local = matrix_from_quat(np.asarray(quats, dtype=np.float64))
    posed = np.zeros(local.shape[:2] + (3, 3))
    for b in range(rest.num_bones):
        p = int(rest.parents[b])
        if p < 0:
            posed[:, b] = rest.rest_matrices[b] @ local[:, b]
        else:
            posed[:, b] = posed[:, p] @ (rest.rest_matrices[p].T @ rest.rest_matrices[b]) @ local[:, b]
    return posed


def forward_kinematics(
    rest: RigRest, quats: np.ndarray, root_location: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posed armature-space bone heads and tails (F, B, 3) from local quats (F, B, 4) (w, x, y, z) and the
    root location (F, 3), exactly as Blender poses quaternion bones (module docstring)."""
    quats = np.asarray(quats, dtype=np.float64)
    rest_rot, rest_head, lengths = rest.rest_matrices, rest.heads, rest.lengths
    local = matrix_from_quat(quats)
    count = quats.shape[0]
    posed_rot = np.zeros((count, rest.num_bones, 3, 3))
    heads = np.zeros((count, rest.num_bones, 3))
    for b in range(rest.num_bones):
        p = int(rest.parents[b])
        if p < 0:
            posed_rot[:, b] = rest_rot[b] @ local[:, b]
            heads[:, b] = rest_head[b] + np.asarray(root_location) @ rest_rot[b].T
        else:
            relative = rest_rot[p].T @ rest_rot[b]
            posed_rot[:, b] = posed_rot[:, p] @ relative @ local[:, b]
            offset = rest_rot[p].T @ (rest_head[b] - rest_head[p])
            heads[:, b] = heads[:, p] + np.einsum("fij,j->fi", posed_rot[:, p], offset)
    tails = heads + lengths[None, :, None] * posed_rot[:, :, :, 1]
    return heads, tails
