"""Person detection: RF-DETR pre/post-processing on the contract stand-in, batching, the optional torch path."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from instanthmr_blender.models.runtime import ModelError
from instanthmr_blender.pose import detector as detector_module
from instanthmr_blender.pose.detector import (
    NO_WEIGHTS,
    DetectorUnavailable,
    OnnxRFDETR,
    TorchRFDETR,
    decode_rfdetr,
    preprocess_rfdetr,
)
from testkit.contract_models import DetectorBox, build_instanthmr_model, build_rfdetr_model


class RecordingSession:
    """Wraps an onnxruntime session and keeps every input batch it was given."""

    def __init__(self, session):
        self.session = session
        self.batches = []

    def run(self, output_names, feeds):
        self.batches.append({name: value.copy() for name, value in feeds.items()})
        return self.session.run(output_names, feeds)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


BOXES = (
    DetectorBox(0.50, 0.50, 0.20, 0.60, logit=1.0),  # person, 0.731
    DetectorBox(0.25, 0.40, 0.10, 0.30, logit=5.0, class_id=3),  # a confident car: never a person
    DetectorBox(0.75, 0.50, 0.30, 0.80, logit=2.0),  # person, 0.881 -> first
    DetectorBox(0.10, 0.10, 0.05, 0.05, logit=-0.5),  # person below the threshold
)


def test_only_people_above_confidence_sorted_by_sigmoid_score(tmp_path):
    model = build_rfdetr_model(tmp_path / "det.onnx", resolution=32, boxes=BOXES)
    det = OnnxRFDETR(model, confidence=0.5, device="cpu")
    assert det.resolution == 32  # read from the model
    frame = np.zeros((100, 200, 3), np.uint8)  # H=100, W=200
    (found,) = det.detect([frame])
    np.testing.assert_allclose(found.scores, sigmoid(np.array([2.0, 1.0])), rtol=1e-6)
    assert found.boxes.dtype == np.float32 and found.boxes.shape == (2, 4)
    # normalised (cx, cy, w, h) -> xyxy pixels of the original (non-square) frame
    np.testing.assert_allclose(found.boxes[0], [(0.75 - 0.15) * 200, (0.5 - 0.4) * 100, 0.9 * 200, 0.9 * 100],
                               rtol=1e-5)
    np.testing.assert_allclose(found.boxes[1], [0.4 * 200, 0.2 * 100, 0.6 * 200, 0.8 * 100], rtol=1e-5)
    # a stricter threshold keeps only the best one
    (strict,) = OnnxRFDETR(model, confidence=0.8, device="cpu").detect([frame])
    assert len(strict) == 1


def test_decode_uses_the_person_column_only():
    dets = np.array([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.4, 0.4]], np.float32)
    labels = np.full((2, 91), -5.0, np.float32)
    labels[0, 0] = 9.0  # column 0 is not "person" in RF-DETR's sparse COCO ids
    labels[1, 1] = 0.3
    found = decode_rfdetr(dets, labels, (10, 10), confidence=0.5)
    assert len(found) == 1
    np.testing.assert_allclose(found.scores, [sigmoid(0.3)], rtol=1e-6)
    np.testing.assert_allclose(found.boxes, [[3, 3, 7, 7]], atol=1e-6)


def test_preprocessing_is_stretch_rgb_over_255_imagenet_chw():
    frame = np.zeros((60, 120, 3), np.uint8)
    frame[:, :60] = (255, 0, 0)  # left half red, right half blue: a stretch keeps the split at the middle
    frame[:, 60:] = (0, 0, 255)
    image = preprocess_rfdetr(frame, 16)
    assert image.shape == (3, 16, 16) and image.dtype == np.float32
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    red = (np.array([1.0, 0.0, 0.0]) - mean) / std
    blue = (np.array([0.0, 0.0, 1.0]) - mean) / std
    np.testing.assert_allclose(image[:, :, :8].reshape(3, -1).T, np.tile(red, (16 * 8, 1)), rtol=1e-5)
    np.testing.assert_allclose(image[:, :, 8:].reshape(3, -1).T, np.tile(blue, (16 * 8, 1)), rtol=1e-5)


def test_frames_are_batched_and_each_gets_its_own_result(tmp_path):
    det = OnnxRFDETR(build_rfdetr_model(tmp_path / "det.onnx", resolution=32), device="cpu", max_batch=2)
    det.session = RecordingSession(det.session)
    frames = [np.full((40 + i, 80, 3), 10 * i, np.uint8) for i in range(5)]
    results = det.detect(frames)
    assert [batch["input"].shape[0] for batch in det.session.batches] == [2, 2, 1]
    assert len(results) == 5
    # boxes are scaled by each frame's own size
    for frame, found in zip(frames, results):
        np.testing.assert_allclose(found.boxes[0, 3], 0.9 * frame.shape[0], rtol=1e-5)
    # what went in is the preprocessed frame, in order
    np.testing.assert_allclose(det.session.batches[1]["input"][1], preprocess_rfdetr(frames[3], 32))


def test_a_fixed_batch_export_gets_padded_batches(tmp_path):
    det = OnnxRFDETR(build_rfdetr_model(tmp_path / "det.onnx", resolution=32, batch=2), device="cpu", max_batch=8)
    assert det.batch_size == 2
    det.session = RecordingSession(det.session)
    results = det.detect([np.zeros((32, 32, 3), np.uint8)] * 3)
    assert len(results) == 3
    assert [batch["input"].shape[0] for batch in det.session.batches] == [2, 2]
    assert not det.session.batches[1]["input"][1].any()  # the padding frame is all zeros


def test_wrong_model_or_resolution_is_refused(tmp_path):
    with pytest.raises(ModelError, match=r"hmr\.onnx: has 2 inputs .* RF-DETR"):
        OnnxRFDETR(build_instanthmr_model(tmp_path / "hmr.onnx"), device="cpu")
    with pytest.raises(ModelError, match=r"input 'input' has shape \[N,3,32,32\], expected \[N,3,384,384\]"):
        OnnxRFDETR(build_rfdetr_model(tmp_path / "det.onnx", resolution=32), resolution=384, device="cpu")


def test_torch_backend_without_rfdetr_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rfdetr", None)  # makes `import rfdetr` raise ImportError
    with pytest.raises(DetectorUnavailable, match=r"pip install \"rfdetr\[onnx\]\".*or use the ONNX detector"):
        TorchRFDETR("nano")
    with pytest.raises(ModelError, match="unknown RF-DETR variant 'huge'"):
        TorchRFDETR("huge")


class FakePrediction:
    """What rfdetr 1.11's predict gives per image: a supervision.Detections with class names in `data`."""

    def __init__(self):
        self.xyxy = np.array([[0, 0, 10, 20], [5, 5, 50, 60], [1, 1, 2, 2], [0, 0, 9, 9]], np.float32)
        self.confidence = np.array([0.6, 0.9, 0.95, 0.7], np.float32)
        self.class_id = np.array([1, 1, 3, 0])
        self.data = {"class_name": np.array(["person", "person", "car", ""])}


