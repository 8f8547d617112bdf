"""testkit.handheld_clip: a Blender-rendered clip with a known camera and person, its take and its truth.

Each kind renders once per suite run (in a subprocess: this tier never imports bpy) and is cached under
`.test-cache/handheld/`; every other check here is fast.
"""

import json

import cv2
import numpy as np
import pytest

from instanthmr_blender.solve.skeleton import MHR70_INDEX
from instanthmr_blender.take import load_take
from testkit.handheld_clip import KINDS, ClipParams, cache_key, project, rendered_case, to_camera

PARAMS = ClipParams()
SAMPLED_FRAMES = (0, 37, 74, 111, 149)


@pytest.fixture(scope="session", params=KINDS)
def case(request):
    return rendered_case(request.param)


def _truth(case) -> dict:
    with np.load(case.truth) as archive:
        return {key: archive[key] for key in archive.files}


def _person_mask(image: np.ndarray) -> np.ndarray:
    """Pixels of the person's magenta (no background colour has this hue)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    return (hsv[..., 0] >= 140) & (hsv[..., 0] <= 172) & (hsv[..., 1] > 120) & (hsv[..., 2] > 60)


def test_a_complete_cached_case_is_used_as_it_is(tmp_path):
    folder = tmp_path / f"still-{cache_key(ClipParams(kind='still'))}"
    folder.mkdir()
    for name in ("clip.mp4", "take.npz", "truth.npz", "done.json"):
        (folder / name).write_text("cached")
    case = rendered_case("still", cache_root=tmp_path)  # would need minutes (and bpy) if it rendered
    assert case.clip == folder / "clip.mp4" and case.kind == "still"
    assert cache_key(ClipParams(kind="still")) != cache_key(ClipParams(kind="still", frames=10))
    with pytest.raises(ValueError, match="kind"):
        rendered_case("dolly", cache_root=tmp_path)


@pytest.mark.slow
def test_the_clip_shows_the_person_where_the_truth_projects(case):
    capture = cv2.VideoCapture(str(case.clip))
    assert capture.isOpened()
    assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) == PARAMS.width == 640
    assert capture.get(cv2.CAP_PROP_FRAME_HEIGHT) == PARAMS.height == 360
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    capture.release()
    assert len(images) == 150

    truth = _truth(case)
    assert str(truth["kind"]) == case.kind
    focal, principal = float(truth["focal_length"]), tuple(truth["principal_point"])
    assert (focal, principal) == (0.8 * 640, (320.0, 180.0))
    camera_world = truth["camera_world"]
    np.testing.assert_allclose(to_camera(camera_world, truth["joints_world"]), truth["joints_cam_true"], atol=1e-9)
    joints = truth["joints_world"]
    points = {
        "pelvis": 0.5 * (joints[:, MHR70_INDEX["left_hip"]] + joints[:, MHR70_INDEX["right_hip"]]),
        "neck": joints[:, MHR70_INDEX["neck"]],
        "head": truth["head_world"],
        "left_knee": joints[:, MHR70_INDEX["left_knee"]],
        "right_knee": joints[:, MHR70_INDEX["right_knee"]],
    }
    for frame in SAMPLED_FRAMES:
        mask = _person_mask(images[frame])
        for name, world in points.items():
            x, y = project(to_camera(camera_world[frame : frame + 1], world[frame][None, None]), focal, principal)[0, 0]
            column, row = int(round(x)), int(round(y))
            assert mask[row - 1 : row + 2, column - 1 : column + 2].mean() > 0.6, f"{case.kind} frame {frame}: {name}"
        # Magenta is only where the person is: inside the box around the projected body (head included).
        pixels = project(truth["joints_cam_true"][frame], focal, principal)
        low, high = np.nanmin(pixels, axis=0) - 25, np.nanmax(pixels, axis=0) + 25
        low[1] -= focal * 0.35 / float(np.nanmean(truth["joints_cam_true"][frame, :, 2]))
        inside = np.zeros_like(mask)
        inside[max(0, int(low[1])) : int(high[1]), max(0, int(low[0])) : int(high[0])] = True
        assert mask[~inside].sum() < 20, f"{case.kind} frame {frame}: person colour outside the person"
        assert mask.sum() > 1500  # a good size: the person fills a few thousand pixels


@pytest.mark.slow
def test_the_take_is_the_truth_with_the_asked_noise(case):
    take = load_take(case.take)
    take.validate()
    truth = _truth(case)
    assert take.track_ids.tolist() == [0] and take.frames.tolist() == list(range(150))
    camera = (take.fps, take.image_size, take.focal_length, take.principal_point)
    assert camera == (30.0, (360, 640), 512.0, (320.0, 180.0))
    assert take.valid.all() and np.all(take.score == np.float32(0.9))
    assert take.source.endswith("clip.mp4")
    assert np.all(take.mhr_params == 0) and np.all(take.shape_params == 0)
    true = truth["joints_cam_true"]
    noisy = take.joints_cam[0].astype(np.float64)
    assert np.array_equal(np.isnan(noisy), np.isnan(true))
    hips = [MHR70_INDEX["left_hip"], MHR70_INDEX["right_hip"]]
    root, noisy_root = true[:, hips].mean(axis=1), noisy[:, hips].mean(axis=1)
    np.testing.assert_allclose(take.cam_trans[0], noisy_root + [0, 0.906, 0], atol=1e-5)

    # (a) the body's depth along the ray: ~3 % smooth + 1 % jitter, and mostly smooth (frame to frame it moves
    # far less than overall).
    ratio = np.linalg.norm(noisy_root, axis=1) / np.linalg.norm(root, axis=1) - 1
    assert 0.02 < ratio.std() < 0.045
    assert np.diff(ratio).std() < 0.7 * ratio.std()
    np.testing.assert_allclose(ratio, truth["depth_error"], atol=0.015)
    # (b) per-keypoint noise, ~1.5 cm per axis, once the whole-body shift is taken out.
    residual = noisy - (1 + truth["depth_error"])[:, None, None] * root[:, None] - (true - root[:, None])
    assert 0.01 < np.nanstd(residual) < 0.02
    # 2D keypoints: the true projection, ~1.5 px per axis.
    pixels = project(true, 512.0, (320.0, 180.0))
    assert 1.0 < np.nanstd(take.joints_2d[0] - pixels) < 2.0
    # The box holds every true keypoint, with a margin for the head above.
    box = take.bbox[0]
    assert np.all(box[:, :2] <= np.nanmin(pixels, axis=1)) and np.all(box[:, 2:] >= np.nanmax(pixels, axis=1))
    assert np.all(np.nanmin(pixels[..., 1], axis=1) - box[:, 1] > 20)


@pytest.mark.slow
def test_the_camera_moves_as_its_kind_says(case):
    truth = _truth(case)
    camera_world = truth["camera_world"]
    rotation, centre = camera_world[:, :3, :3], camera_world[:, :3, 3]
    identity = np.broadcast_to(np.eye(3), rotation.shape)
    np.testing.assert_allclose(rotation @ rotation.transpose(0, 2, 1), identity, atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-9)
    assert np.all((centre[:, 2] > 1.35) & (centre[:, 2] < 1.65))
    turned = np.degrees(np.arccos(np.clip((np.trace(rotation[0].T @ rotation, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    if case.kind == "still":
        assert np.all(camera_world == camera_world[0])
    elif case.kind == "pan":
        assert np.all(centre == centre[0])
        assert turned.max() > 10.0
        # Yaw follows the person, the horizon stays level (no roll): the camera x axis keeps z = 0.
        np.testing.assert_allclose(rotation[:, 2, 0], 0.0, atol=1e-9)
    else:
        assert 2.7 < np.linalg.norm(centre[-1] - centre[0]) < 3.3
        steps = np.linalg.norm(np.diff(centre, axis=0), axis=1)
        assert steps.max() < 0.1  # a walk, no jumps
        assert np.abs(rotation[:, 2, 0]).max() > np.sin(np.radians(0.3))  # hand shake rolls the camera a little
    # The person stays in view, roughly centred, a good size.
    pelvis = truth["joints_cam_true"][:, [MHR70_INDEX["left_hip"], MHR70_INDEX["right_hip"]]].mean(axis=1)
    pixel = project(pelvis, float(truth["focal_length"]), tuple(truth["principal_point"]))
    assert np.all(np.abs(pixel - [320, 180]) < [0.3 * 640, 0.3 * 360])
    assert 2.5 < pelvis[:, 2].min() and pelvis[:, 2].max() < 6.0
    info = json.loads((case.clip.parent / "render.json").read_text())
    assert info["params"]["kind"] == case.kind
