"""Floor, camera placement, contacts and foot locking (instanthmr_blender.solve.ground, .contacts)."""

import numpy as np
import pytest

from instanthmr_blender import solve
from instanthmr_blender.solve import contacts, ground
from instanthmr_blender.solve.rotations import axis_rotation
from instanthmr_blender.solve.skeleton import BONE_INDEX
from testkit.cmu_take import cmu_take


def test_camera_world_conversion_round_trip_and_axes():
    normal = np.array([0.0, -np.cos(0.2), np.sin(0.2)])  # camera pitched down by 0.2 rad
    matrix = ground.camera_matrix_from_floor(normal, -1.5, np.array([0.3, 0.0, 4.0]))
    rotation = matrix[:3, :3]
    assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.isclose(np.linalg.det(rotation), 1.0)
    points = np.random.default_rng(0).normal(size=(20, 3))
    assert np.allclose(ground.world_to_camera(ground.camera_to_world(points, matrix), matrix), points)
    # Floor points map to z = 0, the floor normal to world +Z, the pelvis origin above the world origin.
    floor_points = np.array([[x, 0.0, z] for x in (-1.0, 1.0) for z in (2.0, 6.0)])
    floor_points += (-1.5 - floor_points @ normal)[:, None] * normal
    assert np.allclose(ground.camera_to_world(floor_points, matrix)[:, 2], 0.0)
    up = ground.camera_to_world(normal, matrix) - ground.camera_to_world(np.zeros(3), matrix)
    assert np.allclose(up, [0, 0, 1])
    assert np.allclose(ground.camera_to_world(np.array([0.3, 0.0, 4.0]), matrix)[:2], 0.0)
    # The camera looks along world +Y (projected on the floor), and matrix @ (x, -y, -z, 1) is the contract.
    forward = ground.camera_to_world(np.array([0.0, 0.0, 1.0]), matrix) - ground.camera_to_world(np.zeros(3), matrix)
    assert forward[1] > 0.9 and abs(forward[0]) < 1e-9
    point = np.array([0.2, -0.4, 3.0])
    assert np.allclose(matrix @ [point[0], -point[1], -point[2], 1.0], [*ground.camera_to_world(point, matrix), 1])


def test_ransac_recovers_a_tilted_floor_with_raised_feet():
    rng = np.random.default_rng(3)
    normal = axis_rotation("X", np.radians(12.0)) @ axis_rotation("Z", np.radians(5.0)) @ [0.0, -1.0, 0.0]
    offset = -1.3
    # Feet on the floor (1 cm noise) and 35% of points on raised feet 5-40 cm up.
    spots = rng.uniform([-1.5, 2.0], [1.5, 7.0], size=(400, 2)) @ np.array([[1, 0, 0], [0, 0, 1.0]])
    spots -= np.outer(spots @ normal - offset, normal)
    heights = np.where(rng.random(400) < 0.35, rng.uniform(0.05, 0.4, 400), 0.0) + rng.normal(0, 0.01, 400)
    points = spots + heights[:, None] * normal
    fitted, fitted_offset, inliers = ground.fit_plane_ransac(points, np.array([0.0, -1.0, 0.0]))
    assert np.degrees(np.arccos(np.clip(fitted @ normal, -1, 1))) < 0.5
    assert fitted_offset == pytest.approx(offset, abs=0.005)
    assert 0.55 < inliers.mean() < 0.75


def test_floor_on_cmu_and_fallback_for_a_single_image(fixtures_dir):
    take = cmu_take(fixtures_dir, pitch_degrees=15.0)
    floor = ground.estimate_floor(take.joints_cam)
    assert floor.method == "ransac"
    # The CMU floor under the toe bases itself tilts ~0.7-0.9 degrees over the capture volume.
    assert np.degrees(np.arccos(floor.normal_cam @ take.floor_normal_cam)) < 2.0
    single = ground.estimate_floor(take.joints_cam[:, :1])
    assert single.method == "camera"
    assert np.allclose(single.normal_cam, [0, -1, 0])
    world = ground.camera_to_world(take.joints_cam[0, 0], single.camera_matrix_world)
    assert np.nanmin(world[[13, 14, 15, 18], 2]) == pytest.approx(0.0, abs=1e-6)  # the lowest foot point
    no_feet = take.joints_cam[:, :1].copy()
    no_feet[..., 11:21, :] = np.nan
    hips = ground.camera_to_world(no_feet[0, 0, [9, 10]], ground.estimate_floor(no_feet).camera_matrix_world)
    assert hips.mean(axis=0)[2] == pytest.approx(ground.FALLBACK_PELVIS_HEIGHT, abs=1e-6)
    with pytest.raises(ValueError, match="floor mode"):
        ground.estimate_floor(take.joints_cam, mode="sky")


def test_two_bone_ik_keeps_lengths_and_plane():
    rng = np.random.default_rng(4)
    root = rng.normal(size=(50, 3))
    middle = root + rng.normal(size=(50, 3))
    target = root + 0.5 * rng.normal(size=(50, 3))
    upper, lower = np.full(50, 1.2), np.full(50, 1.0)
    new = contacts.two_bone_ik(root, middle, target, upper, lower)
    assert np.allclose(np.linalg.norm(new - root, axis=1), 1.2)
    reachable = np.linalg.norm(target - root, axis=1) < 2.2
    assert np.allclose(np.linalg.norm(target - new, axis=1)[reachable], 1.0)
    plane = np.cross(middle - root, target - root)
    assert np.allclose(np.sum((new - root) * plane, axis=1), 0.0, atol=1e-9)


def test_contacts_and_foot_lock_stop_sliding(fixtures_dir):
    take = cmu_take(fixtures_dir, start=1)
    clean = take.joints_cam[0].astype(np.float64)
    clean_world = ground.camera_to_world(clean, ground.estimate_floor(clean[None]).camera_matrix_world)
    truth = contacts.detect_foot_contacts(clean_world, take.row_fps)
    assert 0.5 < truth.mean() < 0.9  # the subject hops: feet planted most of the time
    noisy = take
    noisy.joints_cam = (clean + np.random.default_rng(2).normal(0, 0.02, clean.shape))[None]
    slides = {}
    for lock in (False, True):
        person = solve.solve_take(noisy, solve.SolveOptions(foot_lock=lock)).persons[0]
        # Detection on noisy input agrees with detection on the clean motion.
        assert np.mean(person.contacts == truth) > 0.9
        heads, tails = solve.forward_kinematics(person.rest, person.quats, person.root_location)
        speeds = []
        for column, side in enumerate("LR"):
            planted = person.contacts[1:, column] & person.contacts[:-1, column]
            foot = BONE_INDEX[f"foot.{side}"]
            for ends in (heads, tails):  # ankle and toe
                step = np.linalg.norm(np.diff(ends[:, foot, :2], axis=0), axis=1) * take.row_fps
                speeds.append(step[planted].mean())
        slides[lock] = max(speeds)
    assert slides[True] < 0.01  # metres per second
    assert slides[False] > 5 * slides[True]
