"""Quaternion and frame maths (instanthmr_blender.solve.rotations)."""

import numpy as np

from instanthmr_blender.solve import rotations as r


def _random_quats(count, seed=0):
    return r.normalize(np.random.default_rng(seed).normal(size=(count, 4)))


def test_matrix_quat_round_trip_including_half_turns():
    quats = _random_quats(500)
    # Half turns (w = 0) are where naive conversions lose precision.
    quats[:3] = [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0.6, 0, 0.8]]
    matrices = r.matrix_from_quat(quats)
    assert np.allclose(matrices @ np.swapaxes(matrices, -1, -2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(matrices), 1.0)
    back = r.quat_from_matrix(matrices)
    assert np.all(back[:, 0] >= 0)
    assert np.allclose(np.abs(np.sum(back * quats, axis=1)), 1.0, atol=1e-12)


def test_multiply_matches_matrix_product_and_conjugate_inverts():
    a, b = _random_quats(50, 1), _random_quats(50, 2)
    assert np.allclose(r.matrix_from_quat(r.quat_multiply(a, b)), r.matrix_from_quat(a) @ r.matrix_from_quat(b))
    identity = r.quat_multiply(a, r.quat_conjugate(a))
    assert np.allclose(identity, r.quat_identity((50,)), atol=1e-12)
    vectors = np.random.default_rng(3).normal(size=(50, 3))
    assert np.allclose(r.quat_rotate(a, vectors), np.einsum("nij,nj->ni", r.matrix_from_quat(a), vectors))


def test_log_exp_slerp_and_angle():
    quats = _random_quats(100, 4)
    quats *= np.where(quats[:, :1] < 0, -1, 1)
    assert np.allclose(r.quat_exp(r.quat_log(quats)), quats, atol=1e-12)
    assert np.allclose(r.quat_exp(np.zeros((1, 3))), [[1, 0, 0, 0]])
    a, b = _random_quats(100, 5), _random_quats(100, 6)
    assert np.allclose(np.abs(np.sum(r.quat_slerp(a, b, 0.0) * a, axis=1)), 1.0)
    assert np.allclose(np.abs(np.sum(r.quat_slerp(a, b, 1.0) * b, axis=1)), 1.0)
    middle = r.quat_slerp(a, b, 0.5)
    assert np.allclose(r.quat_angle(a, middle), 0.5 * r.quat_angle(a, b), atol=1e-9)
    # The shorter arc even when b is given in the opposite hemisphere.
    assert np.allclose(r.quat_angle(r.quat_slerp(a, -b, 0.5), middle), 0.0, atol=1e-6)


def test_make_continuous_removes_sign_flips_and_skips_nan():
    angles = np.linspace(0, 6 * np.pi, 200)  # three full turns about Z
    quats = r.quat_exp(np.stack([0 * angles, 0 * angles, angles], axis=1))
    quats *= np.where(quats[:, :1] < 0, -1, 1)  # w >= 0 everywhere: sign flips each half turn
    quats[50:55] = np.nan
    assert np.sum(np.nansum(quats[1:] * quats[:-1], axis=1) < 0) > 0
    fixed = r.quat_make_continuous(quats)
    finite = np.all(np.isfinite(fixed), axis=1)
    valid = fixed[finite]
    assert np.all(np.sum(valid[1:] * valid[:-1], axis=1) > 0)
    assert np.allclose(r.matrix_from_quat(valid), r.matrix_from_quat(quats[finite]))
    assert np.all(np.isnan(fixed[50:55]))


def test_frames_and_rotation_between():
    rng = np.random.default_rng(7)
    y, hint = rng.normal(size=(100, 3)), rng.normal(size=(100, 3))
    frames = r.frame_from_axes(y, hint)
    assert np.allclose(frames[..., 1], r.normalize(y))
    assert np.allclose(np.linalg.det(frames), 1.0)
    assert np.all(np.sum(frames[..., 2] * hint, axis=1) > 0)
    x_frames = r.frame_from_x_y(y, hint)
    assert np.allclose(x_frames[..., 0], r.normalize(y))
    assert np.allclose(np.linalg.det(x_frames), 1.0)
    source, target = r.normalize(rng.normal(size=(100, 3))), r.normalize(rng.normal(size=(100, 3)))
    source[0], target[0] = [1, 0, 0], [-1, 0, 0]  # opposite vectors
    moved = np.einsum("nij,nj->ni", r.rotation_between(source, target), source)
    assert np.allclose(moved, target, atol=1e-9)
    assert np.allclose(r.axis_rotation("Z", np.pi / 2) @ [1, 0, 0], [0, 1, 0])
