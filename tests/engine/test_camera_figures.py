"""The moving-camera figures of the issue on the rendered clips with a known camera and person (testkit/
handheld_clip.py; the camera solved once per suite, testkit/solved_camera.py): the camera's path against the
truth, then the people in the world against the mocap they were made from, with the camera solved and with the
camera assumed still."""

import numpy as np
import pytest

from instanthmr_blender.solve import SolveOptions, solve_take
from testkit import world_figures
from testkit.handheld_clip import rendered_case
from testkit.solved_camera import solved_take

HIPS = [9, 10]


def people_figures(solution, truth) -> dict:
    predicted = solution.persons[0].keypoints_world
    joints = truth["joints_world"]
    known = np.isfinite(joints[0, :, 0]) & np.isfinite(predicted[0, :, 0])
    return {
        "w_mpjpe": world_figures.w_mpjpe(predicted[:, known], joints[:, known]),
        "wa_mpjpe": world_figures.wa_mpjpe(predicted[:, known], joints[:, known]),
        "root": world_figures.root_path_error(predicted[:, HIPS].mean(axis=1), joints[:, HIPS].mean(axis=1)),
        "slide": solution.persons[0].quality.foot_slide_cm_s,
    }


@pytest.fixture(scope="module")
def handheld():
    case, take = solved_take("handheld")
    return case, take, np.load(case.truth)


def test_the_handheld_camera_path(handheld):
    _case, take, truth = handheld
    path = take.camera_path
    assert path.method.startswith("colmap")
    assert path.registered.mean() >= 0.95
    cameras = truth["camera_world"]
    assert world_figures.camera_path_error(path.center, cameras[:, :3, 3]) <= 0.01
    assert world_figures.rotation_error_degrees(path.rotation, cameras[:, :3, :3]) <= 0.5


def test_people_walk_through_the_world_with_planted_feet(handheld):
    _case, take, truth = handheld
    moving = people_figures(solve_take(take), truth)
    still = people_figures(solve_take(take, SolveOptions(camera_path=False)), truth)
    print(f"moving camera: {moving}; camera assumed still: {still}")
    assert moving["w_mpjpe"] <= 0.150 and moving["wa_mpjpe"] <= 0.060
    assert moving["root"] <= 0.01 and moving["slide"] <= 3.0
    assert still["w_mpjpe"] >= 5 * moving["w_mpjpe"]


def test_a_tripod_pan_is_solved_as_rotation_only():
    case, take = solved_take("pan")
    truth = np.load(case.truth)
    path = take.camera_path
    assert path.method == "rotation-only" and np.ptp(path.center, axis=0).max() == 0
    assert path.registered.mean() >= 0.95  # the frames between the samples placed from the images too
    assert world_figures.rotation_error_degrees(path.rotation, truth["camera_world"][:, :3, :3]) <= 0.5
    solution = solve_take(take)
    figures = people_figures(solution, truth)
    centres = solution.camera_path_world[:, :3, 3]
    assert np.ptp(centres, axis=0).max() < 1e-9  # the camera turns where it stands
    assert centres[0, 2] == pytest.approx(truth["camera_world"][0, 2, 3], abs=0.15)
    assert figures["wa_mpjpe"] <= 0.060


def test_a_still_camera_is_left_alone():
    from instanthmr_blender.camera.motion import decide_motion
    from instanthmr_blender.take import load_take

    case = rendered_case("still")
    decision = decide_motion(case.clip, load_take(case.take))
    assert not decision.moving and decision.shift_px < 0.3 * decision.threshold_px  # Cycles noise: ~0.1 px
