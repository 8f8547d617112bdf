"""The capture rig in real Blender: a take goes through the installed add-on's solve and writers, and the
evaluated armature reproduces the keypoints (CMU mocap round trip, real SAM 3D Body outputs, noise, feet)."""

import math

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from capture_helpers import (
    EXACT,
    SAM3D_FOCAL,
    SAM3D_SIZE,
    AddonApi,
    bone_keypoints,
    camera_to_world,
    evaluated_joints,
    fresh_scene,
    rig_errors,
    sam3d_take,
    take_from_cmu,
)
from mathutils import Vector

from testkit.cmu_take import cmu_take


@pytest.fixture(scope="module")
def api(installed_addon):
    return AddonApi(installed_addon)

def test_cmu_round_trip_puts_the_rig_on_the_keypoints(api, fixtures_dir, tmp_path):
    scene = fresh_scene()
    take = take_from_cmu(api, cmu_take(fixtures_dir, step=4), tmp_path)
    solution = api.solve.solve_take(take, api.solve.SolveOptions(**EXACT))
    built = api.build.build_capture(bpy.context, take, solution, "cmu")
    rig = built.rigs[0]
    positions, directions = rig_errors(rig, built.camera, scene, take, api, range(0, take.num_frames, 7))
    assert len(positions) > 1000 and len(directions) > 500
    assert positions.mean() <= 0.002, f"mean joint error {positions.mean() * 1000:.2f} mm"
    assert np.median(directions) <= 0.5, f"median bone-direction error {np.median(directions):.3f} deg"


def test_rig_structure_names_and_keypoint_properties(api, fixtures_dir, tmp_path):
    fresh_scene()
    take = take_from_cmu(api, cmu_take(fixtures_dir, step=16), tmp_path)
    solution = api.solve.solve_take(take, api.solve.SolveOptions(**EXACT))
    built = api.build.build_capture(bpy.context, take, solution, "cmu")
    rig = built.rigs[0]
    assert rig.name == "cmu.person00" and built.collection.name == "InstantHMR cmu"
    assert rig.name in built.collection.objects and built.camera.name in built.collection.objects
    names = {b.name for b in rig.data.bones}
    for expected in ("pelvis", "thigh.L", "shin.R", "upper_arm.L", "forearm.R", "hand.L", "foot.R"):
        assert any(n.startswith(expected.split(".")[0]) for n in names), expected
    assert len(names) >= 50  # whole MHR70 set: body, head, five fingers x 3 per hand, feet with heel and toes
    kp_heads, kp_tails = bone_keypoints(rig, api)
    assert kp_heads.dtype.kind == "i" and (kp_heads >= -1).all() and (kp_tails < 70).all()
    assert (kp_heads == -1).any(), "interpolated spine joints have no keypoint"
    # The rest pose is a T-pose: arms out sideways, legs down.
    bones = rig.data.bones
    upper_arm = next(b for b in bones if b.name.startswith("upper_arm") and b.name.endswith(".L"))
    thigh = next(b for b in bones if b.name.startswith("thigh") and b.name.endswith(".L"))
    arm_dir = (upper_arm.tail_local - upper_arm.head_local).normalized()
    leg_dir = (thigh.tail_local - thigh.head_local).normalized()
    assert arm_dir.x > 0.95 and leg_dir.z < -0.95
    # Rebuilding the same take replaces the earlier build instead of stacking a second one.
    again = api.build.build_capture(bpy.context, take, solution, "cmu")
    assert len([c for c in bpy.data.collections if c.name.startswith("InstantHMR cmu")]) == 1
    assert again.rigs[0].name == "cmu.person00"


