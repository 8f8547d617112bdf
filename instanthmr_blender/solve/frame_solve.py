"""The skeleton solve of ONE frame, fast: live capture's per-frame pose (live.py).

`skeleton_solve.solve_pose` is vectorised over frames: a take of thousands of frames costs little per frame, but a
single frame pays numpy's per-call overhead on tiny arrays about 200 times per bone (measured: 140-170 ms per
frame, the live preview updated 2-4 times a second). `FramePoseSolver` does exactly what `solve_pose` does for a
one-frame clip (the same rig, the same rules for every bone, the same rotations: `tests/engine/test_live.py`
checks it against `solve_pose` frame by frame), in plain Python floats on 3-vectors, with everything that depends
only on the rest rig (relative rest rotations, head offsets, keypoint and hinge lookups) worked out once per rest
pose. Hinge rolls (elbows, knees, fingers) carry over from the solver's previous frame as the offline solve
carries them from the previous row, so a limb passing through straight keeps its roll (`reset()` starts afresh:
then a frame is solved exactly as `solve_pose` solves a one-frame clip). What a single frame cannot have is a
future: the spine bow's neck distance is the frame's own (the offline solve smooths it over 0.1 s both ways).

Vectors are (x, y, z) tuples; matrices are 9-tuples, row-major; quaternions (w, x, y, z).
"""

from __future__ import annotations

import math

import numpy as np

from .skeleton import BONE_INDEX, CAPTURE_RIG, MHR70_INDEX, VIRTUAL_JOINTS
from .skeleton_solve import (
    BEND_DEGREES,
    REVERSED_DEGREES,
    RigRest,
)

_EPS = 1e-12  # rotations.normalize's zero guard
_NAN3 = (math.nan, math.nan, math.nan)
_IDENTITY_QUAT = (1.0, 0.0, 0.0, 0.0)


def _finite(v) -> bool:
    return math.isfinite(v[0] + v[1] + v[2])  # a NaN or an infinity anywhere makes the sum non-finite


def _sub(a, b):
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _add(a, b):
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _scale(a, s):
    return (a[0] * s, a[1] * s, a[2] * s)


def _dot(a, b) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _norm(a) -> float:
    return math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])


def _normalize(a):
    """rotations.normalize: zero vectors stay zero, NaN stays NaN."""
    n = _norm(a)
    return (a[0] / n, a[1] / n, a[2] / n) if n > _EPS else a


def _project(z, y):
    """skeleton_solve._project: z made perpendicular to y, normalised."""
    along = _dot(z, y)
    return _normalize((z[0] - along * y[0], z[1] - along * y[1], z[2] - along * y[2]))


def _column(m, j: int):
    return (m[j], m[3 + j], m[6 + j])


def _columns(x, y, z):
    """The matrix with columns x, y, z."""
    return (x[0], y[0], z[0], x[1], y[1], z[1], x[2], y[2], z[2])


def _mat_vec(m, v):
    return (m[0] * v[0] + m[1] * v[1] + m[2] * v[2],
            m[3] * v[0] + m[4] * v[1] + m[5] * v[2],
            m[6] * v[0] + m[7] * v[1] + m[8] * v[2])  # fmt: skip


def _mat_t_vec(m, v):
    """m.T @ v"""
    return (m[0] * v[0] + m[3] * v[1] + m[6] * v[2],
            m[1] * v[0] + m[4] * v[1] + m[7] * v[2],
            m[2] * v[0] + m[5] * v[1] + m[8] * v[2])  # fmt: skip


def _mat_mul(a, b):
    return tuple(
        a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j] for i in range(3) for j in range(3)
    )


def _mat_t_mul(a, b):
    """a.T @ b"""
    return tuple(a[i] * b[j] + a[3 + i] * b[3 + j] + a[6 + i] * b[6 + j] for i in range(3) for j in range(3))


def _matrix_from_quat(q):
    """rotations.matrix_from_quat (the quaternion normalised first)."""
    n = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    if n > _EPS:
        q = (q[0] / n, q[1] / n, q[2] / n, q[3] / n)
    w, x, y, z = q
    return (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y))  # fmt: skip


def _quat_from_matrix(m):
    """rotations.quat_from_matrix (Shepperd's method, w >= 0)."""
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    diagonal = (m00 + m11 + m22, m00, m11, m22)
    best = max(range(4), key=diagonal.__getitem__)  # the first of equal maxima, as numpy's argmax
    if best == 0:
        q = (1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01)
    elif best == 1:
        q = (m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20)
    elif best == 2:
        q = (m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21)
    else:
        q = (m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22)
    n = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    if n > _EPS:
        q = (q[0] / n, q[1] / n, q[2] / n, q[3] / n)
    return (-q[0], -q[1], -q[2], -q[3]) if q[0] < 0 else q


