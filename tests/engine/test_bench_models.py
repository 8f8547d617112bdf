"""The real-cost benchmark: the InstantHMR-sized random-weight model keeps the contract, and the bound sums the
needed work as stated. Skipped where torch/timm (dev-only) are missing."""

import importlib.util
import sys

import numpy as np
import pytest

from instanthmr_blender.pose.hmr import InstantHMR
from testkit.torch_compat import work_around_mismatched_torchvision
from tests.engine.conftest import REPO_ROOT

# torch's ONNX exporter explains itself at length while tracing; expected here
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_instanthmr_sized_model_keeps_the_contract_in_fp32_and_fp16(tmp_path):
    work_around_mismatched_torchvision()
    pytest.importorskip("timm")
    tool = load_tool("build_bench_models")
    fp32, fp16, parameters = tool.export_hmr("nano", tmp_path)
    assert 17e6 < parameters < 21e6  # upstream's nano: 20.0 M
    frame = np.random.default_rng(0).integers(0, 256, (994, 1768, 3), np.uint8)
    boxes = np.array([[700, 250, 900, 850], [1200, 300, 1350, 700]], np.float32)
    results = [InstantHMR(path, device="cpu").predict(frame, boxes) for path in (fp32, fp16)]
    for poses in results:
        assert poses.joints_3d.shape == (2, 70, 3) and np.isfinite(poses.joints_cam).all()
        assert np.abs(poses.joints_crop).max() < 1.0  # biased towards a person filling the crop
    np.testing.assert_allclose(results[0].joints_3d, results[1].joints_3d, atol=5e-3)
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size  # fp16 weights


def test_the_bound_is_the_needed_work_one_call_after_another():
    bench = load_tool("bench_pipeline")
    alone = bench.AloneTimes({1: 100.0, 2: 210.0}, {1: 50.0, 2: 80.0, 3: 160.0})
    assert alone.hmr_best_ms(2) == 80.0 and alone.hmr_best_ms(3) == 150.0  # 3 alone beat one batch of 3
    work = bench.WorkLog(detector_frames=[1, 1, 1], hmr_people=[2, 0, 1, 3])
    assert bench.bound_seconds(work, alone) == pytest.approx((300 + 80 + 50 + 150) / 1000)
    later = bench.AloneTimes({1: 90.0, 2: 250.0}, {1: 55.0, 2: 70.0, 3: 170.0})
    merged = alone.merge(later)
    assert merged.detector_ms == {1: 90.0, 2: 210.0} and merged.hmr_ms == {1: 50.0, 2: 70.0, 3: 160.0}


def test_the_replay_makes_the_captures_own_calls_again_on_the_same_frames(fixtures_dir):
    """The replayed bound: every call the capture logged, once, on the frame it was made on, with its boxes."""
    bench = load_tool("bench_pipeline")
    from instanthmr_blender.capture.settings import CaptureSettings
    from instanthmr_blender.video.frames import open_source

    clip = fixtures_dir / "video" / "two_people_walking.mp4"
    settings = CaptureSettings(source=str(clip), start=3, end=15, step=2)
    with open_source(clip) as source:
        frames = [rgb for _, rgb in source.frames(3, 15, 2)]
    boxes = [np.array([[10.0 * i, 20, 300, 400]], np.float32) for i in range(len(frames))]
    logger = bench.CountingModels(
        type("D", (), {"detect": lambda self, f: [None] * len(f)})(),
        type("H", (), {"predict": lambda self, f, b: None})(),
    )
    logger.detector.detect([frames[0], frames[1]])
    for frame, box in zip(frames, boxes):
        logger.hmr.predict(frame, box)
    logger.detector.detect([frames[3]])
    made = []

    class Detector:
        def detect(self, batch):
            made.append(("detector", [bench.fingerprint(f) for f in batch]))
            return [None] * len(batch)

    class Hmr:
        def predict(self, frame, box):
            made.append(("hmr", [bench.fingerprint(frame)], box.tolist()))

    seconds = bench.replay_seconds(settings, logger.log, bench.LoadedModels(Detector(), Hmr(), 0.0))
    assert seconds > 0
    prints = [bench.fingerprint(f) for f in frames]
    hmr_calls = [("hmr", [p], b.tolist()) for p, b in zip(prints, boxes)]
    expected = [("detector", prints[:2]), *hmr_calls[:3], ("detector", [prints[3]]), *hmr_calls[3:]]
    assert sorted(map(repr, made)) == sorted(map(repr, expected))  # each once (a batch runs at its last frame)
