"""Every known InstantHMR graph layout (contract section 5) runs with the right crops, cliff_cond, 2D mapping and
camera; every unknown one is refused in one line with its signature, its metadata and what is supported.

The graphs are contract-shaped stand-ins (testkit/contract_models.py) that place the real SAM 3D Body pose so that it
projects onto each box in the camera the layout implies, and report the mean of the crop they received."""

import math

import cv2
import numpy as np
import pytest

from instanthmr_blender.models.runtime import ModelError
from instanthmr_blender.pose.hmr import InstantHMR, crop_person, normalise_crops
from instanthmr_blender.pose.hmr_graph import ANGULAR, PIXEL, capture_camera, cliff_angular, cliff_pixel
from instanthmr_blender.video.lens import Lens, LensError
from testkit.contract_models import build_instanthmr_model, stand_in_cam_trans, stand_in_cam_trans_angular

IMAGE_SIZE = (994, 1768)
DIAGONAL = math.hypot(1768, 994)
BOXES = np.array([[700, 250, 900, 850], [-60.5, 300.25, 150.75, 700.5]], np.float32)  # one off the left edge

# name: (build options, crop dtype, channels last, crop size, cliff form)
LAYOUTS = {
    "first release (float32, no metadata)": ({}, "float32", False, 224, PIXEL),
    "float16 crops, no metadata": (
        {"image_dtype": "float16", "cliff_dtype": "float16", "output_dtype": "float16"}, "float16", False, 224, PIXEL),
    "uint8 crops normalised in the graph, pixel cliff": (
        {"image_dtype": "uint8", "metadata": {"cliff_focal": "false"}}, "uint8", False, 224, PIXEL),
    "uint8 channels-last crops, focal-aware": (
        {"image_dtype": "uint8", "channels_last": True, "cliff_form": "angular", "metadata": {"cliff_focal": "true"}},
        "uint8", True, 224, ANGULAR),
    "256 px crops from the shape, focal-aware": (
        {"crop_size": 256, "cliff_form": "angular", "metadata": {"cliff_focal": "true", "image_size": "256"}},
        "float32", False, 256, ANGULAR),
    "288 px crops from metadata only, exporter metadata": (
        {"crop_size": None, "cliff_form": "angular", "image_dtype": "uint8",
         "metadata": {"cliff_focal": "True", "image_size": "288", "arch": "correctives", "bound_scales": "true"}},
        "uint8", False, 288, ANGULAR),
}


