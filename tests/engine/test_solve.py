"""The motion solve (instanthmr_blender.solve): rest rig, pose, forward kinematics, gaps, real data."""

import numpy as np
import pytest

from instanthmr_blender import solve
from instanthmr_blender.solve import ground, skeleton
from instanthmr_blender.solve.rotations import matrix_from_quat, normalize
from testkit.cmu_take import cmu_take

EXACT = solve.SolveOptions(smoothing="off", foot_lock=False, symmetric_lengths=False)


@pytest.fixture(scope="module")
def cmu(fixtures_dir):
    return cmu_take(fixtures_dir)


@pytest.fixture(scope="module")
def cmu_solution(cmu):
    return solve.solve_take(cmu, EXACT)


def _keypoint_errors(person, heads, tails):
    """Distances (metres) of every mapped bone end from its keypoint, and bone-direction errors (degrees)."""
    keypoints = person.keypoints_world
    rest = person.rest
    distances, angles = [], []
    for b in range(rest.num_bones):
        head_kp, tail_kp = rest.mhr70_head[b], rest.mhr70_tail[b]
        for ends, kp in ((heads, head_kp), (tails, tail_kp)):
            if kp >= 0 and np.isfinite(keypoints[:, kp]).all():
                distances.append(np.linalg.norm(ends[:, b] - keypoints[:, kp], axis=1))
        if head_kp >= 0 and tail_kp >= 0 and np.isfinite(keypoints[:, [head_kp, tail_kp]]).all():
            solved = normalize(tails[:, b] - heads[:, b])
            wanted = normalize(keypoints[:, tail_kp] - keypoints[:, head_kp])
            angles.append(np.degrees(np.arccos(np.clip(np.sum(solved * wanted, axis=1), -1, 1))))
    return np.concatenate(distances), np.concatenate(angles)


def test_cmu_round_trip_puts_bones_on_keypoints(cmu_solution):
    person = cmu_solution.persons[0]
    heads, tails = solve.forward_kinematics(person.rest, person.quats, person.root_location)
    distances, angles = _keypoint_errors(person, heads, tails)
    assert len(distances) > 20 * len(person.frames)  # hips, legs, feet, arms, neck: all checked every frame
    assert distances.mean() <= 0.002
    assert np.median(angles) <= 0.5
    assert person.keyed[:, skeleton.BONE_INDEX["upper_arm.L"]].all()
    assert not person.keyed[:, skeleton.BONE_INDEX["index.01.L"]].any()  # CMU has no fingers


def test_quaternions_are_unit_and_continuous(cmu_solution):
    quats = cmu_solution.persons[0].quats
    assert np.allclose(np.linalg.norm(quats, axis=-1), 1.0)
    assert np.all(np.sum(quats[1:] * quats[:-1], axis=-1) >= 0)


def test_world_keypoints_follow_the_camera_matrix(cmu, cmu_solution):
    person = cmu_solution.persons[0]
    back = ground.world_to_camera(person.keypoints_world, cmu_solution.camera_matrix_world)
    mapped = np.isfinite(cmu.joints_cam[0])
    assert np.allclose(back[mapped], cmu.joints_cam[0][mapped], atol=1e-5)
    # The subject stands on the floor: feet near z = 0, head side up.
    ankles = person.keypoints_world[:, skeleton.MHR70_INDEX["left_ankle"], 2]
    assert abs(np.median(ankles)) < 0.15
    assert np.all(person.keypoints_world[:, skeleton.MHR70_INDEX["neck"], 2] > 0.8)


@pytest.mark.parametrize("subject", range(4))
def test_sam3d_keypoints_reproduced_in_camera_space(fixtures_dir, subject):
    data = np.load(fixtures_dir / "sam3d" / f"img_subj0{subject}.npz")
    joints_cam = (data["pred_keypoints_3d"] + data["pred_cam_t"])[None].astype(np.float64)
    floor = ground.estimate_floor(joints_cam[None])
    assert floor.method == "camera"  # a single image: gravity from the camera
    person = solve.solve_track(joints_cam, 30.0, EXACT, camera_matrix_world=floor.camera_matrix_world)
    heads, tails = solve.forward_kinematics(person.rest, person.quats, person.root_location)
    heads_cam = ground.world_to_camera(heads, floor.camera_matrix_world)
    tails_cam = ground.world_to_camera(tails, floor.camera_matrix_world)
    rest = person.rest
    checked = 0
    for b in range(rest.num_bones):
        for ends, kp in ((heads_cam, rest.mhr70_head[b]), (tails_cam, rest.mhr70_tail[b])):
            if kp >= 0:
                assert np.linalg.norm(ends[0, b] - joints_cam[0, kp]) < 0.001, (rest.bone_names[b], kp)
                checked += 1
    assert checked > 90
    assert person.keyed.all()


