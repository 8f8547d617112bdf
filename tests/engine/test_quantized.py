"""INT8 InstantHMR: the fidelity measures, the report beside the model, the choice, and the quantise command."""

import hashlib
import importlib.util
import json

import numpy as np
import pytest

from instanthmr_blender.models.fidelity import rigid_align
from instanthmr_blender.models.int8 import (
    FidelityReport,
    aligned_deviation,
    choose_hmr_model,
    find_int8,
    int8_model_path,
    int8_problem,
    jitter,
    point_deviation,
    report_path,
    summary_stats,
)
from instanthmr_blender.models.runtime import ModelError
from instanthmr_blender.pose.hmr import InstantHMR
from testkit.contract_models import DetectorBox, build_instanthmr_model, build_rfdetr_model, load_sample_pose
from tests.engine.conftest import REPO_ROOT

FP32_BYTES = b"fp32"
REPORT = dict(model="instanthmr.onnx", model_sha256=hashlib.sha256(FP32_BYTES).hexdigest(), model_bytes=len(FP32_BYTES),
              int8_model="instanthmr.int8.onnx", clip="me.mp4",
              calibration_crops=60, held_out_crops=140, fp32_ms=80.0, int8_ms=40.0, provider="CPUExecutionProvider",
              mm_3d_mean=6.0, mm_3d_p95=14.0, mm_3d_aligned_mean=4.0, mm_3d_aligned_p95=9.0, px_2d_mean=1.5,
              px_2d_p95=3.0, jitter_fp32_mm=2.0, jitter_int8_mm=2.2)


