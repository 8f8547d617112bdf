"""Rotation maths for the solve: quaternions (w, x, y, z), rotation matrices and frames, vectorised numpy.

Every function takes arrays with any number of leading axes (`(..., 4)` quaternions, `(..., 3, 3)` matrices)
so a whole clip of bones is converted in one call. No Euler angles anywhere in the solve (gimbal lock).
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def normalize(vectors: np.ndarray, axis: int = -1) -> np.ndarray:
    """Unit vectors along `axis`; zero vectors stay zero (never NaN from a division by zero)."""
    norm = np.linalg.norm(vectors, axis=axis, keepdims=True)
    return vectors / np.where(norm > _EPS, norm, 1.0)


def quat_identity(shape: tuple[int, ...] = ()) -> np.ndarray:
    """Identity quaternions `(*shape, 4)` float64."""
    quats = np.zeros((*shape, 4))
    quats[..., 0] = 1.0
    return quats


def quat_normalize(quats: np.ndarray) -> np.ndarray:
    return normalize(quats)


def quat_conjugate(quats: np.ndarray) -> np.ndarray:
    """The inverse of unit quaternions `(..., 4)`."""
    return quats * np.array([1.0, -1.0, -1.0, -1.0])


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product `a * b` (apply b first, then a), broadcasting `(..., 4)`."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def quat_rotate(quats: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Rotate vectors `(..., 3)` by unit quaternions `(..., 4)`."""
    return np.einsum("...ij,...j->...i", matrix_from_quat(quats), vectors)


def matrix_from_quat(quats: np.ndarray) -> np.ndarray:
    """Rotation matrices `(..., 3, 3)` from unit quaternions `(..., 4)` (w, x, y, z)."""
    q = normalize(np.asarray(quats, dtype=np.float64))
    w, x, y, z = np.moveaxis(q, -1, 0)
    matrices = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )
    return matrices.reshape(*q.shape[:-1], 3, 3)


def quat_from_matrix(matrices: np.ndarray) -> np.ndarray:
    """Unit quaternions `(..., 4)` from rotation matrices `(..., 3, 3)`, w >= 0.

    Shepperd's method: pick the largest of w, x, y, z to divide by, so precision never collapses
    near 180 degree rotations (where w -> 0).
    """
    m = np.asarray(matrices, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # Four candidate solutions, each well conditioned when its leading component is the largest.
    candidates = np.stack(
        [
            np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], axis=-1),
            np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], axis=-1),
            np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], axis=-1),
            np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], axis=-1),
        ],
        axis=-2,
    )
    diagonal = np.stack([m00 + m11 + m22, m00, m11, m22], axis=-1)
    best = np.argmax(diagonal, axis=-1)
    quats = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    quats = normalize(quats)
    return np.where(quats[..., :1] < 0, -quats, quats)


def quat_log(quats: np.ndarray) -> np.ndarray:
    """Rotation vectors `(..., 3)` (axis * angle, radians) of unit quaternions, using the w >= 0 hemisphere."""
    q = np.where(quats[..., :1] < 0, -quats, quats)
    vector = q[..., 1:]
    sin_half = np.linalg.norm(vector, axis=-1, keepdims=True)
    half_angle = np.arctan2(sin_half, q[..., :1])
    scale = np.where(sin_half > 1e-9, half_angle / np.where(sin_half > 1e-9, sin_half, 1.0), 1.0)
    return 2.0 * vector * scale