def test_keys_are_written_in_bulk_on_this_blenders_action_api(api, fixtures_dir, tmp_path):
    scene = fresh_scene()
    take = take_from_cmu(api, cmu_take(fixtures_dir, step=8), tmp_path)
    solution = api.solve.solve_take(take, api.solve.SolveOptions(**EXACT))
    rig = api.build.build_capture(bpy.context, take, solution, "cmu").rigs[0]
    action = rig.animation_data.action
    if bpy.app.version >= (4, 4, 0):
        assert len(action.slots) == 1 and rig.animation_data.action_slot == action.slots[0]
    else:
        assert len(action.fcurves) > 0
    curves = api.actions.action_fcurves(rig)
    person = solution.persons[0]
    keyed_bones = int(person.keyed.any(axis=0).sum())
    assert keyed_bones >= 12
    # A quaternion per keyed bone, the root's location, and the rig's visibility (viewport and render).
    assert len(curves) == 4 * keyed_bones + 3 + 2
    visibility = [curve for curve in curves if curve.data_path in ("hide_viewport", "hide_render")]
    assert len(visibility) == 2 and all(k.interpolation == "CONSTANT" for c in visibility for k in c.keyframe_points)
    for curve in curves:
        if curve in visibility:
            continue
        bone = curve.data_path.split('"')[1]
        expected = int(person.keyed[:, person.rest.bone_names.index(bone)].sum())
        if curve.data_path.endswith("location"):
            expected = int(person.root_keyed.sum())
        assert len(curve.keyframe_points) == expected
        assert all(k.interpolation == "LINEAR" for k in curve.keyframe_points[:5])
    assert scene.frame_start == int(take.frames[0]) + 1 and scene.frame_end == int(take.frames[-1]) + 1
    assert abs(scene.render.fps / scene.render.fps_base - take.fps) < 1e-6


def test_camera_reproduces_intrinsics_and_the_world_contract(api, fixtures_dir, tmp_path):
    scene = fresh_scene()
    take = take_from_cmu(api, cmu_take(fixtures_dir, step=16), tmp_path)
    solution = api.solve.solve_take(take, api.solve.SolveOptions(**EXACT))
    built = api.build.build_capture(bpy.context, take, solution, "cmu")
    assert scene.camera == built.camera
    height, width = take.image_size
    assert (scene.render.resolution_x, scene.render.resolution_y) == (width, height)
    # Project camera-space points mapped through the world contract: they land where the pinhole says.
    points = take.joints_cam[0, 0][np.isfinite(take.joints_cam[0, 0]).all(1)].astype(float)
    world = camera_to_world(built.camera, points)
    for point_cam, point_world in zip(points, world):
        ndc = world_to_camera_view(scene, built.camera, Vector(point_world))
        u, v = ndc.x * width, (1 - ndc.y) * height
        cx, cy = take.principal_point
        assert abs(u - (cx + take.focal_length * point_cam[0] / point_cam[2])) < 0.05
        assert abs(v - (cy + take.focal_length * point_cam[1] / point_cam[2])) < 0.05
        assert abs(ndc.z - point_cam[2]) < 1e-4  # depth along the view axis
    # The floor is z = 0: the lowest foot keypoints of the clip sit on it.
    feet = camera_to_world(built.camera, take.joints_cam[0][:, [13, 14, 15, 18]].reshape(-1, 3).astype(float))
    assert abs(np.nanpercentile(feet[:, 2], 1)) < 0.05


def test_sam3d_outputs_land_on_their_3d_and_2d_keypoints(api, fixtures_dir):
    scene = fresh_scene()
    take = sam3d_take(api, fixtures_dir)
    solution = api.solve.solve_take(take, api.solve.SolveOptions(**EXACT))
    built = api.build.build_capture(bpy.context, take, solution, "sam3d")
    assert len(built.rigs) == 4
    assert abs(built.camera.data.lens - SAM3D_FOCAL * 36 / 1920) < 1e-4
    height, width = SAM3D_SIZE
    for track, rig in enumerate(built.rigs):
        target = camera_to_world(built.camera, take.joints_cam[track, 0].astype(float))
        heads, tails = evaluated_joints(rig, scene, 1)
        kp_heads, kp_tails = bone_keypoints(rig, api)
        ends = np.concatenate([heads[kp_heads >= 0], tails[kp_tails >= 0]])
        kps = np.concatenate([kp_heads[kp_heads >= 0], kp_tails[kp_tails >= 0]])
        errors = np.linalg.norm(ends - target[kps], axis=1)
        assert np.median(errors) < 0.002 and errors.max() < 0.01, f"person {track}: {errors.max() * 1000:.1f} mm"
        pixels = []
        for point in ends:
            ndc = world_to_camera_view(scene, built.camera, Vector(point))
            pixels.append((ndc.x * width, (1 - ndc.y) * height))
        reprojection = np.linalg.norm(np.array(pixels) - take.joints_2d[track, 0, kps], axis=1)
        assert np.max(reprojection) <= 2.0, f"person {track}: {np.max(reprojection):.2f} px"