@pytest.fixture(scope="module")
def video_frame(fixtures_dir):
    """Frame 40 of the real two-people clip, RGB (994, 1768, 3)."""
    capture = cv2.VideoCapture(str(fixtures_dir / "video" / "two_people_walking.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 40)
    ok, bgr = capture.read()
    capture.release()
    assert ok
    return np.ascontiguousarray(bgr[:, :, ::-1])


class RecordingSession:
    """Wraps the real session; keeps every feed so tests see exactly what the graph got."""

    def __init__(self, session):
        self.session = session
        self.feeds = []

    def run(self, output_names, feeds):
        self.feeds.append({name: value.copy() for name, value in feeds.items()})
        return self.session.run(output_names, feeds)


def load(path, lens=None, **options):
    # keep_fp16: these tests check the feeds a graph's own input dtypes get; by default the CPU would run an fp16
    # graph as its fp32 conversion (tests/engine/test_precision.py), float32 inputs included
    hmr = InstantHMR(path, device="cpu", max_batch=2, lens=lens, keep_fp16=True, **options)
    hmr.session = RecordingSession(hmr.session)
    return hmr


def project(points, focal, centre):
    return points[..., :2] / points[..., 2:] * focal + np.asarray(centre)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_known_layout_runs_right(tmp_path, video_frame, layout):
    options, dtype, channels_last, size, form = LAYOUTS[layout]
    hmr = load(build_instanthmr_model(tmp_path / "hmr.onnx", image_size=IMAGE_SIZE, **options))
    graph = hmr.graph
    assert (graph.image_dtype, graph.channels_last, graph.crop_size, graph.cliff_form) == (
        dtype, channels_last, size, form)
    assert graph.normalised_in_graph == (dtype == "uint8")
    poses = hmr.predict(video_frame, BOXES)
    (feed,) = hmr.session.feeds

    # crops: the square around each box at the graph's size, in its dtype and layout, normalised by whoever should
    crops = np.stack([crop_person(video_frame, box, size) for box in BOXES])
    fed = feed["image"]
    assert fed.dtype == np.dtype(dtype)
    assert fed.shape == ((2, size, size, 3) if channels_last else (2, 3, size, size))
    fed_nchw = fed.transpose(0, 3, 1, 2) if channels_last else fed
    if dtype == "uint8":
        np.testing.assert_array_equal(fed_nchw, crops.transpose(0, 3, 1, 2))
    else:
        np.testing.assert_allclose(fed_nchw.astype(np.float32), normalise_crops(crops), atol=2e-3)
    # ...and the graph itself saw the ImageNet-normalised crop (it normalises uint8 inside)
    (crop_mean,) = hmr.session.session.run(["crop_mean"], feed)
    np.testing.assert_allclose(crop_mean.astype(np.float32), normalise_crops(crops).mean(axis=(2, 3)), atol=2e-3)

    # cliff_cond: the layout's convention, from the RAW boxes, in the graph's dtype
    camera = hmr.camera(IMAGE_SIZE)
    if form == ANGULAR:
        assert camera.focal_length == pytest.approx(1.05 * DIAGONAL) and camera.cliff_focal == camera.focal_length
        expected_cliff = cliff_angular(BOXES, IMAGE_SIZE, 1.05 * DIAGONAL)
        np.testing.assert_allclose(poses.cam_trans, stand_in_cam_trans_angular(expected_cliff), rtol=2e-3)
    else:
        assert camera.focal_length == pytest.approx(DIAGONAL) and camera.cliff_focal is None
        expected_cliff = cliff_pixel(BOXES, IMAGE_SIZE)
        np.testing.assert_allclose(poses.cam_trans, stand_in_cam_trans(expected_cliff, IMAGE_SIZE), rtol=2e-3)
    assert feed["cliff_cond"].dtype == np.dtype(options.get("cliff_dtype", "float32"))
    np.testing.assert_allclose(feed["cliff_cond"].astype(np.float32), expected_cliff, rtol=1e-3, atol=1e-6)

    # the 2D mapping: the keypoints fill 95% of each box, centred on it
    for box, keypoints in zip(BOXES, poses.joints_2d):
        low, high = keypoints.min(axis=0), keypoints.max(axis=0)
        assert max(high - low) == pytest.approx(0.95 * max(box[2:] - box[:2]), rel=0.05)
        np.testing.assert_allclose((low + high) / 2, (box[:2] + box[2:]) / 2, atol=0.05 * max(box[2:] - box[:2]))
    # the camera: the camera-space keypoints project onto the 2D keypoints with the capture's camera
    assert (poses.focal_length, poses.principal_point) == (camera.focal_length, (884.0, 497.0))
    np.testing.assert_allclose(project(poses.joints_cam, poses.focal_length, poses.principal_point), poses.joints_2d,
                               atol=0.5)
    assert poses.joints_cam.dtype == np.float32 and np.isfinite(poses.joints_cam).all()


def test_a_focal_aware_graph_takes_the_users_focal_length(tmp_path, video_frame):
    """cliff_cond gets the user's f, and the results live in that camera: they project onto the keypoints."""
    model = build_instanthmr_model(tmp_path / "hmr.onnx", image_dtype="uint8", cliff_form="angular",
                                   metadata={"cliff_focal": "true"})
    for lens, focal in ((Lens(focal_px=1500.0), 1500.0), (Lens(lens_mm=50.0, sensor_width_mm=36.0), 50 * 1768 / 36)):
        hmr = load(model, lens=lens)
        poses = hmr.predict(video_frame, BOXES)
        assert hmr.camera(IMAGE_SIZE).focal_source == "user" and poses.focal_length == pytest.approx(focal)
        np.testing.assert_allclose(hmr.session.feeds[0]["cliff_cond"], cliff_angular(BOXES, IMAGE_SIZE, focal),
                                   rtol=1e-5)
        np.testing.assert_allclose(project(poses.joints_cam, focal, poses.principal_point), poses.joints_2d,
                                   atol=0.5)
    # a longer lens puts the same person further away, in proportion
    near = load(model, lens=Lens(focal_px=1000.0)).predict(video_frame, BOXES[:1])
    far = load(model, lens=Lens(focal_px=2000.0)).predict(video_frame, BOXES[:1])
    reference_near, reference_far = near.joints_cam[0].mean(axis=0), far.joints_cam[0].mean(axis=0)
    assert reference_far[2] / reference_near[2] == pytest.approx(2.0, rel=0.01)


def test_a_pixel_form_graph_given_a_focal_length_moves_people_in_depth(tmp_path, video_frame):
    """The first release's cliff_cond has no focal: its people are moved along z by f1/f0, so the body origin keeps
    its pixel in the user's camera (exactly) and the keypoints theirs (closely)."""
    model = build_instanthmr_model(tmp_path / "hmr.onnx", image_size=IMAGE_SIZE)
    own = load(model).predict(video_frame, BOXES)
    hmr = load(model, lens=Lens(focal_px=3000.0))
    given = hmr.predict(video_frame, BOXES)
    np.testing.assert_array_equal(hmr.session.feeds[0]["cliff_cond"], cliff_pixel(BOXES, IMAGE_SIZE))
    camera = hmr.camera(IMAGE_SIZE)
    assert camera.focal_length == 3000.0 and camera.depth_scale == pytest.approx(3000.0 / DIAGONAL)
    np.testing.assert_allclose(given.cam_trans[:, :2], own.cam_trans[:, :2])
    np.testing.assert_allclose(given.cam_trans[:, 2], own.cam_trans[:, 2] * 3000.0 / DIAGONAL, rtol=1e-6)
    np.testing.assert_allclose(project(given.cam_trans, 3000.0, given.principal_point),
                               project(own.cam_trans, DIAGONAL, own.principal_point), atol=1e-3)
    error = np.linalg.norm(project(given.joints_cam, 3000.0, given.principal_point) - given.joints_2d, axis=-1)
    box_size = (BOXES[:, 2:] - BOXES[:, :2]).max(axis=1)
    assert (error.max(axis=1) < 0.05 * box_size).all()
    np.testing.assert_array_equal(given.joints_2d, own.joints_2d)  # the 2D head does not depend on the camera


def test_capture_camera_by_hand():
    from instanthmr_blender.pose.hmr_graph import HMRGraph

    def graph(form):
        return HMRGraph("image", "float32", False, 224, "cliff_cond", "float32", form, None, {})

    pixel, angular = capture_camera(graph(PIXEL), (1080, 1920)), capture_camera(graph(ANGULAR), (1080, 1920))
    assert pixel.focal_length == pytest.approx(2202.907, abs=1e-3) and pixel.depth_scale == 1.0
    assert angular.focal_length == pytest.approx(1.05 * 2202.907, abs=1e-3) and angular.depth_scale == 1.0
    assert pixel.principal_point == angular.principal_point == (960.0, 540.0)
    assert pixel.focal_source == angular.focal_source == "model"
    given = capture_camera(graph(PIXEL), (1080, 1920), 1101.4535)
    assert given.focal_source == "user" and given.depth_scale == pytest.approx(0.5, rel=1e-6)
    cliff = cliff_angular(np.array([[960 + 100, 540 - 50, 960 + 300, 540 + 350]]), (1080, 1920), 1000.0)
    np.testing.assert_allclose(cliff, [[math.atan(0.2), math.atan(0.15), 0.4]], rtol=1e-6)


def test_lens_conversions_and_bad_values():
    assert Lens().focal_pixels((1080, 1920)) is None and not Lens().known
    assert Lens(focal_px=1500).focal_pixels((1080, 1920)) == 1500.0
    # mm along the longer side, whichever way the frame is held
    assert Lens(lens_mm=26).focal_pixels((1080, 1920)) == pytest.approx(26 * 1920 / 36)
    assert Lens(lens_mm=26).focal_pixels((1920, 1080)) == pytest.approx(26 * 1920 / 36)
    assert Lens(lens_mm=35, sensor_width_mm=23.5).focal_pixels((4000, 6000)) == pytest.approx(35 * 6000 / 23.5)
    with pytest.raises(LensError, match="not both"):
        Lens(focal_px=1000, lens_mm=50).check()
    with pytest.raises(LensError, match=r"sensor width \(mm\) must be a positive number, got 0"):
        Lens(lens_mm=50, sensor_width_mm=0).check()
    with pytest.raises(LensError, match="focal length"):
        Lens(focal_px=float("nan")).check()


REFUSED = {
    "uint8 crops without cliff_focal": (
        {"image_dtype": "uint8"}, "its cliff_cond convention is unknown", "image uint8[N,3,224,224]", "none"),
    "256 px crops without metadata": (
        {"crop_size": 256}, "its cliff_cond convention is unknown", "image float32[N,3,256,256]", "none"),
    "image_size contradicting the shape": (
        {"metadata": {"cliff_focal": "false", "image_size": "288"}},
        "metadata image_size=288 contradicts the crop input's 224 px", "image float32[N,3,224,224]",
        "cliff_focal=false, image_size=288"),
    "no crop size anywhere": (
        {"crop_size": None, "metadata": {"cliff_focal": "true"}}, "its crop size is unknown", "[N,3,N,N]",
        "cliff_focal=true"),
    "an extra input (fit layout)": (
        {"image_dtype": "uint8", "metadata": {"cliff_focal": "true"},
         "extra_inputs": [("previous_joints_2d", "float32", ["N", 70, 2])]},
        "its inputs besides the crop (cliff_cond, previous_joints_2d) are not exactly one cliff_cond [N,3] "
        "(a two-crop or extra-input fit layout is not supported)", "previous_joints_2d float32[N,70,2]",
        "cliff_focal=true"),
    "a second crop input (two-crop fit)": (
        {"image_dtype": "uint8", "metadata": {"cliff_focal": "true"},
         "extra_inputs": [("image_2", "uint8", ["N", 3, 224, 224])]},
        "it has 2 four-dimensional crop inputs, expected one (two crops per person", "image_2 uint8[N,3,224,224]",
        "cliff_focal=true"),
    "two crops per person in one input": (
        {"image_dtype": "uint8", "metadata": {"cliff_focal": "true"}, "image_input_shape": ["N", 2, 3, 224, 224]},
        "it has 0 four-dimensional crop inputs, expected one", "image uint8[N,2,3,224,224]", "cliff_focal=true"),
    "no joints_3d (MHR-only export)": (
        {"with_joints_3d": False, "metadata": {"cliff_focal": "true", "arch": "mhr_only"}},
        "it has no joints_3d output (an MHR-only export: its 70 keypoints would have to come from the MHR body "
        "model, which the capture does not run)", "joints_2d float32[N,70,2], crop_mean",
        "arch=mhr_only, cliff_focal=true"),
    "an unreadable cliff_focal": (
        {"metadata": {"cliff_focal": "yes please"}}, "metadata cliff_focal='yes please' is neither true nor false",
        "cliff_cond float32[N,3]", "cliff_focal=yes please"),
    "metadata that may change the input": (
        {"metadata": {"cliff_focal": "false", "crop_scale": "1.5"}},
        "it carries metadata crop_scale='1.5', which the add-on does not understand", "image float32",
        "cliff_focal=false, crop_scale=1.5"),
    "an integer crop input": (
        {"image_dtype": "uint8", "metadata": {"cliff_focal": "true"}, "cliff_dtype": "uint8"},
        "its cliff input 'cliff_cond' is uint8", "cliff_cond uint8[N,3]", "cliff_focal=true"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unknown_layouts_are_refused_with_their_signature(tmp_path, case):
    options, why, signature, metadata = REFUSED[case]
    path = build_instanthmr_model(tmp_path / "instanthmr-x.onnx", **options)
    with pytest.raises(ModelError) as error:
        InstantHMR(path, device="cpu")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("instanthmr-x.onnx: this InstantHMR graph is not supported: ")
    assert why in message and signature in message and f"metadata: {metadata}." in message
    assert "Supported: one crop input" in message


def test_metadata_about_other_things_is_kept_not_refused(tmp_path, video_frame):
    path = build_instanthmr_model(tmp_path / "hmr.onnx", metadata={"author": "someone", "licence": "SAM"})
    hmr = InstantHMR(path, device="cpu")
    assert hmr.graph.metadata == {"author": "someone", "licence": "SAM"} and hmr.graph.cliff_form == PIXEL
    assert len(hmr.predict(video_frame, BOXES)) == 2


def test_a_fixed_batch_graph_and_the_load_log(tmp_path, video_frame):
    lines = []
    path = build_instanthmr_model(tmp_path / "hmr.onnx", batch=3, image_dtype="uint8", cliff_form="angular",
                                  metadata={"cliff_focal": "true"})
    hmr = load(path, lens=Lens(lens_mm=26.0), log=lines.append)
    assert hmr.batch_size == 3
    assert any("uint8 224 px crops [N,3,S,S] normalised in the graph, angular cliff_cond (focal-aware); "
               "camera lens: 26 mm on a 36 mm sensor" in line for line in lines)
    hmr.predict(video_frame, BOXES)
    assert hmr.session.feeds[0]["image"].shape == (3, 3, 224, 224)
    assert not hmr.session.feeds[0]["image"][2].any() and not hmr.session.feeds[0]["cliff_cond"][2].any()


def test_a_bad_lens_is_refused_on_load(tmp_path):
    with pytest.raises(LensError, match="not both"):
        InstantHMR(build_instanthmr_model(tmp_path / "hmr.onnx"), device="cpu", lens=Lens(focal_px=1, lens_mm=2))