def fake_rfdetr(created: dict, class_names=("person", "bicycle", "car")):
    """A stand-in `rfdetr` module whose RFDETRNano records what it was given."""

    class FakeNano:
        def __init__(self, **kwargs):
            created["init"] = kwargs
            self.class_names = list(class_names)
            self.model = types.SimpleNamespace(resolution=kwargs.get("resolution", 384), device="cpu")

        def predict(self, images, threshold, include_source_image=True):
            created.setdefault("batches", []).append(len(images))
            created["threshold"] = threshold
            return [FakePrediction() for _ in images]

    return types.SimpleNamespace(RFDETRNano=FakeNano)


def test_torch_backend_keeps_people_only(monkeypatch, tmp_path):
    created = {}
    monkeypatch.setitem(sys.modules, "rfdetr", fake_rfdetr(created))
    checkpoint = tmp_path / "ckpt.pth"
    checkpoint.write_bytes(b"weights")
    det = TorchRFDETR("nano", confidence=0.55, device="cpu", weights=checkpoint, max_batch=2)
    results = det.detect([np.zeros((8, 8, 3), np.uint8)] * 3)
    assert created["init"] == {"pretrain_weights": str(checkpoint.resolve()), "device": "cpu"}
    assert created["threshold"] == 0.55 and created["batches"] == [2, 1]
    assert len(results) == 3
    np.testing.assert_allclose(results[0].scores, [0.9, 0.6])
    np.testing.assert_allclose(results[0].boxes, [[5, 5, 50, 60], [0, 0, 10, 20]])
    assert det.resolution == 384 and detector_module.RFDETR_RESOLUTIONS["nano"] == 384


