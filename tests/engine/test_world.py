"""The moving-camera placement (solve/world.py) on a numeric case with a known truth: the CMU hops seen by a
camera that follows them, the camera path given in an arbitrary similarity frame (as a solver returns it),
with background points on the ground and walls, and body keypoints with InstantHMR-like depth errors."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import FIXTURES

from instanthmr_blender.camera.path import CameraPath
from instanthmr_blender.solve import SolveOptions, solve_take, world
from instanthmr_blender.solve.skeleton import MHR70_INDEX
from testkit import world_figures
from testkit.bvh import keypoints_from_bvh
from testkit.cmu_take import CMU_TO_MHR70, CMU_UNIT_METRES, load_cmu

FOCAL, SIZE = 512.0, (360, 640)
PRINCIPAL = np.array([320.0, 180.0])
HIPS = [MHR70_INDEX["left_hip"], MHR70_INDEX["right_hip"]]


def look_at(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-from-camera rotation (OpenCV camera axes) of a camera at `center` looking at `target`, level."""
    forward = (target - center) / np.linalg.norm(target - center)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def truth_case(frames: int = 150, pan: bool = False, seed: int = 3):
    bvh = load_cmu(FIXTURES)
    rows = np.arange(120, 120 + 4 * frames, 4)
    bvh_points = keypoints_from_bvh(bvh, CMU_TO_MHR70, scale=CMU_UNIT_METRES, frames=rows)
    people = np.stack([bvh_points[..., 0], -bvh_points[..., 2], bvh_points[..., 1]], axis=-1)  # Z up
    # CMU's lowest foot joints (ankle, ball) stand 6.4 cm over its floor (first quartile of the frames' lowest);
    # MHR70's (heel, toe tips) stand FOOT_KEYPOINT_HEIGHT over it: lower the floor as MHR70 would see it.
    people[..., 2] -= 0.064 - world.FOOT_KEYPOINT_HEIGHT
    rng = np.random.default_rng(seed)
    pelvis = people[:, HIPS].mean(axis=1)
    t = np.linspace(0.0, 1.0, frames)
    if pan:
        centers = np.tile([pelvis[0, 0] - 1.0, pelvis[0, 1] - 5.5, 1.5], (frames, 1))
    else:  # walking alongside, 4.5-5.5 m away, with bob and shake
        centers = pelvis.copy() + np.array([-1.0, -5.0, 0.0])
        centers[:, 0] += 1.5 * np.sin(2 * t)
        centers[:, 2] = 1.5 + 0.02 * np.sin(2 * math.pi * 1.8 * t * 5)
        centers += rng.normal(0, 0.01, centers.shape)
    rotation = np.stack([look_at(c, p + [0, 0, -0.1]) for c, p in zip(centers, pelvis, strict=True)])
    shake = rng.normal(0, math.radians(0.6), (frames, 3))
    for row, (a, b, _) in enumerate(shake):
        rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
        ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
        rotation[row] = rotation[row] @ rx @ ry
    cam_true = np.einsum("fji,fkj->fki", rotation, people - centers[:, None])
    depth_error = np.convolve(rng.normal(0, 1, frames + 30), np.ones(20) / 20, "same")[15:-15]
    depth_error = 0.03 * depth_error / depth_error.std() + rng.normal(0, 0.01, frames)
    roots = cam_true[:, HIPS].mean(axis=1)
    rays = roots / np.linalg.norm(roots, axis=1, keepdims=True)
    noisy = cam_true + (depth_error * np.linalg.norm(roots, axis=1))[:, None, None] * rays[:, None]
    noisy += rng.normal(0, 0.015, noisy.shape)
    pixels = cam_true[..., :2] / cam_true[..., 2:3] * FOCAL + PRINCIPAL + rng.normal(0, 1.5, cam_true.shape[:-1] + (2,))
    ground = np.concatenate([rng.uniform(-15, 15, (1500, 2)), np.zeros((1500, 1))], axis=1)
    wall = np.stack([rng.uniform(-15, 15, 600), np.full(600, 12.0), rng.uniform(0, 4, 600)], axis=1)
    background = np.concatenate([ground, wall])
    # The solver's own frame: an arbitrary similarity of the world.
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = 1.1
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    q = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    metres_per_unit, offset = 2.7, np.array([3.0, -1.0, 0.5])
    path = CameraPath(
        rotation=np.einsum("ij,fjk->fik", q, rotation), center=(centers - offset) @ q.T / metres_per_unit,
        registered=np.ones(frames, bool), points=(background - offset) @ q.T / metres_per_unit,
        method="rotation-only" if pan else "colmap-incremental",
    )  # fmt: skip
    take = SimpleNamespace(
        fps=30.0, frames=np.arange(frames), track_ids=np.array([0]), valid=np.ones((1, frames), bool),
        joints_cam=noisy[None], joints_2d=pixels[None], focal_length=FOCAL, principal_point=tuple(PRINCIPAL),
        image_size=SIZE, source="synthetic", camera_path=path,
    )  # fmt: skip
    return SimpleNamespace(take=take, people=people, centers=centers, rotation=rotation, scale=metres_per_unit,
                           cam_true=cam_true)  # fmt: skip