def _rotation_between(source, target):
    """rotations.rotation_between: the smallest rotation taking direction source onto target (Rodrigues)."""
    a, b = _normalize(source), _normalize(target)
    axis = _cross(a, b)
    cos, sin = _dot(a, b), _norm(axis)
    if sin < 1e-9:
        fallback = _cross(a, (1.0, 0.0, 0.0))
        if _norm(fallback) < 1e-6:
            fallback = _cross(a, (0.0, 1.0, 0.0))
        axis = _normalize(fallback)
    else:
        axis = (axis[0] / sin, axis[1] / sin, axis[2] / sin) if sin > 1e-9 else axis
    angle = math.atan2(sin, cos)
    vector = _scale(axis, angle)  # quat_exp of the rotation vector
    length = _norm(vector)
    half = 0.5 * length
    s = math.sin(half) / length if length > 1e-9 else 0.5
    return _matrix_from_quat((math.cos(half), vector[0] * s, vector[1] * s, vector[2] * s))


def _axis_to_z(reference, axis: str, y):
    """skeleton_solve._axis_to_z."""
    if axis[0] != "+":
        reference = (-reference[0], -reference[1], -reference[2])
    return reference if axis[1] == "Z" else _cross(reference, y)


def _clip(value: float, low: float, high: float) -> float:
    return value if math.isnan(value) else min(max(value, low), high)


class _Bone:
    """What the per-frame solve of one bone needs from the rest rig, worked out once."""

    def __init__(self, rest: RigRest, b: int) -> None:
        bone = CAPTURE_RIG[b]
        p = int(rest.parents[b])
        rest_p, rest_b = rest.rest_matrices[p], rest.rest_matrices[b]
        self.index = b
        self.parent = p
        self.relative = tuple((rest_p.T @ rest_b).ravel().tolist())  # carry = posed[p] @ relative
        self.offset = tuple((rest_p.T @ (rest.heads[b] - rest.heads[p])).tolist())
        self.is_head = bone.name == "head"
        self.is_spine_middle = bone.tail_joint == "spine_upper"
        if bone.tail_kp >= 0:
            self.tail = ((bone.tail_kp, 1.0),)
        elif bone.tail_joint in VIRTUAL_JOINTS:
            self.tail = tuple(VIRTUAL_JOINTS[bone.tail_joint].items())
        else:
            self.tail = ()
        self.bend = None
        if bone.bend_partner:
            partner = CAPTURE_RIG[BONE_INDEX[bone.bend_partner]]
            self.bend = (partner.parent == bone.name, partner.tail_kp, bone.tail_kp, bone.bend_axis)
        self.side = (bone.side_refs, bone.side_average, bone.side_axis) if bone.side_refs else None


def _side_reference(side_refs, side_average: bool, kp):
    """skeleton_solve._side_reference for one frame: the side vector, NaN when none is known."""
    if side_average:
        total, count = (0.0, 0.0, 0.0), 0
        for a, b in side_refs:
            vector = _normalize(_sub(kp[a], kp[b]))
            if _finite(vector):
                total, count = _add(total, vector), count + 1
        return total if count else _NAN3
    for a, b in side_refs:
        vector = _sub(kp[a], kp[b])
        if _finite(vector):
            return vector
    return _NAN3


def _frame_from_axes(y, z):
    """rotations.frame_from_axes: Y kept, Z the hint made perpendicular, X = Y x Z."""
    y = _normalize(y)
    z = _project(z, y)
    return _columns(_cross(y, z), y, z)


