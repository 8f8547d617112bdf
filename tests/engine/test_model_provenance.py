"""A capture records which weights made it: file, SHA-256, registry entry, licence, graph and camera; a known lens
becomes the take's camera, and the take's keypoints live in that camera (the world contract's premise)."""

import json

import numpy as np
import pytest

from instanthmr_blender.capture import provenance
from instanthmr_blender.capture.offline import capture
from instanthmr_blender.capture.settings import CaptureSettings
from instanthmr_blender.models import registry as model_registry
from instanthmr_blender.models.files import HASHES_FILE, sha256_of
from instanthmr_blender.take import load_take, save_take
from testkit.contract_models import DetectorBox, build_instanthmr_model, build_rfdetr_model

FRAMES = 8
TWO_PEOPLE = (DetectorBox(0.30, 0.55, 0.10, 0.50, logit=3.0), DetectorBox(0.70, 0.55, 0.12, 0.55, logit=2.0))
FOCAL_AWARE = {"image_dtype": "uint8", "cliff_form": "angular", "metadata": {"cliff_focal": "true"}}


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return build_rfdetr_model(tmp_path_factory.mktemp("det") / "rfdetr.onnx", resolution=48, boxes=TWO_PEOPLE)


def settings_for(fixtures_dir, detector, hmr, **lens) -> CaptureSettings:
    return CaptureSettings(source=str(fixtures_dir / "video" / "two_people_walking.mp4"), end=FRAMES,
                           detector_model=str(detector), hmr_model=str(hmr), min_track_length=3, device="cpu",
                           threads=1, **lens)


def reprojection_error(take) -> float:
    """Largest pixel distance between the camera-space keypoints projected with the take's camera and its 2D."""
    seen = take.valid
    cam, flat = take.joints_cam[seen], take.joints_2d[seen]
    projected = cam[..., :2] / cam[..., 2:] * take.focal_length + np.array(take.principal_point)
    return float(np.abs(projected - flat).max())


def test_a_focal_aware_capture_lives_in_the_users_camera(tmp_path, fixtures_dir, detector):
    hmr = build_instanthmr_model(tmp_path / "instanthmr-nano-fit1.onnx", **FOCAL_AWARE)
    default = capture(settings_for(fixtures_dir, detector, hmr))
    assert default.focal_length == pytest.approx(1.05 * np.hypot(1768, 994))
    given = capture(settings_for(fixtures_dir, detector, hmr, lens_mm=50.0, sensor_width_mm=36.0))
    assert given.focal_length == pytest.approx(50 * 1768 / 36) and given.principal_point == (884.0, 497.0)
    for take in (default, given):
        assert take.num_tracks == 2 and reprojection_error(take) < 0.5
    # the same people, further away with the longer lens
    ratio = np.nanmedian(given.cam_trans[..., 2] / default.cam_trans[..., 2])
    assert ratio == pytest.approx(given.focal_length / default.focal_length, rel=0.01)
    assert given.model_info["focal_source"] == "user" and default.model_info["focal_source"] == "model"
    assert "angular cliff_cond" in given.model_info["graph"]


def test_a_first_release_capture_with_a_lens_keeps_its_projection(tmp_path, fixtures_dir, detector):
    hmr = build_instanthmr_model(tmp_path / "instanthmr.onnx", image_size=(994, 1768))
    take = capture(settings_for(fixtures_dir, detector, hmr, focal_px=1500.0))
    assert take.focal_length == 1500.0
    # the body origin keeps its pixel exactly; the body's own depth is the model's, so its keypoints closely
    assert reprojection_error(take) < 0.05 * np.nanmax(take.bbox[..., 3] - take.bbox[..., 1])


def test_the_take_names_the_weights_and_their_licence(tmp_path, fixtures_dir, detector):
    folder = tmp_path / "models"
    hmr = build_instanthmr_model(folder / "instanthmr-nano.onnx", **FOCAL_AWARE)
    sha = sha256_of(hmr)
    # the first download recorded this file's hash (trust on first use)
    (folder / HASHES_FILE).write_text(json.dumps({"instanthmr-nano": {"sha256": sha}}))
    take = capture(settings_for(fixtures_dir, detector, hmr))
    info = take.model_info
    assert info["file"] == "instanthmr-nano.onnx" and info["sha256"] == sha
    assert info["model"] == "instanthmr-nano" and info["label"] == "Nano" and info["backbone"] == "HGNetV2-B0"
    assert info["licence"].startswith("SAM License, non-commercial use only")
    assert info["licence_url"] == "https://huggingface.co/momolesang/InstantHMR"
    assert info["source"] == "momolesang/InstantHMR@main" and info["release"] == "v1.0.1" and info["fit"] == 0
    assert info["hash_check"] == "identified by name; SHA-256 matches the one recorded on its first download"
    assert info["metadata"] == {"cliff_focal": "true"}
    assert load_take(save_take(take, tmp_path / "take.npz")).model_info == info

    # the file changes after its first download: no longer trusted to be that model
    (folder / HASHES_FILE).write_text(json.dumps({"instanthmr-nano": {"sha256": "0" * 64}}))
    changed = capture(settings_for(fixtures_dir, detector, hmr)).model_info
    assert changed["model"] == "" and changed["licence"] == provenance.UNKNOWN_LICENCE
    assert "differs from the one recorded on its first download" in changed["hash_check"]


def test_pinned_hashes_decide_over_names(tmp_path, fixtures_dir, monkeypatch):
    graph_file = build_instanthmr_model(tmp_path / "my-export.onnx")
    sha = sha256_of(graph_file)
    from instanthmr_blender.pose.hmr import InstantHMR

    hmr = InstantHMR(graph_file, device="cpu")
    camera = hmr.camera((994, 1768))
    # an unknown file: its hash is recorded, its licence is not invented
    info = provenance.model_provenance(graph_file, hmr.graph, camera)
    assert info["model"] == "" and info["licence"] == provenance.UNKNOWN_LICENCE and info["sha256"] == sha
    # named like the first release but not its pinned hash: not that file
    renamed = graph_file.rename(tmp_path / "instanthmr.onnx")
    info = provenance.model_provenance(renamed, hmr.graph, camera)
    assert info["model"] == "" and "not that file's pinned hash" in info["hash_check"]
    # a registry whose pinned hash is this file's: recognised whatever its name
    data = json.loads(model_registry.REGISTRY_FILE.read_text())
    data["models"][0]["sha256"] = sha
    monkeypatch.setattr(provenance, "registry", lambda: model_registry.parse_registry(data))
    info = provenance.model_provenance(renamed, hmr.graph, camera)
    assert info["model"] == "instanthmr" and info["hash_check"] == "SHA-256 matches the registry's pinned hash"
    assert info["source"] == "momolesang/InstantHMR@3504446fc31e7f76fdb1cd7e463189e7cf0fdd0f"
    assert info["backbone"] == "RepViT-M1.5" and info["licence"].startswith("SAM License")


def test_a_bad_lens_is_refused_before_the_capture(fixtures_dir, detector, tmp_path):
    from instanthmr_blender.video.lens import LensError

    hmr = build_instanthmr_model(tmp_path / "instanthmr.onnx")
    with pytest.raises(LensError, match=r"lens \(mm\) must be a positive number, got -5"):
        capture(settings_for(fixtures_dir, detector, hmr, lens_mm=-5.0))
