"""SAM 3D Body end to end through the command line in real Blender: a capture with the SAM 3D Body backend
(our detector and tracker, the worker under the dev venv's Python with the stub estimator answering with the
real fixture outputs) and an import of the same outputs in the upstream demo's layout. Both rigs land on
`pred_keypoints_3d + pred_cam_t` (world contract) and on `pred_keypoints_2d` (through the scene camera)."""

import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from capture_helpers import AddonApi, bone_keypoints, camera_to_world, evaluated_joints
from mathutils import Vector

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
EXACT = ("--smoothing", "off", "--foot-lock", "off", "--symmetric-lengths", "off", "--min-track-length", "1")


@pytest.fixture(scope="module")
def api(installed_addon):
    return AddonApi(installed_addon)


@pytest.fixture(scope="module")
def worker_python() -> Path:
    probe = subprocess.run([str(WORKER_PYTHON), "-c", "import torch"], capture_output=True)
    if probe.returncode != 0:
        pytest.fail(f"{WORKER_PYTHON} has no torch (tools/setup_venv.sh installs it): no Python for SAM 3D Body")
    return WORKER_PYTHON


def headless(addon, argv) -> int:
    from importlib import import_module

    return import_module(addon.__name__ + ".cli").main([str(a) for a in argv])


def write_png(path: Path, rgb) -> None:
    """A PNG written with Blender's image API (the test venv has no OpenCV of its own)."""
    height, width = rgb.shape[:2]
    image = bpy.data.images.new("frame", width, height)
    pixels = rgb[::-1].astype(np.float32) / 255.0
    image.pixels.foreach_set(np.concatenate([pixels, np.ones((height, width, 1), np.float32)], axis=2).ravel())
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)


def check_rigs_land_on_the_fixtures(api, take, fixtures_dir):
    """Every keypoint bone end within 2 mm of pred_keypoints_3d + pred_cam_t (world contract) and within 2 px of
    pred_keypoints_2d through Blender's camera; returns the worst (mm, px)."""
    from sam3d_setup import fixture_people

    scene = bpy.context.scene
    rigs = sorted((o for o in scene.objects if o.get("instanthmr_role") == "capture_rig"), key=lambda o: o.name)
    assert len(rigs) == 4 and take.num_tracks == 4
    camera = scene.camera
    height, width = take.image_size
    assert (scene.render.resolution_x, scene.render.resolution_y) == (width, height)
    assert abs(camera.data.lens - take.focal_length * 36 / width) < 1e-4
    people = fixture_people(fixtures_dir)
    worst_mm, worst_px = 0.0, 0.0
    for track, rig in enumerate(rigs):
        person = people[int(np.argmin([np.abs(p["bbox"] - take.bbox[track, 0]).max() for p in people]))]
        target = camera_to_world(camera, (person["pred_keypoints_3d"] + person["pred_cam_t"]).astype(float))
        heads, tails = evaluated_joints(rig, scene, int(take.frames[0]) + 1)
        kp_heads, kp_tails = bone_keypoints(rig, api)
        ends = np.concatenate([heads[kp_heads >= 0], tails[kp_tails >= 0]])
        kps = np.concatenate([kp_heads[kp_heads >= 0], kp_tails[kp_tails >= 0]])
        errors = np.linalg.norm(ends - target[kps], axis=1)
        pixels = []
        for point in ends:
            ndc = world_to_camera_view(scene, camera, Vector(point))
            pixels.append((ndc.x * width, (1 - ndc.y) * height))
        reprojection = np.linalg.norm(np.array(pixels) - person["pred_keypoints_2d"][kps], axis=1)
        worst_mm, worst_px = max(worst_mm, errors.max() * 1000), max(worst_px, reprojection.max())
    print(f"SAM 3D Body rigs: worst keypoint bone end {worst_mm:.3f} mm from pred_keypoints_3d + pred_cam_t, "
          f"{worst_px:.3f} px from pred_keypoints_2d")
    assert worst_mm <= 2.0 and worst_px <= 2.0, f"{worst_mm:.2f} mm, {worst_px:.2f} px"
    return worst_mm, worst_px


def test_capture_with_the_sam3d_backend(addon, api, worker_python, fixtures_dir, tmp_path, capsys):
    from sam3d_setup import FOCAL, detector_boxes, make_checkpoint, render_test_image

    from testkit.contract_models import DetectorBox, build_rfdetr_model

    models = tmp_path / "models"
    build_rfdetr_model(models / "rfdetr-nano.onnx", boxes=tuple(DetectorBox(*b) for b in detector_boxes(fixtures_dir)))
    image = tmp_path / "people.png"
    write_png(image, render_test_image(fixtures_dir))
    checkpoint = make_checkpoint(tmp_path / "sam-3d-body-dinov3", fixtures_dir)
    take_path = tmp_path / "people.take.npz"
    status = headless(addon, ["--image", image, "--model-dir", models, "--backend", "sam3d",
                              "--sam3d-python", worker_python, "--sam3d-checkpoint", checkpoint,
                              "--sam3d-code", REPO_ROOT / "tests" / "sam3d_stub", "--sam3d-device", "cpu",
                              "--focal-px", FOCAL, "--max-persons", "4", *EXACT, "--no-background",
                              "--save-take", take_path, "--out", tmp_path / "people.blend"])
    out = capsys.readouterr()
    assert status == 0, out.err[-2000:]
    assert "SAM 3D Body per crop (4 crops): backbone" in out.out
    take = api.take.load_take(take_path)
    assert take.model_info["backend"] == "sam3d" and take.model_info["precision"] == "fp32"
    assert take.model_info["checkpoint"] == str(checkpoint.resolve())
    check_rigs_land_on_the_fixtures(api, take, fixtures_dir)