def noisy_cmu(api, fixtures_dir, tmp_path, *, seed=0, sigma=0.02):
    clean = cmu_take(fixtures_dir, step=4)
    rng = np.random.default_rng(seed)
    noisy = take_from_cmu(api, clean, tmp_path)
    noisy.joints_cam = (noisy.joints_cam + rng.normal(0, sigma, noisy.joints_cam.shape)).astype(np.float32)
    return clean, noisy


def test_smoothing_lowers_error_and_jitter_in_blender(api, fixtures_dir, tmp_path):
    scene = fresh_scene()
    clean, noisy = noisy_cmu(api, fixtures_dir, tmp_path)
    rows = range(40, 200)
    results = {}
    for smoothing in ("off", "medium"):
        options = api.solve.SolveOptions(smoothing=smoothing, foot_lock=False)
        built = api.build.build_capture(bpy.context, noisy, api.solve.solve_take(noisy, options), f"n{smoothing}")
        rig, camera = built.rigs[0], built.camera
        wrist = [i for i, b in enumerate(rig.data.bones) if b.get("mhr70_tail") in (41, 62)]
        ankle = [i for i, b in enumerate(rig.data.bones) if b.get("mhr70_tail") in (13, 14)]
        tracked = wrist + ankle
        path, truth = [], []
        for row in rows:
            _, tails = evaluated_joints(rig, scene, int(noisy.frames[row]) + 1)
            path.append(tails[tracked])
            target = camera_to_world(camera, clean.joints_cam[0, row].astype(float))
            truth.append(target[[rig.data.bones[i]["mhr70_tail"] for i in tracked]])
        path, truth = np.array(path), np.array(truth)
        error = np.linalg.norm(path - truth, axis=-1).mean()
        jitter = np.linalg.norm(np.diff(path, 2, axis=0), axis=-1).mean()
        lag = _lag_frames(path, truth)
        results[smoothing] = (error, jitter, lag)
    (error_off, jitter_off, _), (error_on, jitter_on, lag_on) = results["off"], results["medium"]
    assert error_on < error_off, results
    assert jitter_on < 0.5 * jitter_off, results
    assert abs(lag_on) <= 1, results


def _lag_frames(path: np.ndarray, truth: np.ndarray, max_lag: int = 5) -> int:
    """The shift (frames) that best aligns the smoothed path with the truth (positive: the path lags)."""
    best, best_error = 0, math.inf
    for lag in range(-max_lag, max_lag + 1):
        a = path[max(lag, 0): len(path) + min(lag, 0)]
        b = truth[max(-lag, 0): len(truth) + min(-lag, 0)]
        error = np.linalg.norm(a - b, axis=-1).mean()
        if error < best_error:
            best, best_error = lag, error
    return best


def test_planted_feet_do_not_slide_with_foot_locking(api, fixtures_dir, tmp_path):
    scene = fresh_scene()
    _, noisy = noisy_cmu(api, fixtures_dir, tmp_path, seed=1)
    solution = api.solve.solve_take(noisy, api.solve.SolveOptions(smoothing="medium", foot_lock=True))
    person = solution.persons[0]
    rig = api.build.build_capture(bpy.context, noisy, solution, "feet").rigs[0]
    assert person.contacts.any(axis=0).all(), "both feet should be detected as planted between hops"
    ankles = {side: next(i for i, b in enumerate(rig.data.bones) if b.get("mhr70_tail") == kp)
              for side, kp in ((0, 13), (1, 14))}
    positions = {0: [], 1: []}
    for row in range(len(person.frames)):
        _, tails = evaluated_joints(rig, scene, int(person.frames[row]) + 1)
        for side, bone in ankles.items():
            positions[side].append(tails[bone])
    speeds = []
    for side in (0, 1):
        xy = np.array(positions[side])[:, :2]
        planted = person.contacts[:, side]
        both = planted[1:] & planted[:-1]
        speeds.extend(np.linalg.norm(np.diff(xy, axis=0), axis=1)[both] * api.solve.row_rate(noisy.fps, noisy.frames))
    slide = float(np.mean(speeds))
    assert slide < 0.01, f"planted feet slide {slide * 100:.2f} cm/s"


