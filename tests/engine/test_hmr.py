"""InstantHMR: crop geometry and cliff_cond by hand, padding policy, output mapping on real SAM 3D Body data."""

import cv2
import numpy as np
import pytest

from instanthmr_blender.models.runtime import ModelError
from instanthmr_blender.pose.hmr import (
    CropWindow,
    InstantHMR,
    cliff_condition,
    crop_person,
    implicit_camera,
    map_outputs,
    normalise_crops,
)
from testkit.contract_models import build_instanthmr_model, build_wrong_size_model, stand_in_cam_trans


@pytest.fixture(scope="module")
def video_frame(fixtures_dir):
    """Frame 40 of the real two-people clip, RGB (994, 1768, 3)."""
    capture = cv2.VideoCapture(str(fixtures_dir / "video" / "two_people_walking.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 40)
    ok, bgr = capture.read()
    capture.release()
    assert ok
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.fixture(scope="module")
def sam3d(fixtures_dir):
    return dict(np.load(fixtures_dir / "sam3d" / "img_subj00.npz"))


def reference_crop_integer(frame, x0, y0, side, size=224):
    """The obvious way: pad with black, cut the square out, resize it with INTER_LINEAR."""
    pad = side
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    square = padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)


def reference_crop_bilinear(frame, box, size=224):
    """Bilinear sampling written out: crop pixel j samples frame position x0 + (j + 0.5) S/size (edges at 0)."""
    x1, y1, x2, y2 = box
    side = 1.2 * max(x2 - x1, y2 - y1)
    x0, y0 = (x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2
    grid = (np.arange(size) + 0.5) * side / size - 0.5
    xs, ys = np.meshgrid(x0 + grid, y0 + grid)
    height, width = frame.shape[:2]
    padded = np.zeros((height + 2, width + 2, 3), np.float64)
    padded[1:-1, 1:-1] = frame
    left, top = np.floor(xs), np.floor(ys)
    fx, fy = (xs - left)[..., None], (ys - top)[..., None]

    def at(yy, xx):
        inside = (xx >= -1) & (xx <= width) & (yy >= -1) & (yy <= height)
        values = padded[np.clip(yy + 1, 0, height + 1).astype(int), np.clip(xx + 1, 0, width + 1).astype(int)]
        return np.where(inside[..., None], values, 0.0)

    return (
        at(top, left) * (1 - fx) * (1 - fy) + at(top, left + 1) * fx * (1 - fy)
        + at(top + 1, left) * (1 - fx) * fy + at(top + 1, left + 1) * fx * fy
    )


@pytest.mark.parametrize(
    "box, x0, y0, side",
    [
        ((500, 200, 700, 600), 360, 160, 480),  # inside the frame
        ((100, 50, 300, 550), -100, 0, 600),  # off the left edge
        ((1600, 700, 1800, 1100), 1460, 660, 480),  # off the right and bottom edges
    ],
)
def test_crop_matches_pad_cut_resize_on_a_real_frame(video_frame, box, x0, y0, side):
    crop = crop_person(video_frame, np.array(box, np.float32))
    reference = reference_crop_integer(video_frame, x0, y0, side)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    difference = np.abs(crop.astype(int) - reference.astype(int))
    assert difference.mean() < 0.3 and difference.max() <= 3
    if x0 < 0:  # the part left of the frame is black
        outside = int(-x0 * 224 / side) - 1
        assert not crop[:, :outside].any()


def test_crop_matches_bilinear_sampling_for_fractional_boxes(video_frame):
    for box in [(823.4, 301.7, 1011.9, 877.2), (-40.5, 500.25, 120.75, 1050.5)]:
        crop = crop_person(video_frame, np.array(box, np.float32))
        reference = reference_crop_bilinear(video_frame, box)
        difference = np.abs(crop.astype(float) - reference)
        assert difference.mean() < 0.5 and difference.max() < 4


def test_crop_window_and_cliff_by_hand():
    window = CropWindow.from_box(np.array([100, 50, 300, 550]))
    assert (window.cx, window.cy, window.side) == (200.0, 300.0, 600.0)
    # crop coordinates -1, 0, 1 are the square's left edge, centre, right edge
    corners = window.to_frame(np.array([[-1, -1], [0, 0], [1, 1]]))
    np.testing.assert_allclose(corners, [[-100, 0], [200, 300], [500, 600]])
    cliff = cliff_condition(np.array([[100, 50, 300, 550], [0, 0, 2000, 100]]), (1000, 2000))
    np.testing.assert_allclose(cliff, [[200 / 1000 - 1, 600 / 1000 - 1, 500 / 2000], [0.0, 2 * 50 / 1000 - 1, 1.0]])
    assert cliff.dtype == np.float32


def test_normalisation_is_imagenet_chw():
    crops = np.zeros((1, 224, 224, 3), np.uint8)
    crops[..., 1] = 255
    images = normalise_crops(crops)
    assert images.shape == (1, 3, 224, 224) and images.dtype == np.float32
    np.testing.assert_allclose(images[0, :, 5, 7], [-0.485 / 0.229, (1 - 0.456) / 0.224, -0.406 / 0.225], rtol=1e-6)


def test_implicit_camera():
    focal, centre = implicit_camera((1080, 1920))
    assert focal == pytest.approx(2202.907, abs=1e-3)
    assert centre == (960.0, 540.0)


def test_output_mapping_on_the_real_sam3d_sample(sam3d):
    """Outputs exactly as SAM 3D Body gave them: camera space projects back onto its own 2D keypoints."""
    box = sam3d["bbox"].astype(np.float64)
    window = CropWindow.from_box(box)
    joints_crop = (sam3d["pred_keypoints_2d"] - [window.cx, window.cy]) / (window.side / 2)
    outputs = [
        sam3d["mhr_model_params"][None], sam3d["shape_params"][None], sam3d["pred_cam_t"][None],
        joints_crop[None], sam3d["pred_keypoints_3d"][None],
    ]
    poses = map_outputs(outputs, box[None], (890, 1920))
    np.testing.assert_allclose(poses.joints_2d[0], sam3d["pred_keypoints_2d"], atol=1e-3)
    np.testing.assert_allclose(poses.joints_cam[0], sam3d["pred_keypoints_3d"] + sam3d["pred_cam_t"], atol=1e-6)
    focal, centre = 2535.27, np.array([960.0, 445.0])
    projected = poses.joints_cam[0][:, :2] / poses.joints_cam[0][:, 2:] * focal + centre
    np.testing.assert_allclose(projected, sam3d["pred_keypoints_2d"], atol=0.05)
    # the pelvis is 0.924 m above the rig origin, which is what cam_trans locates
    pelvis_y = sam3d["pred_joint_coords"][1, 1] + sam3d["pred_cam_t"][1]
    assert poses.cam_trans[0, 1] - 0.924 == pytest.approx(pelvis_y, abs=1e-3)
    assert poses.focal_length == pytest.approx(np.hypot(1920, 890))
    assert poses.principal_point == (960.0, 445.0)


def test_full_chain_with_the_stand_in_model(tmp_path, video_frame):
    """Real crop + cliff_cond through the contract stand-in: 2D keypoints land in the box, and projecting the
    camera-space keypoints with the implicit camera gives the same pixels as the crop mapping."""
    hmr = InstantHMR(build_instanthmr_model(tmp_path / "hmr.onnx", image_size=(994, 1768)), device="cpu")
    boxes = np.array([[700, 250, 900, 850], [1200, 300, 1350, 700]], np.float32)
    poses = hmr.predict(video_frame, boxes)
    assert len(poses) == 2
    focal, centre = implicit_camera((994, 1768))
    assert poses.focal_length == focal
    projected = poses.joints_cam[:, :, :2] / poses.joints_cam[:, :, 2:] * focal + np.array(centre)
    np.testing.assert_allclose(projected, poses.joints_2d, atol=0.02)
    for box, keypoints, crop in zip(boxes, poses.joints_2d, poses.joints_crop):
        # the stand-in's keypoints fill 95% of the box's larger side, centred on it, inside the crop
        low, high = keypoints.min(axis=0), keypoints.max(axis=0)
        assert max(high - low) == pytest.approx(0.95 * max(box[2:] - box[:2]), rel=0.05)
        np.testing.assert_allclose((low + high) / 2, (box[:2] + box[2:]) / 2, atol=0.05 * max(box[2:] - box[:2]))
        assert (np.abs(crop) < 1).all()
    np.testing.assert_allclose(poses.cam_trans, stand_in_cam_trans(cliff_condition(boxes, (994, 1768)), (994, 1768)),
                               rtol=1e-5)


class RecordingSession:
    def __init__(self, session):
        self.session = session
        self.batches = []

    def run(self, output_names, feeds):
        self.batches.append({name: value.copy() for name, value in feeds.items()})
        return self.session.run(output_names, feeds)


def test_the_cpu_runs_only_real_rows(tmp_path, video_frame):
    """No padding on the CPU provider: one person costs one crop."""
    model = build_instanthmr_model(tmp_path / "hmr.onnx")
    boxes = np.array([[700, 250, 900, 850], [1200, 300, 1350, 700], [100, 100, 300, 500]], np.float32)
    hmr = InstantHMR(model, device="cpu", max_batch=3)
    assert not hmr.pad
    hmr.session = RecordingSession(hmr.session)
    for count in (1, 3, 2):
        assert len(hmr.predict(video_frame, boxes[:count])) == count
    assert [b["image"].shape[0] for b in hmr.session.batches] == [1, 3, 2]
    assert [b["cliff_cond"].shape[0] for b in hmr.session.batches] == [1, 3, 2]


def test_people_are_padded_to_a_constant_batch_where_padding_pays(tmp_path, video_frame):
    model = build_instanthmr_model(tmp_path / "hmr.onnx")
    boxes = np.array([[700, 250, 900, 850], [1200, 300, 1350, 700], [100, 100, 300, 500]], np.float32)
    batched = InstantHMR(model, device="cpu", max_batch=2)
    batched.pad = True  # as on a GPU provider
    batched.session = RecordingSession(batched.session)
    together = batched.predict(video_frame, boxes)
    assert [b["image"].shape for b in batched.session.batches] == [(2, 3, 224, 224)] * 2
    assert [b["cliff_cond"].shape for b in batched.session.batches] == [(2, 3)] * 2
    padding = batched.session.batches[1]
    assert not padding["image"][1].any() and not padding["cliff_cond"][1].any()
    assert together.joints_2d.shape == (3, 70, 2) and np.isfinite(together.joints_cam).all()

    alone = InstantHMR(model, device="cpu", max_batch=2, one_at_a_time=True)
    alone.session = RecordingSession(alone.session)
    single = alone.predict(video_frame, boxes)
    assert [b["image"].shape[0] for b in alone.session.batches] == [1, 1, 1]
    np.testing.assert_allclose(single.joints_cam, together.joints_cam, rtol=1e-6)
    # the crop the session saw is the normalised crop of each box
    np.testing.assert_allclose(
        batched.session.batches[0]["image"][1], normalise_crops(crop_person(video_frame, boxes[1])[None])[0]
    )

    empty = batched.predict(video_frame, np.zeros((0, 4), np.float32))
    assert len(empty) == 0 and empty.joints_cam.shape == (0, 70, 3)


def test_a_model_of_the_wrong_size_is_refused(tmp_path):
    # 256 px crops without metadata: not the first release's layout, so its cliff_cond convention is unknown
    with pytest.raises(ModelError, match=r"instanthmr\.onnx: this InstantHMR graph is not supported: its cliff_cond "
                                         r"convention is unknown .* image float32\[N,3,256,256\]"):
        InstantHMR(build_wrong_size_model(tmp_path / "instanthmr.onnx"), device="cpu")