def quat_exp(rotation_vectors: np.ndarray) -> np.ndarray:
    """Unit quaternions `(..., 4)` from rotation vectors `(..., 3)` (axis * angle, radians)."""
    angle = np.linalg.norm(rotation_vectors, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(half)/angle -> 1/2 as angle -> 0
    scale = np.where(angle > 1e-9, np.sin(half) / np.where(angle > 1e-9, angle, 1.0), 0.5)
    return np.concatenate([np.cos(half), rotation_vectors * scale], axis=-1)


def quat_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation angle (radians) between orientations `a` and `b` `(..., 4)`; sign-independent."""
    dot = np.abs(np.sum(normalize(a) * normalize(b), axis=-1))
    return 2.0 * np.arccos(np.clip(dot, 0.0, 1.0))


def quat_slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation from `a` (t=0) to `b` (t=1) along the shorter arc; broadcasting `(..., 4)`."""
    a = normalize(np.asarray(a, dtype=np.float64))
    b = normalize(np.asarray(b, dtype=np.float64))
    t = np.asarray(t, dtype=np.float64)
    if t.ndim and t.shape[-1:] != (1,):
        t = t[..., None]
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    nearly_same = sin_theta < 1e-6
    safe_sin = np.where(nearly_same, 1.0, sin_theta)
    weight_a = np.where(nearly_same, 1.0 - t, np.sin((1.0 - t) * theta) / safe_sin)
    weight_b = np.where(nearly_same, t, np.sin(t * theta) / safe_sin)
    return normalize(weight_a * a + weight_b * b)


def quat_make_continuous(quats: np.ndarray, axis: int = 0) -> np.ndarray:
    """Flip signs along `axis` (time) so consecutive quaternions share a hemisphere (dot >= 0).

    q and -q are the same rotation, but F-curves interpolate the numbers: a sign flip between two keys
    makes Blender spin the bone the long way round. NaN entries are skipped: the next valid quaternion is
    compared with the last valid one.
    """
    q = np.moveaxis(np.array(quats, dtype=np.float64, copy=True), axis, 0)
    tracks = q.reshape(q.shape[0], -1, 4)
    for channel in range(tracks.shape[1]):
        track = tracks[:, channel]
        valid = np.flatnonzero(np.all(np.isfinite(track), axis=-1))
        if len(valid) < 2:
            continue
        # Each valid quaternion flips when an odd number of sign changes precede it.
        changes = np.sum(track[valid[1:]] * track[valid[:-1]], axis=-1) < 0
        parity = np.concatenate([[0], np.cumsum(changes)]) % 2
        track[valid] *= np.where(parity == 1, -1.0, 1.0)[:, None]
    return np.moveaxis(tracks.reshape(q.shape), 0, axis)


def frame_from_axes(y_axis: np.ndarray, z_hint: np.ndarray) -> np.ndarray:
    """Right-handed orthonormal frames `(..., 3, 3)` (columns X, Y, Z) from a primary Y and a Z hint.

    Y is kept exactly (normalised); Z is the hint made perpendicular to Y; X = Y x Z. This is how a bone
    frame is built from its head->tail direction (Y, Blender's bone axis) and a roll reference.
    """
    y = normalize(y_axis)
    z = normalize(z_hint - np.sum(z_hint * y, axis=-1, keepdims=True) * y)
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=-1)


def frame_from_x_y(x_axis: np.ndarray, y_hint: np.ndarray) -> np.ndarray:
    """Right-handed orthonormal frames `(..., 3, 3)` keeping X exactly and Y as close to `y_hint` as possible."""
    x = normalize(x_axis)
    y = normalize(y_hint - np.sum(y_hint * x, axis=-1, keepdims=True) * x)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


def rotation_between(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Smallest rotation matrices `(..., 3, 3)` taking unit direction `source` onto `target` (Rodrigues)."""
    a = normalize(source)
    b = normalize(target)
    axis = np.cross(a, b)
    cos = np.sum(a * b, axis=-1)
    sin = np.linalg.norm(axis, axis=-1)
    # Opposite vectors: any axis perpendicular to `a` works; choose one deterministically.
    fallback = np.cross(a, np.array([1.0, 0.0, 0.0]))
    fallback = np.where(
        np.linalg.norm(fallback, axis=-1, keepdims=True) < 1e-6, np.cross(a, np.array([0.0, 1.0, 0.0])), fallback
    )
    axis = np.where((sin < 1e-9)[..., None], normalize(fallback), axis / np.where(sin > 1e-9, sin, 1.0)[..., None])
    angle = np.arctan2(sin, cos)
    return matrix_from_quat(quat_exp(axis * angle[..., None]))


def axis_rotation(axis: str, angles: np.ndarray) -> np.ndarray:
    """Rotation matrices `(..., 3, 3)` about a principal axis "X", "Y" or "Z" by `angles` (radians)."""
    angles = np.asarray(angles, dtype=np.float64)
    c, s = np.cos(angles), np.sin(angles)
    one, zero = np.ones_like(angles), np.zeros_like(angles)
    rows = {
        "X": [one, zero, zero, zero, c, -s, zero, s, c],
        "Y": [c, zero, s, zero, one, zero, -s, zero, c],
        "Z": [c, -s, zero, s, c, zero, zero, zero, one],
    }[axis.upper()]
    return np.stack(rows, axis=-1).reshape(*angles.shape, 3, 3)