def test_torch_backend_weights_and_devices(monkeypatch, tmp_path):
    created = {}
    monkeypatch.setitem(sys.modules, "rfdetr", fake_rfdetr(created))
    TorchRFDETR("nano", weights=NO_WEIGHTS, resolution=192)
    assert created["init"] == {"pretrain_weights": None, "resolution": 192}  # "auto": rfdetr picks the device
    TorchRFDETR("nano")
    assert created["init"] == {}  # rfdetr's COCO checkpoint
    lines = []
    TorchRFDETR("nano", device="directml", log=lines.append)
    assert created["init"] == {"device": "cpu"} and "ONNX detector only" in lines[0]
    with pytest.raises(ModelError, match=r"checkpoint `.*missing.pth` does not exist"):
        TorchRFDETR("nano", weights=tmp_path / "missing.pth")
    with pytest.raises(ModelError, match="not a positive multiple of 32"):
        TorchRFDETR("nano", resolution=100)
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        TorchRFDETR("nano", device="tpu")
    monkeypatch.setitem(sys.modules, "rfdetr", fake_rfdetr(created, class_names=("cat", "dog")))
    with pytest.raises(ModelError, match=r"has no \"person\" class \(its classes: cat, dog\)"):
        TorchRFDETR("nano", weights=NO_WEIGHTS)


def test_torch_backend_with_mismatched_torchvision_says_what_is_wrong(monkeypatch):
    """A CUDA torchvision next to a CPU torch fails at import with a RuntimeError, not an ImportError."""

    class BrokenFinder:
        def find_spec(self, name, path=None, target=None):
            if name == "rfdetr":
                raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.delitem(sys.modules, "rfdetr", raising=False)
    monkeypatch.setattr(sys, "meta_path", [BrokenFinder(), *sys.meta_path])
    with pytest.raises(DetectorUnavailable, match="torch and torchvision do not match"):
        TorchRFDETR("nano")


def test_export_tool_checks_its_arguments(tmp_path, capsys, export_tool):
    with pytest.raises(SystemExit) as info:
        export_tool.main(["--variant", "huge", "--out", str(tmp_path / "a.onnx")])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        export_tool.main(["--out", str(tmp_path / "a.pth")])
    assert "must end in .onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_tool.main(["--out", str(tmp_path / "a.onnx"), "--weights", str(tmp_path / "missing.pth")])
    assert "missing.pth does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_tool.main(["--out", str(tmp_path / "a.onnx"), "--resolution", "100"])
    assert "--resolution must be a positive multiple of 32" in capsys.readouterr().err


def test_export_tool_without_rfdetr_says_what_to_install(tmp_path, capsys, monkeypatch, export_tool):
    monkeypatch.setitem(sys.modules, "rfdetr", None)
    assert export_tool.main(["--variant", "small", "--out", str(tmp_path / "a.onnx")]) == 2
    assert 'pip install "rfdetr[onnx]"' in capsys.readouterr().err
    assert not (tmp_path / "a.onnx").exists()


def test_export_tool_moves_and_checks_what_rfdetr_wrote(tmp_path, capsys, monkeypatch, export_tool):
    """A fake rfdetr whose export() writes the contract stand-in where real rfdetr writes its file."""
    calls = {}

    class FakeSmall:
        class_names = ["person", "bicycle"]

        def __init__(self, **kwargs):
            calls["init"] = kwargs

        def export(self, output_dir="output", opset_version=17, verbose=True, shape=None, batch_size=1,
                   dynamic_batch=False):
            calls["export"] = dict(shape=shape, batch_size=batch_size, dynamic_batch=dynamic_batch)
            build_rfdetr_model(Path(output_dir) / "inference_model.onnx", resolution=shape[0] if shape else 56)

    monkeypatch.setitem(sys.modules, "rfdetr", types.SimpleNamespace(RFDETRSmall=FakeSmall))
    out = tmp_path / "models" / "rfdetr-small.onnx"
    argv = ["--variant", "small", "--out", str(out), "--resolution", "32", "--weights", "none"]
    assert export_tool.main(argv) == 0
    assert calls["init"] == {"resolution": 32, "pretrain_weights": None}
    assert calls["export"] == {"shape": (32, 32), "batch_size": 1, "dynamic_batch": True}
    assert OnnxRFDETR(out, device="cpu").resolution == 32
    assert "(random weights), input 32x32, batch dynamic" in capsys.readouterr().out


def test_degenerate_boxes_are_dropped():
    dets = np.array([[0.5, 0.5, 0.0, 0.3], [0.5, 0.5, 0.2, 0.2], [np.nan, 0.5, 0.2, 0.2]], np.float32)
    labels = np.full((3, 91), 3.0, np.float32)
    found = decode_rfdetr(dets, labels, (100, 100), confidence=0.5)
    np.testing.assert_allclose(found.boxes, [[40, 40, 60, 60]])
