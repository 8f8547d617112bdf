"""The optional PyTorch RF-DETR path against the real `rfdetr` package; skipped where it is not installed.

Nano is built with random weights (`weights=NO_WEIGHTS`, nothing downloaded), so its boxes mean nothing: the
tests set the classification head's biases to steer which classes win, then check the data path (types,
shapes, person filtering, threshold, full-frame pixels) and that the ONNX export behaves like the torch model.
"""

from contextlib import contextmanager

import cv2
import numpy as np
import pytest

from testkit.torch_compat import work_around_mismatched_torchvision

# Input size for the tests: a multiple of 32 below nano's 384, to keep predict and export fast on two cores.
RESOLUTION = 192
PERSON, CAR = 1, 3  # columns of RF-DETR's sparse 91-class COCO head
work_around_mismatched_torchvision()
rfdetr = pytest.importorskip(
    "rfdetr", reason='the optional `rfdetr` package is not installed (pip install "rfdetr[onnx]==1.11.2")'
)
import torch  # noqa: E402  (after the skip: rfdetr brings torch)

from instanthmr_blender.pose.detector import (  # noqa: E402
    MIN_BOX_SIZE,
    NO_WEIGHTS,
    Detections,
    OnnxRFDETR,
    TorchRFDETR,
)

pytestmark = [
    # rfdetr's own chatter, expected here: random weights on purpose, and its TorchScript-based ONNX export
    pytest.mark.filterwarnings("ignore:.*pretrain_weights=None"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def frame(fixtures_dir) -> np.ndarray:
    """The first frame of a real clip, RGB uint8 (H, W, 3), landscape (W > H)."""
    capture = cv2.VideoCapture(str(fixtures_dir / "video" / "two_people_walking.mp4"))
    ok, bgr = capture.read()
    capture.release()
    assert ok, "two_people_walking.mp4 gave no frame"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def nano() -> TorchRFDETR:
    torch.manual_seed(0)  # reproducible random weights
    return TorchRFDETR("nano", confidence=0.0, device="cpu", weights=NO_WEIGHTS, resolution=RESOLUTION)


@contextmanager
def head_biases(detector: TorchRFDETR, favoured: dict[int, float], others: float = -10.0):
    """Set the final classification biases (91,) so the favoured columns win every query; restored after."""
    head = detector.model.model.model.class_embed
    saved = head.bias.detach().clone()
    with torch.no_grad():
        head.bias.fill_(others)
        for column, bias in favoured.items():
            head.bias[column] = bias
    try:
        yield
    finally:
        with torch.no_grad():
            head.bias.copy_(saved)


def record_predictions(detector: TorchRFDETR, monkeypatch) -> list:
    """Keep every supervision.Detections rfdetr's predict returns to `detector`."""
    seen = []
    predict = detector.model.predict

    def recording_predict(*args, **kwargs):
        result = predict(*args, **kwargs)
        seen.extend(result)
        return result

    monkeypatch.setattr(detector.model, "predict", recording_predict)
    return seen


def test_random_nano_keeps_people_only_in_frame_pixels(nano, frame, monkeypatch):
    assert nano.resolution == RESOLUTION and nano.device == "cpu"
    crop = frame[100:400, 200:800]  # 300 x 600: another size and aspect in the same batch
    frames = [frame, crop]
    raw = record_predictions(nano, monkeypatch)
    with head_biases(nano, {PERSON: 0.0, CAR: 0.0}):
        found = nano.detect(frames)

    assert len(found) == 2 and len(raw) == 2
    for detections, prediction, image in zip(found, raw, frames, strict=True):
        height, width = image.shape[:2]
        names = prediction.data["class_name"]
        # rfdetr keeps the best (query, class) pairs: people and cars both, COCO ids 1 and 3
        assert set(prediction.class_id[names == "person"]) == {PERSON}
        assert (names == "person").any() and (names == "car").any()
        # people only, less boxes too thin to crop (random boxes clamped at the frame's edge often are)
        sizes = prediction.xyxy[:, 2:] - prediction.xyxy[:, :2]
        person = (names == "person") & (sizes >= MIN_BOX_SIZE).all(axis=1)
        assert isinstance(detections, Detections)
        assert detections.boxes.dtype == np.float32 and detections.scores.dtype == np.float32
        assert detections.boxes.shape == (int(person.sum()), 4) and person.sum() > 10
        assert np.all(np.diff(detections.scores) <= 0) and np.all((detections.scores > 0) & (detections.scores < 1))
        order = np.argsort(-prediction.confidence[person], kind="stable")
        np.testing.assert_array_equal(detections.boxes, prediction.xyxy[person][order])
        np.testing.assert_array_equal(detections.scores, prediction.confidence[person][order])
        x1, y1, x2, y2 = detections.boxes.T
        assert np.all((x1 >= 0) & (x1 < x2) & (x2 <= width) & (y1 >= 0) & (y1 < y2) & (y2 <= height))
    # boxes are in each frame's own pixels: the wide frame's boxes reach past the crop's width
    assert found[0].boxes[:, 2].max() > crop.shape[1]


def test_confidence_threshold_drops_people_below_it(nano, frame):
    crop = frame[100:400, 200:800]
    with head_biases(nano, {PERSON: 0.0}):
        everyone = nano.detect([crop])[0]
        nano.confidence = 0.5
        try:
            confident = nano.detect([crop])[0]
        finally:
            nano.confidence = 0.0
    keep = everyone.scores > 0.5
    assert 0 < keep.sum() < len(everyone), "the biases should spread person scores around 0.5"
    np.testing.assert_array_equal(confident.scores, everyone.scores[keep])
    np.testing.assert_array_equal(confident.boxes, everyone.boxes[keep])


def same_boxes(a: np.ndarray, b: np.ndarray, atol: float) -> bool:
    """(K, 4) box sets equal within atol pixels, in any order (near-equal scores may swap places)."""
    return a.shape == b.shape and np.allclose(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])], atol=atol)