def test_import_of_demo_outputs(addon, api, fixtures_dir, tmp_path, capsys):
    from sam3d_setup import write_demo_outputs

    folder = write_demo_outputs(tmp_path / "people", fixtures_dir, "pkl")
    take_path = tmp_path / "imported.take.npz"
    status = headless(addon, ["--import-sam3d", folder, *EXACT, "--save-take", take_path,
                              "--out", tmp_path / "imported.blend"])
    out = capsys.readouterr()
    assert status == 0, out.err[-2000:]
    assert "imported SAM 3D Body results" in out.out and "(4 people, 1 frames)" in out.out
    take = api.take.load_take(take_path)
    assert take.image_size == (890, 1920) and abs(take.focal_length - 2535.27) < 1e-3
    check_rigs_land_on_the_fixtures(api, take, fixtures_dir)


def test_sam3d_setup_problems_are_one_line_before_any_work(addon, fixtures_dir, tmp_path, capsys):
    image = tmp_path / "any.png"
    write_png(image, np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "ckpt").mkdir()
    cases = [
        (["--sam3d-python", tmp_path / "no-python"], "the SAM 3D Body Python `"),
        (["--sam3d-python", sys.executable, "--sam3d-checkpoint", tmp_path / "ckpt"],
         "is not a SAM 3D Body checkpoint folder: missing model.ckpt, model_config.yaml, assets/mhr_model.pt"),
    ]
    for extra, message in cases:
        status = headless(addon, ["--image", image, "--backend", "sam3d", *extra, "--out", tmp_path / "x.blend"])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and err[-1].startswith("capture: error: ") and message in err[-1], err
    status = headless(addon, ["--import-sam3d", tmp_path / "ckpt", "--out", tmp_path / "x.blend"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and "holds no SAM 3D Body results" in err[-1]
    assert not (tmp_path / "x.blend").exists()


def test_import_operator_from_the_panel(addon, api, fixtures_dir, tmp_path):
    from sam3d_setup import write_demo_outputs

    bpy.ops.wm.read_homefile(use_empty=True)
    folder = write_demo_outputs(tmp_path / "people", fixtures_dir, "npz", frames=(0, 1, 2))
    settings = bpy.context.scene.instanthmr
    settings.clip, settings.min_track_length = "", 1
    settings.smoothing, settings.foot_lock, settings.symmetric_lengths = "off", False, False
    assert bpy.ops.instanthmr.import_sam3d(directory=str(folder)) == {"FINISHED"}
    take = api.take.load_take(settings.take_path)
    assert take.num_tracks == 4 and take.frames.tolist() == [0, 1, 2] and take.model_info["backend"] == "sam3d"
    assert len(settings.people) == 4
    rigs = [o for o in bpy.context.scene.objects if o.get("instanthmr_role") == "capture_rig"]
    assert len(rigs) == 4 and bpy.context.scene.frame_end == 3
    # a folder that is not SAM 3D Body output is refused with its reason, and the scene keeps what it had
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not results")
    with pytest.raises(RuntimeError, match="holds no SAM 3D Body results"):
        bpy.ops.instanthmr.import_sam3d(directory=str(tmp_path / "other"))
    assert len([o for o in bpy.context.scene.objects if o.get("instanthmr_role") == "capture_rig"]) == 4


def test_panel_and_preferences_offer_the_model_choice_and_say_what_sam3d_needs(addon, tmp_path):
    from conftest import ADDON_MODULE
    from test_ui_draw import draw

    prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
    bpy.ops.wm.read_homefile(use_empty=True)
    try:
        prefs.pose_backend = "sam3d"
        prefs.sam3d_python, prefs.sam3d_checkpoint = sys.executable, str(tmp_path)
        main = draw(bpy.types.VIEW3D_PT_instanthmr_capture, bpy.context)
        assert ("prop", "pose_backend") in main and ("operator", "instanthmr.import_sam3d") in main
        needs = [text for kind, text in main if kind == "label" and text.startswith("SAM 3D Body:")]
        assert needs and "missing model.ckpt, model_config.yaml, assets/mhr_model.pt" in needs[0]
        # a capture does not start, and says the same
        bpy.context.scene.instanthmr.clip = str(tmp_path)
        with pytest.raises(RuntimeError, match="is not a SAM 3D Body checkpoint folder"):
            bpy.ops.instanthmr.capture()
    finally:
        prefs.pose_backend, prefs.sam3d_python, prefs.sam3d_checkpoint = "instanthmr", "", ""
    main = draw(bpy.types.VIEW3D_PT_instanthmr_capture, bpy.context)
    assert not [text for kind, text in main if kind == "label" and text.startswith("SAM 3D Body:")]