def test_rest_pose_is_a_t_pose(cmu_solution):
    rest = cmu_solution.persons[0].rest
    index = skeleton.BONE_INDEX
    directions = normalize(rest.tails - rest.heads)
    matrices = rest.rest_matrices
    assert np.allclose(matrices @ np.swapaxes(matrices, 1, 2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(matrices), 1.0)
    assert np.allclose(matrices[:, :, 1], directions)
    assert np.allclose(directions[index["upper_arm.L"]], [1, 0, 0])
    assert np.allclose(directions[index["forearm.R"]], [-1, 0, 0])
    assert np.allclose(directions[index["middle.02.L"]], [1, 0, 0])
    assert directions[index["thumb.01.L"]][1] < -0.5  # thumbs forward
    assert np.allclose(directions[index["thigh.L"]], [0, 0, -1])
    assert np.allclose(directions[index["foot.R"]], [0, -1, 0])
    assert np.allclose(directions[index["spine.02"]], [0, 0, 1])
    # Roll rules: Z forward for spine and legs, Z up for arms and feet.
    assert np.allclose(matrices[index["spine.01"]][:, 2], [0, -1, 0])
    assert np.allclose(matrices[index["shin.L"]][:, 2], [0, -1, 0])
    assert np.allclose(matrices[index["upper_arm.R"]][:, 2], [0, 0, 1])
    assert np.allclose(matrices[index["foot.L"]][:, 2], [0, 0, 1])
    # Left on +X, standing on z = 0, lengths from the data.
    assert rest.heads[index["thigh.L"]][0] > 0 > rest.heads[index["thigh.R"]][0]
    assert min(rest.heads[:, 2].min(), rest.tails[:, 2].min()) == pytest.approx(0.0, abs=1e-12)
    assert rest.lengths[index["upper_arm.L"]] == pytest.approx(0.28124, abs=1e-4)  # CMU: 4.983 units


def test_rig_definition_covers_mhr70_and_mirrors():
    names = skeleton.BONE_NAMES
    assert len(set(names)) == len(names)
    assert skeleton.BONE_PARENTS[0] == -1 and np.all(skeleton.BONE_PARENTS[1:] < np.arange(1, len(names)))
    for name in names:
        assert skeleton.mirror_name(name) in names
    used = {bone.head_kp for bone in skeleton.CAPTURE_RIG} | {bone.tail_kp for bone in skeleton.CAPTURE_RIG}
    used |= {kp for bone in skeleton.CAPTURE_RIG for pair in bone.side_refs for kp in pair}
    used |= {kp for joint in skeleton.VIRTUAL_JOINTS.values() for kp in joint}
    not_used = {skeleton.MHR70_NAMES[kp] for kp in set(range(70)) - used}
    # The nose aims the head (solve._head_frames); the elbow surface points sit off the elbow joint and add
    # nothing the elbow keypoint does not give.
    assert not_used == {"nose", "left_olecranon", "right_olecranon", "left_cubital_fossa", "right_cubital_fossa"}
    assert {bone.group for bone in skeleton.CAPTURE_RIG} == set(skeleton.BONE_GROUPS)


def test_forward_kinematics_matches_blender_matrix_formula(cmu_solution):
    person = cmu_solution.persons[0]
    rest = person.rest
    frame = 40
    rest4 = rest.rest4()
    posed = np.zeros((rest.num_bones, 4, 4))
    for b in range(rest.num_bones):
        basis = np.eye(4)
        basis[:3, :3] = matrix_from_quat(person.quats[frame, b])
        if rest.parents[b] < 0:
            location = np.eye(4)
            location[:3, 3] = person.root_location[frame]
            posed[b] = rest4[b] @ location @ basis
        else:
            p = rest.parents[b]
            posed[b] = posed[p] @ np.linalg.inv(rest4[p]) @ rest4[b] @ basis
    one = slice(frame, frame + 1)
    heads, tails = solve.forward_kinematics(rest, person.quats[one], person.root_location[one])
    assert np.allclose(heads[0], posed[:, :3, 3], atol=1e-9)
    assert np.allclose(tails[0], posed[:, :3, 3] + rest.lengths[:, None] * posed[:, :3, 1], atol=1e-9)
    identity = np.tile([1.0, 0, 0, 0], (1, rest.num_bones, 1))
    rest_heads, rest_tails = solve.forward_kinematics(rest, identity, np.zeros((1, 3)))
    assert np.allclose(rest_heads[0], rest.heads) and np.allclose(rest_tails[0], rest.tails)


def test_gaps_short_interpolated_long_unkeyed(cmu):
    joints = cmu.joints_cam[0, :150].astype(np.float64).copy()
    joints[30:34] = np.nan  # 4 frames: under 0.25 s at 30 fps
    joints[60:100] = np.nan  # 40 frames: too long
    wrist = skeleton.MHR70_INDEX["left_wrist"]
    joints[120:150, wrist] = np.nan  # one keypoint lost until the end
    person = solve.solve_track(joints, cmu.row_fps, EXACT)
    assert person.keyed[30:34].any(axis=1).all() and person.root_keyed[30:34].all()
    assert not person.keyed[60:100].any() and not person.root_keyed[60:100].any()
    forearm = skeleton.BONE_INDEX["forearm.L"]
    assert not person.keyed[120:, forearm].any() and person.keyed[120:, skeleton.BONE_INDEX["shin.L"]].all()
    # The interpolated root moves linearly between its neighbours; held values repeat the last known one.
    root = person.root_location
    assert np.allclose(root[31] - root[30], root[32] - root[31])
    assert np.allclose(root[60:100], root[59])
    assert np.allclose(person.quats[120:, forearm], person.quats[119, forearm])
    # Interpolated frames stay close to the true motion (smooth motion over 0.17 s).
    heads, _ = solve.forward_kinematics(person.rest, person.quats, person.root_location)
    truth = solve.solve_track(cmu.joints_cam[0, :150], cmu.row_fps, EXACT)
    true_heads, _ = solve.forward_kinematics(truth.rest, truth.quats, truth.root_location)
    knee = skeleton.BONE_INDEX["shin.L"]
    assert np.linalg.norm(heads[30:34, knee] - true_heads[30:34, knee], axis=1).max() < 0.1


def test_noisy_input_gives_no_flips(cmu):
    rng = np.random.default_rng(5)
    noisy = cmu.joints_cam[0, 1:] + rng.normal(0, 0.02, cmu.joints_cam[0, 1:].shape)  # frame 0: calibration
    person = solve.solve_track(noisy, cmu.row_fps, solve.SolveOptions())
    quats = person.quats
    assert np.all(np.sum(quats[1:] * quats[:-1], axis=-1) >= 0)
    # No bone turns by 75 degrees or more between frames at 30 fps (the clean motion peaks near 26): arms
    # passing through straight and the spine absorbing neck noise do not flip or snap their roll.
    steps = 2 * np.degrees(np.arccos(np.clip(np.sum(quats[1:] * quats[:-1], axis=-1), -1, 1)))
    keyed = person.keyed[1:] & person.keyed[:-1]
    assert steps[keyed].max() < 75


def test_unsolvable_track_raises_a_readable_error():
    joints = np.full((5, 70, 3), np.nan)
    with pytest.raises(solve.SolveError, match="hips"):
        solve.solve_track(joints, 30.0, EXACT, camera_matrix_world=np.eye(4))
    with pytest.raises(solve.SolveError, match="frames, 70, 3"):
        solve.solve_track(np.zeros((5, 17, 3)), 30.0)


def test_solve_take_with_several_tracks(cmu):
    from instanthmr_blender.take import Take

    count = 120
    take = Take.empty(
        3, cmu.frames[:count], fps=cmu.fps, image_size=cmu.image_size, focal_length=cmu.focal_length,
        principal_point=cmu.principal_point, track_ids=[7, 8, 9],
    )  # fmt: skip
    take.joints_cam[0, 20:] = cmu.joints_cam[0, 20:count] + np.array([1.5, 0.0, 1.0], dtype=np.float32)
    take.valid[0, 20:] = True
    take.joints_cam[2] = cmu.joints_cam[0, :count]  # the main subject: seen in every frame
    take.valid[2] = True
    take.joints_cam[1, 50] = cmu.joints_cam[0, 50]  # data but never valid: ignored
    take = _with_headless_track(take, cmu)
    solution = solve.solve_take(take, solve.SolveOptions(smoothing="light"))
    assert [person.track_id for person in solution.persons] == [7, 9]
    assert [track_id for track_id, _ in solution.skipped] == [10]
    assert solution.floor_method == "ransac"
    first, main = solution.persons
    assert not first.keyed[:20].any() and first.keyed[20:, 0].all()
    assert np.array_equal(main.frames, cmu.frames[:count])
    # World origin on the floor under the main subject's first pelvis position.
    pelvis = main.keypoints_world[0, [9, 10]].mean(axis=0)
    assert np.allclose(pelvis[:2], 0.0, atol=0.02)
    # The same camera for both: the offset person stands 1.5 m to the side of the main one (camera x).
    offset = first.keypoints_world[30, 9] - main.keypoints_world[30, 9]
    assert np.linalg.norm(offset) == pytest.approx(np.hypot(1.5, 1.0), abs=0.03)
    assert cmu.to_take().num_tracks == 1


def _with_headless_track(take, cmu):
    """The take plus a fourth track (id 10) that only ever shows legs: it cannot be solved."""
    from instanthmr_blender.take import Take

    bigger = Take.empty(
        4, take.frames, fps=take.fps, image_size=take.image_size, focal_length=take.focal_length,
        principal_point=take.principal_point, track_ids=[7, 8, 9, 10],
    )  # fmt: skip
    bigger.joints_cam[:3], bigger.valid[:3] = take.joints_cam, take.valid
    bigger.joints_cam[3, :, 11:21] = cmu.joints_cam[0, : take.num_frames, 11:21] + np.float32(0.5)
    bigger.valid[3] = True
    return bigger