def clamped_to(detections: Detections, image: np.ndarray) -> Detections:
    """The ONNX decode does not clamp to the frame, rfdetr does (and then drops boxes thinner than the minimum)."""
    height, width = image.shape[:2]
    boxes = np.clip(detections.boxes, 0, [width, height, width, height])
    keep = (boxes[:, 2:] - boxes[:, :2] >= MIN_BOX_SIZE).all(axis=1)
    return Detections(boxes[keep], detections.scores[keep])


def test_exported_onnx_fits_the_add_on_and_matches_torch(nano, frame, tmp_path, capsys, export_tool):
    """Save the steered random weights, export them with the tool, and compare OnnxRFDETR with TorchRFDETR."""
    checkpoint = tmp_path / "steered-nano.pth"
    out = tmp_path / "models" / "rfdetr-nano.onnx"
    square = np.ascontiguousarray(frame[200 : 200 + RESOLUTION, 500 : 500 + RESOLUTION])  # R x R: no resize
    small = np.ascontiguousarray(frame[300:420, 600:760])  # 120 x 160: both enlarge it (bilinear)
    with head_biases(nano, {PERSON: 0.0}):  # every query's best class is person: both keep all 300 queries
        torch.save({"model": nano.model.model.model.state_dict()}, checkpoint)
        torch_square, torch_small = nano.detect([square, small])
    argv = ["--variant", "nano", "--weights", str(checkpoint), "--resolution", str(RESOLUTION), "--out", str(out)]
    assert export_tool.main(argv) == 0, capsys.readouterr().err
    assert f"input {RESOLUTION}x{RESOLUTION}, batch dynamic" in capsys.readouterr().out

    onnx = OnnxRFDETR(out, confidence=0.0, device="cpu", max_batch=2)  # checks input/dets/labels by name
    assert onnx.resolution == RESOLUTION and onnx.fixed_batch is None
    onnx_square, onnx_small, onnx_frame = onnx.detect([square, small, frame])
    assert len(onnx_frame) > 0 and np.isfinite(onnx_frame.boxes).all()

    # the same input tensor: the same people, to float precision (so the checkpoint really was the one exported)
    onnx_square = clamped_to(onnx_square, square)
    assert len(torch_square) > 10
    np.testing.assert_allclose(np.sort(onnx_square.scores), np.sort(torch_square.scores), atol=1e-4)
    assert same_boxes(onnx_square.boxes, torch_square.boxes, atol=1e-2)
    # a non-square frame: boxes land in its own pixels in both; OpenCV's uint8 resize differs a little from
    # rfdetr's float one, which moves scores slightly
    onnx_small = clamped_to(onnx_small, small)
    assert len(torch_small) > 10
    np.testing.assert_allclose(np.sort(onnx_small.scores), np.sort(torch_small.scores), atol=0.05)
    assert same_boxes(onnx_small.boxes, torch_small.boxes, atol=0.5)
