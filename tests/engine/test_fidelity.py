"""Backend fidelity figures (instanthmr_blender.models.fidelity) and tools/compare_backends.py on the fixture people."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from instanthmr_blender.models.fidelity import Deviations, rigid_align
from tests import sam3d_setup

REPO_ROOT = Path(__file__).resolve().parents[2]


def rotation_z(degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


def test_rigid_alignment_removes_rotation_and_translation_only(fixtures_dir):
    person = sam3d_setup.fixture_people(fixtures_dir)[0]
    target = (person["pred_keypoints_3d"] + person["pred_cam_t"]).astype(np.float64)
    moved = target @ rotation_z(25).T + np.array([0.3, -0.1, 0.5])
    np.testing.assert_allclose(rigid_align(moved, target), target, atol=1e-9)
    # a scaled body is not "aligned away": rigid, not similarity
    scaled = (target - target.mean(0)) * 1.1 + target.mean(0)
    assert np.nanmean(np.linalg.norm(rigid_align(scaled, target) - target, axis=1)) > 0.02
    # missing keypoints are left out of the fit and stay missing
    holes = moved.copy()
    holes[[3, 40]] = np.nan
    aligned = rigid_align(holes, target)
    assert np.isnan(aligned[[3, 40]]).all()
    np.testing.assert_allclose(np.delete(aligned, [3, 40], 0), np.delete(target, [3, 40], 0), atol=1e-9)
    assert np.isnan(rigid_align(moved[:2], target[:2])).all()


def test_deviation_figures_in_mm_and_px(fixtures_dir):
    people = sam3d_setup.fixture_people(fixtures_dir)
    cam = np.stack([p["pred_keypoints_3d"] + p["pred_cam_t"] for p in people]).astype(np.float64)
    px = np.stack([p["pred_keypoints_2d"] for p in people]).astype(np.float64)
    deviations = Deviations()
    shifted = cam + np.array([0.0, 0.0, 0.05])  # 5 cm deeper: 50 mm raw, nothing after alignment
    deviations.add(shifted, cam, px + np.array([3.0, 4.0]), px)  # 5 px in 2D
    summary = deviations.summary()
    assert deviations.crops == 4
    assert summary["raw_mm"]["mean"] == pytest.approx(50.0) and summary["raw_mm"]["p95"] == pytest.approx(50.0)
    assert summary["aligned_mm"]["max"] < 1e-6
    assert summary["pixels"]["mean"] == pytest.approx(5.0)


@pytest.fixture
def compare_tool():
    spec = importlib.util.spec_from_file_location("compare_backends", REPO_ROOT / "tools" / "compare_backends.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_tool_runs_both_sam3d_backbones_on_the_same_crops(compare_tool, fixtures_dir, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import cv2

    from instanthmr_blender.capture.sam3d_import import import_sam3d_results
    from instanthmr_blender.take import save_take

    image = tmp_path / "people.png"
    cv2.imwrite(str(image), cv2.cvtColor(sam3d_setup.render_test_image(fixtures_dir), cv2.COLOR_RGB2BGR))
    folder = sam3d_setup.write_demo_outputs(tmp_path / "demo", fixtures_dir, "npz")
    take = save_take(import_sam3d_results(folder, source=str(image)), tmp_path / "boxes.npz")
    checkpoint = sam3d_setup.make_checkpoint(tmp_path / "ckpt", fixtures_dir)

    class Features(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.avg_pool2d(x, 16).repeat(1, 427, 1, 1)[:, :1280]

    backbone = tmp_path / "int8.pt2"
    torch.export.save(torch.export.export(Features(), (torch.zeros(1, 3, 512, 512),)), str(backbone))
    report = tmp_path / "report.json"
    status = compare_tool.main([
        "--take", str(take), "--a", "sam3d", "--b", f"sam3d:{backbone}", "--sam3d-python", sys.executable,
        "--sam3d-checkpoint", str(checkpoint), "--sam3d-code", str(sam3d_setup.STUB_CODE), "--sam3d-device", "cpu",
        "--focal-px", str(sam3d_setup.FOCAL), "--json", str(report),
    ])  # fmt: skip
    captured = capsys.readouterr()
    out = captured.out
    assert status == 0, captured.out + captured.err
    assert "1 frames, 4 crops, the same boxes for both" in out
    assert "A: SAM 3D Body, DINOv3 (checkpoint), fp32 on cpu" in out
    assert "B: SAM 3D Body, int8.pt2 (torch.export)" in out
    figures = json.loads(report.read_text())
    # the stub answers the same for both builds: every deviation is zero, and both were timed per crop
    assert figures["crops"] == 4 and all(v["max"] < 1e-6 for v in figures["deviation"].values())
    assert figures["a"]["ms_per_crop"] > 0 and figures["b"]["stages_ms"]["backbone"] > 0