class FramePoseSolver:
    """`solve_pose(rest, keypoints, spine_lengths, 0, fps)` one frame at a time, without the per-call set-up:
    built once per rest pose (a live person's calibrated rig). Successive `solve` calls are successive frames
    (hinge rolls carry over, see the module docstring); fps only sets the spine bow's smoothing, which a single
    frame does not have, so it is not needed."""

    def __init__(self, rest: RigRest, spine_lengths: tuple[float, float]) -> None:
        self.rest = rest
        self.spine_lengths = (float(spine_lengths[0]), float(spine_lengths[1]))
        self.rest_rot = [tuple(m.ravel().tolist()) for m in rest.rest_matrices]
        self.rest_head0 = tuple(rest.heads[0].tolist())
        self.bones = [None] + [_Bone(rest, b) for b in range(1, rest.num_bones)]
        self.root_side = (CAPTURE_RIG[0].side_refs, CAPTURE_RIG[0].side_average)
        k = MHR70_INDEX
        self.hips = (k["left_hip"], k["right_hip"])
        self.shoulders = (k["left_shoulder"], k["right_shoulder"])
        self.neck = k["neck"]
        self.ears, self.eyes, self.nose = (k["left_ear"], k["right_ear"]), (k["left_eye"], k["right_eye"]), k["nose"]
        self._rolls: list = [None] * rest.num_bones  # each hinge's last roll, in its carried frame

    def reset(self) -> None:
        """Forget the carried hinge rolls: the next frame starts a new run (solve_pose's first row)."""
        self._rolls = [None] * self.rest.num_bones

    def solve(self, keypoints_world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """keypoints_world: (70, 3) Z up, metres, NaN where absent. Returns quats (B, 4) local rotations
        (w, x, y, z), root_location (3,), keyed (B,) bool and root_keyed: solve_pose's rows for this frame
        (bones not known in it get the identity, unkeyed)."""
        kp = [tuple(point) for point in np.asarray(keypoints_world, dtype=np.float64).tolist()]
        count = self.rest.num_bones
        quats: list = [_IDENTITY_QUAT] * count
        keyed = [False] * count
        posed_rot: list = [None] * count
        posed_head: list = [None] * count

        # Root: skeleton_solve._pelvis_frames, hips exact, location from the hip midpoint.
        left_hip, right_hip = kp[self.hips[0]], kp[self.hips[1]]
        hips_mid = _add(_scale(left_hip, 0.5), _scale(right_hip, 0.5))
        up = _sub(kp[self.neck], hips_mid)
        if not _finite(up):
            shoulders = _scale(_add(kp[self.shoulders[0]], kp[self.shoulders[1]]), 0.5)
            up = _sub(shoulders, hips_mid)
        if not _finite(up):
            up = (0.0, 0.0, 1.0)
        x = _normalize(_side_reference(*self.root_side, kp))
        y = _project(up, x)
        pelvis = _columns(x, y, _cross(x, y))
        rest_rot0 = self.rest_rot[0]
        root_location = (0.0, 0.0, 0.0)
        root_keyed = _finite(hips_mid) and math.isfinite(sum(pelvis))
        if root_keyed:
            quats[0] = _quat_from_matrix(_mat_t_mul(rest_rot0, pelvis))
            keyed[0] = True
            root_location = _mat_t_vec(rest_rot0, _sub(hips_mid, self.rest_head0))
        posed_rot[0] = _mat_mul(rest_rot0, _matrix_from_quat(quats[0]))
        posed_head[0] = _add(self.rest_head0, _mat_vec(rest_rot0, root_location))

        for b in range(1, count):
            bone = self.bones[b]
            parent_rot = posed_rot[bone.parent]
            carry = _mat_mul(parent_rot, bone.relative)
            head = _add(posed_head[bone.parent], _mat_vec(parent_rot, bone.offset))
            target = self._head_frame(kp) if bone.is_head else self._aimed_frame(bone, kp, carry, head, posed_rot)
            if target is not None and math.isfinite(sum(target)):
                quats[b] = _quat_from_matrix(_mat_t_mul(carry, target))
                keyed[b] = True
            posed_rot[b] = _mat_mul(carry, _matrix_from_quat(quats[b]))
            posed_head[b] = head
        return np.array(quats), np.array(root_location), np.array(keyed), bool(root_keyed)

    def _tail(self, bone: _Bone, kp, head, posed_rot):
        if bone.is_spine_middle:
            # skeleton_solve._spine_middle, with the frame's own neck distance (see the module docstring)
            neck = kp[self.neck]
            back = _scale(_column(posed_rot[0], 2), -1.0)
            chord = _sub(neck, head)
            distance = _norm(chord)
            ratio = distance / (distance if distance > 1e-9 else 1.0)
            end = _add(head, _scale(chord, ratio))
            lower, upper = self.spine_lengths
            to_end = _sub(end, head)
            distance = _norm(to_end)
            divisor = distance if distance > 1e-9 else 1.0
            direction = (to_end[0] / divisor, to_end[1] / divisor, to_end[2] / divisor)
            reach = _clip(distance, abs(lower - upper) + 1e-9, lower + upper)
            cos_angle = _clip((lower**2 + reach**2 - upper**2) / (2.0 * lower * reach), -1.0, 1.0)
            pole = _normalize(_sub(back, _scale(direction, _dot(back, direction))))
            bend = math.sqrt(1.0 - cos_angle**2) if not math.isnan(cos_angle) else math.nan
            return _add(head, _scale(_add(_scale(direction, cos_angle), _scale(pole, bend)), lower))
        if len(bone.tail) == 1:
            return kp[bone.tail[0][0]]
        total = (0.0, 0.0, 0.0)
        for index, weight in bone.tail:
            total = _add(total, _scale(kp[index], weight))
        return total

    def _aimed_frame(self, bone: _Bone, kp, carry, head, posed_rot):
        """The bone's target frame: Y from its head to its target tail, the roll from its side reference, else
        its hinge, else the swing from its carried rest direction (solve_pose's rules). None when unknown."""
        tail = self._tail(bone, kp, head, posed_rot)
        delta = _sub(tail, head)
        if not (_norm(delta) > 1e-6):
            self._rolls[bone.index] = None  # an unknown frame ends the run, as in solve_pose
            return None
        y = _normalize(delta)
        z = _project(_mat_vec(_rotation_between(_column(carry, 1), y), _column(carry, 2)), y)
        if bone.bend is not None:
            z = self._hinge_roll(bone, kp, carry, y, z, _column(posed_rot[bone.parent], 1))
        if bone.side is not None:
            side_refs, side_average, side_axis = bone.side
            side = _normalize(_side_reference(side_refs, side_average, kp))
            side_z = _project(_axis_to_z(side, side_axis, y), y)
            if _finite(side_z):
                z = side_z
        return _frame_from_axes(y, z)

    def _hinge_roll(self, bone: _Bone, kp, carry, y, swing_z, parent_y):
        """skeleton_solve._bend_angles and _hinge_roll for the next frame of a run: the roll carried from the
        last frame (made perpendicular to the new direction), pulled towards the hinge by its bend."""
        partner_is_child, partner_tail, own_tail, bend_axis = bone.bend
        if partner_is_child:
            upper, lower = y, _sub(kp[partner_tail], kp[own_tail])
        else:
            upper, lower = parent_y, y
        normal = _cross(_normalize(upper), _normalize(lower))
        angle = math.degrees(math.asin(_clip(_norm(normal), 0.0, 1.0))) if _finite(normal) else math.nan
        bend_z = _project(_axis_to_z(_normalize(normal), bend_axis, y), y)
        ax, ay, az = _mat_t_vec(carry, y)
        previous = self._rolls[bone.index]
        if previous is None:
            bx, by, bz = _mat_t_vec(carry, swing_z)
        else:
            along = previous[0] * ax + previous[1] * ay + previous[2] * az
            bx, by, bz = previous[0] - along * ax, previous[1] - along * ay, previous[2] - along * az
            norm = math.sqrt(bx * bx + by * by + bz * bz)
            if norm < 1e-6:
                bx, by, bz = _mat_t_vec(carry, swing_z)
            else:
                bx, by, bz = bx / norm, by / norm, bz / norm
        bend_local = _mat_t_vec(carry, bend_z)
        weight = _clip((angle - BEND_DEGREES[0]) / (BEND_DEGREES[1] - BEND_DEGREES[0]), 0.0, 1.0)
        trust = _clip((angle - REVERSED_DEGREES[0]) / (REVERSED_DEGREES[1] - REVERSED_DEGREES[0]), 0.0, 1.0)
        if _finite(bend_local) and math.isfinite(weight) and weight > 0:
            tx, ty, tz = bend_local
            dot = bx * tx + by * ty + bz * tz
            pull = weight * (trust if dot < 0 else 1.0)
            crossed = (by * tz - bz * ty) * ax + (bz * tx - bx * tz) * ay + (bx * ty - by * tx) * az
            turn = pull * math.atan2(crossed, dot)
            c, s = math.cos(turn), math.sin(turn)
            bx, by, bz = (c * bx + s * (ay * bz - az * by), c * by + s * (az * bx - ax * bz),
                          c * bz + s * (ax * by - ay * bx))  # fmt: skip
        self._rolls[bone.index] = (bx, by, bz)
        return _mat_vec(carry, (bx, by, bz))

    def _head_frame(self, kp):
        """skeleton_solve._head_frames for one frame: X along the ears (or eyes), Z towards the nose."""
        left_ear, right_ear = kp[self.ears[0]], kp[self.ears[1]]
        side = _sub(left_ear, right_ear)
        if not _finite(side):
            side = _sub(kp[self.eyes[0]], kp[self.eyes[1]])
        centre = _add(_scale(left_ear, 0.5), _scale(right_ear, 0.5))
        forward = _sub(kp[self.nose], centre)
        if not _finite(forward):
            eyes_mid = _scale(_add(kp[self.eyes[0]], kp[self.eyes[1]]), 0.5)
            forward = _sub(eyes_mid, centre)
        x = _normalize(side)
        z = _project(forward, x)
        return _columns(x, _cross(z, x), z)