def rotation_z(degrees):
    a = np.radians(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def test_rigid_alignment_removes_rotation_and_translation_but_not_shape():
    pose = load_sample_pose().joints_3d.astype(np.float64)
    moved = pose @ rotation_z(20).T + [0.3, -0.1, 2.0]
    np.testing.assert_allclose(rigid_align(moved, pose), pose, atol=1e-9)
    assert aligned_deviation(moved[None], pose[None]).max() < 1e-9
    assert point_deviation(moved, pose).mean() > 0.1  # raw: far off
    bent = pose.copy()
    bent[7] += [0.05, 0.0, 0.0]  # one elbow 5 cm off: alignment cannot hide it
    assert aligned_deviation(bent[None], pose[None]).max() > 0.03
    mirrored = pose * [-1, 1, 1]  # a mirror is not a rotation: it stays off
    assert aligned_deviation(mirrored[None], pose[None]).mean() > 0.01


def test_jitter_and_statistics():
    frames = np.arange(10, dtype=np.float64)
    smooth = np.zeros((10, 70, 3))
    smooth[:, :, 0] = frames[:, None] * 0.01  # constant velocity: no jitter
    assert jitter(smooth) == pytest.approx(0.0, abs=1e-12)
    shaky = smooth.copy()
    shaky[::2, :, 1] += 0.002  # alternating 2 mm: second difference 4 mm
    assert jitter(shaky) == pytest.approx(0.004)
    shaky[4] = np.nan  # a missing frame drops the differences around it only
    assert jitter(shaky) == pytest.approx(0.004)
    assert np.isnan(jitter(smooth[:2]))
    mean, p95 = summary_stats(np.array([1.0, 2.0, np.nan, 3.0]))
    assert mean == 2.0 and p95 == pytest.approx(2.9)


def test_the_report_round_trips_and_the_int8_model_is_offered_only_with_it(tmp_path):
    model = tmp_path / "instanthmr.onnx"
    model.write_bytes(FP32_BYTES)
    assert find_int8(model) is None
    with pytest.raises(ModelError, match=r"instanthmr\.int8\.onnx.*tools/quantize_hmr\.py"):
        choose_hmr_model(model, use_int8=True)
    assert choose_hmr_model(model, use_int8=False) == model
    int8_model_path(model).write_bytes(b"int8")
    assert find_int8(model) is None  # no report: not offered
    FidelityReport(**REPORT).save(report_path(model))
    int8, report = find_int8(model)
    assert int8 == tmp_path / "instanthmr.int8.onnx" and report == FidelityReport(**REPORT)
    assert report.speed_up == 2.0 and report.jitter_change == pytest.approx(0.1)
    assert "2.00x faster" in report.summary() and "6.0 mm" in report.summary() and "2.0 -> 2.2" in report.summary()
    assert choose_hmr_model(model, use_int8=True) == int8
    report_path(model).write_text(json.dumps({**REPORT, "version": 99}))
    assert find_int8(model) is None
    assert "is not a usable INT8 fidelity report" in int8_problem(model)
    with pytest.raises(ModelError, match=r"instanthmr\.int8\.json. is not a usable INT8 fidelity report"):
        choose_hmr_model(model, use_int8=True)
    version_1 = {k: v for k, v in REPORT.items() if k != "model_bytes"}
    report_path(model).write_text(json.dumps({**version_1, "version": 1}))  # before model_bytes: made again
    assert find_int8(model) is None


def test_an_int8_report_of_another_model_is_not_offered_and_refused(tmp_path):
    """The user replaced instanthmr.onnx (another size, or the same size with other bytes) after quantising."""
    model = tmp_path / "instanthmr.onnx"
    model.write_bytes(FP32_BYTES)
    int8_model_path(model).write_bytes(b"int8")
    FidelityReport(**REPORT).save(report_path(model))
    assert int8_problem(model) is None and choose_hmr_model(model, use_int8=True) == int8_model_path(model)
    model.write_bytes(b"a larger model")
    assert find_int8(model) is None  # the panel's cheap check: the size
    assert "was measured on another model than `instanthmr.onnx`" in int8_problem(model)
    with pytest.raises(ModelError, match=r"measured on another model .*tools/quantize_hmr\.py, or choose 'As given'"):
        choose_hmr_model(model, use_int8=True)
    model.write_bytes(b"FP32")  # same size, other bytes: only the hash tells, at capture
    assert find_int8(model) is not None
    with pytest.raises(ModelError, match="measured on another model"):
        choose_hmr_model(model, use_int8=True)


@pytest.fixture(scope="module")
def quantize_tool():
    spec = importlib.util.spec_from_file_location("quantize_hmr", REPO_ROOT / "tools" / "quantize_hmr.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quantise_command_on_a_real_clip(quantize_tool, tmp_path, fixtures_dir, capsys):
    """Stand-in models on the real two-people clip: the INT8 file runs in the add-on and the report is written."""
    detector = build_rfdetr_model(tmp_path / "det.onnx", resolution=48, boxes=(
        DetectorBox(0.30, 0.55, 0.10, 0.50, logit=3.0), DetectorBox(0.70, 0.55, 0.12, 0.55, logit=2.0)))
    model = build_instanthmr_model(tmp_path / "instanthmr.onnx", image_size=(994, 1768))
    clip = fixtures_dir / "video" / "two_people_walking.mp4"
    args = ["--model", str(model), "--detector-model", str(detector), "--clip", str(clip), "--frames", "16"]
    assert quantize_tool.main(args) == 0
    int8, report = find_int8(model)
    assert report.clip == clip.name and report.calibration_crops > 0 and report.held_out_crops >= 20
    assert report.model_bytes == model.stat().st_size and choose_hmr_model(model, use_int8=True) == int8
    assert report.calibration_crops + report.held_out_crops == 2 * 16
    assert np.isfinite([report.mm_3d_mean, report.mm_3d_aligned_p95, report.px_2d_p95, report.int8_ms]).all()
    assert report.summary() in capsys.readouterr().out
    frame = np.zeros((994, 1768, 3), np.uint8)
    poses = InstantHMR(int8, device="cpu").predict(frame, np.array([[700, 250, 900, 850]], np.float32))
    assert np.isfinite(poses.joints_cam).all()


@pytest.mark.parametrize("change, message", [
    (("--clip", "/nonexistent.mp4"), "--clip /nonexistent.mp4 does not exist"),
    (("--model", "/nonexistent.onnx"), "--model /nonexistent.onnx does not exist"),
    (("--calibration", "1.5"), "--calibration 1.5 must be between 0 and 1"),
])
def test_quantise_command_bad_input_is_one_line_and_status_2(quantize_tool, tmp_path, fixtures_dir, capsys,
                                                            change, message):
    model = build_instanthmr_model(tmp_path / "instanthmr.onnx")
    args = {"--model": str(model), "--detector-model": str(model), "--clip":
            str(fixtures_dir / "video" / "one_person_lab.mp4"), "--calibration": "0.3"}
    args[change[0]] = change[1]
    assert quantize_tool.main([x for pair in args.items() for x in pair]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"quantize_hmr: error: {message}")