@pytest.fixture(scope="module")
def case():
    return truth_case()


def test_scale_and_gravity_from_the_ground(case):
    placement = world.place_people(case.take, case.take.camera_path, 30.0)
    assert placement.scale == pytest.approx(case.scale, rel=0.01)
    assert placement.gravity_source.startswith("the ground in the background")
    path = placement.camera_path_world
    # Gravity: the cameras' heights above the floor are right, not just their path's shape.
    np.testing.assert_allclose(path[:, 2, 3], case.centers[:, 2], atol=0.03)
    assert world_figures.camera_path_error(path[:, :3, 3], case.centers) < 0.01
    flip = np.diag([1.0, -1.0, -1.0])
    assert world_figures.rotation_error_degrees(path[:, :3, :3] @ flip, case.rotation) < 0.3
    assert "moving camera (colmap-incremental): 150 of 150 frames placed" in placement.describe()


def test_depth_correction_brings_bodies_back_onto_their_rays(case):
    placement = world.place_people(case.take, case.take.camera_path, 30.0)
    factors = placement.depth_factors[0]
    true_depth = case.cam_true[:, HIPS].mean(axis=1)[:, 2]
    noisy_depth = case.take.joints_cam[0][:, HIPS].mean(axis=1)[:, 2]
    # The slow part of the error (over half a second) is the ground's to correct; the frame-to-frame jitter is
    # the smoothing stage's.
    needed = np.convolve(true_depth / noisy_depth, np.ones(15) / 15, "valid")
    found = np.convolve(factors, np.ones(15) / 15, "valid")
    before, after = np.median(np.abs(needed - 1)), np.median(np.abs(found / needed - 1))
    assert after < 0.5 * before, (before, after)


def placed_people(solution) -> np.ndarray:
    person = solution.persons[0]
    return person.keypoints_world


def test_people_in_the_world_with_a_moving_camera(case):
    solution = solve_take(case.take, SolveOptions())
    assert solution.placement is not None and solution.camera_path_world.shape == (150, 4, 4)
    predicted = placed_people(solution)
    keep = np.isfinite(case.people[0, :, 0])
    truth = case.people[:, keep]
    w = world_figures.w_mpjpe(predicted[:, keep], truth)
    wa = world_figures.wa_mpjpe(predicted[:, keep], truth)
    truth_root = case.people[:, HIPS].mean(axis=1)
    root = world_figures.root_path_error(predicted[:, HIPS].mean(axis=1), truth_root)
    assert w < 0.15 and wa < 0.06 and root < 0.01, (w, wa, root, world_figures.travelled(truth_root))
    still = solve_take(case.take, SolveOptions(camera_path=False))
    assert still.placement is None
    w_still = world_figures.w_mpjpe(placed_people(still)[:, keep], truth)
    assert w_still > 5 * w


def test_interpolated_camera_frames_are_named(case):
    path = case.take.camera_path
    registered = path.registered.copy()
    path.registered[[3, 4, 5, 40]] = False
    try:
        placement = world.place_people(case.take, path, 30.0)
    finally:
        path.registered[:] = registered
    assert placement.interpolated_ranges() == [(3, 5), (40, 40)]
    assert "146 of 150 frames placed" in placement.describe()
    assert "camera interpolated over source frames 3-5, 40" in placement.describe()


def test_a_pan_is_placed_with_rotation_only():
    pan = truth_case(pan=True)
    placement = world.place_people(pan.take, pan.take.camera_path, 30.0)
    assert placement.scale_source == "rotation only"
    assert placement.gravity_source.startswith("the people's own floor")
    centres = placement.camera_path_world[:, :3, 3]
    assert np.ptp(centres, axis=0).max() < 1e-9
    assert centres[0, 2] == pytest.approx(1.5, abs=0.1)