def test_quality_report_on_the_rig_markers_and_people_list(api, fixtures_dir, tmp_path):
    """A 4-frame front/back flip in the take: the rig carries the quality report, the timeline marks where
    it was repaired, the People list shows the report, and a rebuild does not stack markers."""
    scene = fresh_scene()
    cmu = cmu_take(fixtures_dir, step=4, start=1, stop=481)
    rows = slice(40, 44)
    hips = 0.5 * (cmu.joints_cam[0, rows, 9] + cmu.joints_cam[0, rows, 10])
    cmu.joints_cam[0, rows] = hips[:, None] + (cmu.joints_cam[0, rows] - hips[:, None]) * np.float32([-1, 1, -1])
    take = take_from_cmu(api, cmu, tmp_path)
    solution = api.solve.solve_take(take, api.solve.SolveOptions())
    settings = scene.instanthmr
    api.workflow.fill_people(settings, take)
    for _ in range(2):
        built = api.workflow.build_solution(bpy.context, take, solution, "flip")
    rig = built.rigs[0]
    assert rig["instanthmr_quality_repaired_flip"] == 4
    assert rig["instanthmr_quality_jitter_mm"] < rig["instanthmr_quality_input_jitter_mm"]
    assert "repaired" in rig["instanthmr_quality"]
    markers = [m for m in scene.timeline_markers if m.name.startswith(api.quality.MARKER_PREFIX)]
    expected = [("repaired flip person 0: front/back flip", int(take.frames[40]) + 1)]
    assert [(m.name, m.frame) for m in markers] == expected
    assert settings.people[0].quality == rig["instanthmr_quality"]
    assert any(line.startswith("person 0: jitter") for line in built.quality_lines)


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_a_phone_videos_background_is_drawn_upright_and_fills_the_frame(installed_addon, tmp_path, degrees):
    """A phone video (stored landscape, rotation tag) is shown the way the engine saw it, on every line: Blender
    4.5+ rotates the clip itself, 4.2 does not and the background entry must turn it."""
    from importlib import import_module

    import cv2  # the extension's bundled wheel
    from video_tags import set_mp4_rotation

    frames = import_module(installed_addon.__name__ + ".instanthmr_blender.video.frames")
    camera = import_module(installed_addon.__name__ + ".scene.camera")
    path = tmp_path / f"phone_{degrees}.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:24, :32] = 255  # only the top-left quadrant is white: every quarter turn looks different
    for _ in range(3):
        writer.write(stored)
    writer.release()
    if degrees:
        set_mp4_rotation(path, degrees)
    with frames.open_source(path) as source:
        upright = next(iter(source.frames()))[1][..., 0].astype(float) / 255.0

    fresh_scene()
    data = bpy.data.cameras.new("cam")
    camera.attach_background(data, str(path), image_size=upright.shape[:2])
    entry = data.background_images[0]
    # What Blender shows for this clip (the same FFmpeg reader as movie clips), top row first.
    image = bpy.data.images.load(str(path))
    width, height = image.size
    assert (width, height) == tuple(entry.clip.size)
    shown = np.array(image.pixels[:]).reshape(height, width, 4)[::-1, :, 0]
    # The overlay fits the picture to the frame, scales it by `scale`, then turns it clockwise by `rotation`.
    quarter_turns = round(math.degrees(entry.rotation) / 90) % 4
    drawn = np.rot90(shown, -quarter_turns)
    frame_h, frame_w = upright.shape
    assert drawn.shape == (frame_h, frame_w)
    aspect, frame_aspect = width / height, frame_w / frame_h
    fit_w, fit_h = (1.0, frame_aspect / aspect) if aspect > frame_aspect else (aspect / frame_aspect, 1.0)
    if quarter_turns % 2:  # a quarter turn swaps the fitted quad's sides (in frame-relative units)
        fit_w, fit_h = fit_h * frame_h / frame_w, fit_w * frame_w / frame_h
    assert fit_w * entry.scale == pytest.approx(1.0, abs=1e-3)
    assert fit_h * entry.scale == pytest.approx(1.0, abs=1e-3)

    def quadrants(picture):
        h, w = picture.shape
        return np.array([[picture[:h // 2, :w // 2].mean(), picture[:h // 2, w // 2:].mean()],
                         [picture[h // 2:, :w // 2].mean(), picture[h // 2:, w // 2:].mean()]]) > 0.5

    assert (quadrants(drawn) == quadrants(upright)).all()
    assert quadrants(upright).sum() == 1
