"""SAM 3D Body as a backend (instanthmr_blender.pose.sam3d, sam3d_worker): the worker runs under the dev venv's Python
(it has torch) with the stub estimator on its path, answering with the real SAM 3D Body fixture outputs."""

import os
import sys

import numpy as np
import pytest

from instanthmr_blender.pose import sam3d
from instanthmr_blender.workers import sam3d_worker
from tests import sam3d_setup

pytest.importorskip("torch")


def settings_for(checkpoint, **overrides) -> sam3d.Sam3DSettings:
    values = dict(python=sys.executable, checkpoint=str(checkpoint), code=str(sam3d_setup.STUB_CODE), device="cpu")
    values.update(overrides)
    return sam3d.Sam3DSettings(**values)


@pytest.fixture(scope="module")
def checkpoint(fixtures_dir, tmp_path_factory):
    return sam3d_setup.make_checkpoint(tmp_path_factory.mktemp("sam3d") / "ckpt", fixtures_dir)


@pytest.fixture(scope="module")
def backend(checkpoint):
    with sam3d.Sam3DBody(settings_for(checkpoint), focal_px=sam3d_setup.FOCAL) as model:
        yield model


def test_worker_returns_the_real_outputs_for_the_boxes_in_take_units(backend, fixtures_dir):
    people = sam3d_setup.fixture_people(fixtures_dir)
    image = sam3d_setup.render_test_image(fixtures_dir)
    boxes = np.stack([p["bbox"] for p in people])[[2, 0, 3, 1]]  # any order: answers follow the boxes
    poses = backend.predict(image, boxes)
    assert len(poses) == 4
    for row, index in enumerate([2, 0, 3, 1]):
        person = people[index]
        np.testing.assert_allclose(poses.joints_3d[row], person["pred_keypoints_3d"], atol=1e-6)
        np.testing.assert_allclose(poses.cam_trans[row], person["pred_cam_t"], atol=1e-6)
        np.testing.assert_allclose(poses.joints_cam[row], person["pred_keypoints_3d"] + person["pred_cam_t"], atol=1e-6)
        np.testing.assert_allclose(poses.joints_2d[row], person["pred_keypoints_2d"], atol=1e-4)
        np.testing.assert_allclose(poses.mhr_params[row], person["mhr_model_params"], atol=1e-6)
        np.testing.assert_allclose(poses.shape_params[row], person["shape_params"], atol=1e-6)
    # units and camera: the camera-space keypoints, projected with the take's camera, land on the 2D keypoints
    assert poses.focal_length == pytest.approx(sam3d_setup.FOCAL)
    assert poses.principal_point == sam3d_setup.PRINCIPAL
    cam = poses.joints_cam
    projected = poses.focal_length * cam[..., :2] / cam[..., 2:] + np.array(sam3d_setup.PRINCIPAL)
    assert np.abs(projected - poses.joints_2d).max() < 0.01
    # crop coordinates: the body keypoints sit inside SAM 3D Body's 1.25x crop square
    assert np.abs(poses.joints_crop[:, :21]).max() <= 1.0
    assert backend.times.crops >= 4 and set(backend.times.per_crop()) == {"backbone", "decoder_and_heads", "model"}


def test_no_boxes_never_calls_the_worker(backend, fixtures_dir):
    crops = backend.times.crops
    poses = backend.predict(sam3d_setup.render_test_image(fixtures_dir), np.zeros((0, 4), np.float32))
    assert len(poses) == 0 and backend.times.crops == crops


def test_take_provenance_names_backend_checkpoint_backbone_and_precision(backend, checkpoint):
    info = backend.model_info
    assert info["backend"] == "sam3d" and info["checkpoint"] == str(checkpoint)
    assert info["backbone"] == "DINOv3 (checkpoint)" and info["precision"] == "fp32"
    assert info["sam_3d_body"] == "stub-1.0" and info["device"] == "cpu" and info["focal_source"] == "given"


def test_default_camera_is_upstreams_and_reaches_the_model(checkpoint, fixtures_dir):
    # Without a focal length the take's camera is upstream's default, sqrt(W^2 + H^2): the stub, whose outputs
    # were made with f = 2535.27, refuses it, so the intrinsics really go through.
    with sam3d.Sam3DBody(settings_for(checkpoint)) as model:
        assert model.camera((890, 1920)) == (pytest.approx(np.hypot(1920, 890)), (960.0, 445.0))
        boxes = np.stack([p["bbox"] for p in sam3d_setup.fixture_people(fixtures_dir)])
        with pytest.raises(sam3d.Sam3DWorkerError, match="not the fixtures' camera"):
            model.predict(sam3d_setup.render_test_image(fixtures_dir), boxes)


def test_bgr_or_flipped_frames_are_caught(backend, fixtures_dir):
    image = sam3d_setup.render_test_image(fixtures_dir)
    boxes = np.stack([p["bbox"] for p in sam3d_setup.fixture_people(fixtures_dir)])
    with pytest.raises(sam3d.Sam3DWorkerError, match="marker"):
        backend.predict(np.ascontiguousarray(image[..., ::-1]), boxes)
    assert len(backend.predict(image, boxes)) == 4  # the worker keeps serving after a failed frame


def test_int8_backbone_from_a_pt2_replaces_the_fp32_one(checkpoint, fixtures_dir, tmp_path):
    import torch

    class Features(torch.nn.Module):  # the Embedl build's contract: (1,3,512,512) -> (1,1280,32,32)
        def __init__(self):
            super().__init__()
            self.project = torch.nn.Conv2d(3, 1280, 1)

        def forward(self, x):
            return self.project(torch.nn.functional.avg_pool2d(x, 16))

    path = tmp_path / "embedl_sam3dbody_int8.pt2"
    torch.export.save(torch.export.export(Features(), (torch.zeros(1, 3, 512, 512),)), str(path))
    with sam3d.Sam3DBody(settings_for(checkpoint, backbone=str(path)), focal_px=sam3d_setup.FOCAL) as model:
        assert model.model_info["backbone"] == "embedl_sam3dbody_int8.pt2 (torch.export)"
        assert model.model_info["precision"] == "int8"
        boxes = np.stack([p["bbox"] for p in sam3d_setup.fixture_people(fixtures_dir)])
        assert len(model.predict(sam3d_setup.render_test_image(fixtures_dir), boxes)) == 4
        assert model.times.per_crop()["backbone"] > 0.0

    wrong = tmp_path / "wrong.pt2"
    torch.export.save(torch.export.export(torch.nn.AvgPool2d(8), (torch.zeros(1, 3, 512, 512),)), str(wrong))
    with pytest.raises(sam3d.Sam3DError, match=r"returned \(1, 3, 64, 64\); SAM 3D Body's is \(1, 1280, 32, 32\)"):
        sam3d.Sam3DBody(settings_for(checkpoint, backbone=str(wrong)))
    text = tmp_path / "notes.pt2"
    text.write_text("not a program")
    with pytest.raises(sam3d.Sam3DError, match="is not a torch.export program"):
        sam3d.Sam3DBody(settings_for(checkpoint, backbone=str(text)))
    engine = tmp_path / "embedl_sam3dbody_int8.engine"
    engine.write_bytes(b"serialized engine")
    with pytest.raises(sam3d.Sam3DError, match="TensorRT backbone .* needs a CUDA device"):
        sam3d.Sam3DBody(settings_for(checkpoint, backbone=str(engine), device="cpu"))


# ---------------------------------------------------------------------------------------------------------
# Clear one-line failures.


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_missing_environment_says_what_it_needs(checkpoint, tmp_path):
    with pytest.raises(sam3d.Sam3DError, match="needs its own Python environment") as error:
        sam3d.Sam3DBody(settings_for(checkpoint, python=""))
    _one_line(error)
    with pytest.raises(sam3d.Sam3DError, match="is not an executable file") as error:
        sam3d.Sam3DBody(settings_for(checkpoint, python=str(tmp_path / "no-python")))
    _one_line(error)
    # a Python without the upstream code (no code folder, nothing installed)
    needs_upstream = "cannot import sam_3d_body .*install facebookresearch/sam-3d-body"
    with pytest.raises(sam3d.Sam3DError, match=needs_upstream) as error:
        sam3d.Sam3DBody(settings_for(checkpoint, code=""))
    _one_line(error)


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script as the Python")
def test_python_without_torch_or_garbage_output_is_one_line(checkpoint, tmp_path):
    # A Python in which `import torch` fails, as in a plain system Python.
    prelude = ("import sys, runpy; sys.modules['torch'] = None; args = [a for a in sys.argv[1:] if a != '-E']; "
               "sys.argv = args; runpy.run_path(args[0], run_name='__main__')")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{prelude}" "$@"\n')
    python.chmod(0o755)
    with pytest.raises(sam3d.Sam3DError, match=r"cannot import torch .*point the add-on at the Python of your SAM 3D"):
        sam3d.Sam3DBody(settings_for(checkpoint, python=str(python)))
    chatty = tmp_path / "chatty"
    chatty.write_text("#!/bin/sh\necho 'Welcome to my python'\n")
    chatty.chmod(0o755)
    with pytest.raises(sam3d.Sam3DWorkerError, match="answered garbage") as error:
        sam3d.Sam3DBody(settings_for(checkpoint, python=str(chatty)))
    _one_line(error)


def test_wrong_checkpoint_folder_names_the_missing_files(checkpoint, tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"x")
    with pytest.raises(sam3d.Sam3DError, match=r"missing model_config.yaml, assets/mhr_model.pt") as error:
        sam3d.Sam3DBody(settings_for(tmp_path))
    _one_line(error)
    with pytest.raises(sam3d.Sam3DError, match="no SAM 3D Body checkpoint folder chosen"):
        sam3d.Sam3DBody(settings_for(""))
    # the worker checks again (a folder emptied after the add-on looked)
    with pytest.raises(sam3d_worker.WorkerProblem, match="missing model.ckpt"):
        sam3d_worker.check_checkpoint(tmp_path / "elsewhere")


def test_crashing_worker_is_one_line_with_its_last_output(fixtures_dir, tmp_path):
    crashing = sam3d_setup.make_checkpoint(tmp_path / "crash", fixtures_dir, mode="crash")
    boxes = np.stack([p["bbox"] for p in sam3d_setup.fixture_people(fixtures_dir)])
    with sam3d.Sam3DBody(settings_for(crashing), focal_px=sam3d_setup.FOCAL) as model:
        with pytest.raises(sam3d.Sam3DWorkerError, match=r"stopped \(exit status 134; its last output: "
                           r"'stub: simulated crash inside SAM 3D Body'\)") as error:
            model.predict(sam3d_setup.render_test_image(fixtures_dir), boxes)
    _one_line(error)


def test_hanging_worker_times_out_and_is_stopped(fixtures_dir, tmp_path):
    hanging = sam3d_setup.make_checkpoint(tmp_path / "hang", fixtures_dir, mode="hang")
    boxes = np.stack([p["bbox"] for p in sam3d_setup.fixture_people(fixtures_dir)])
    with sam3d.Sam3DBody(settings_for(hanging, frame_timeout=2.0), focal_px=sam3d_setup.FOCAL) as model:
        with pytest.raises(sam3d.Sam3DWorkerError, match="did not answer within 2 s and was stopped") as error:
            model.predict(sam3d_setup.render_test_image(fixtures_dir), boxes)
        _one_line(error)
        assert model._worker._process.poll() is not None  # killed, not left running


# ---------------------------------------------------------------------------------------------------------
# Through the capture pipeline: our detector and tracker, SAM 3D Body's poses, the take.


# The user's lens reaches SAM 3D Body's intrinsics in either form: pixels, or mm on a sensor width (along the
# image's longer side, 1920 px here), as for InstantHMR.
@pytest.mark.parametrize("lens", ["px", "mm"])
def test_capture_with_sam3d_gives_a_take_in_the_contract(checkpoint, fixtures_dir, tmp_path, lens):
    import cv2

    from instanthmr_blender.capture.offline import capture
    from instanthmr_blender.capture.settings import CaptureSettings
    from testkit.contract_models import DetectorBox, build_rfdetr_model

    image = tmp_path / "people.png"
    cv2.imwrite(str(image), cv2.cvtColor(sam3d_setup.render_test_image(fixtures_dir), cv2.COLOR_RGB2BGR))
    boxes = tuple(DetectorBox(*box) for box in sam3d_setup.detector_boxes(fixtures_dir))
    detector = build_rfdetr_model(tmp_path / "rfdetr.onnx", resolution=48, boxes=boxes)
    settings = CaptureSettings(
        source=str(image), detector_model=str(detector), max_persons=4, min_track_length=1, device="cpu",
        threads=1, backend="sam3d", sam3d=settings_for(checkpoint),
        **({"focal_px": sam3d_setup.FOCAL} if lens == "px" else
           {"lens_mm": sam3d_setup.FOCAL * 24.0 / max(sam3d_setup.IMAGE_SIZE), "sensor_width_mm": 24.0}),
    )  # fmt: skip
    lines = []
    take = capture(settings, log=lines.append)
    assert take.num_tracks == 4 and take.num_frames == 1 and take.valid.all()
    assert take.focal_length == pytest.approx(sam3d_setup.FOCAL)
    assert take.principal_point == sam3d_setup.PRINCIPAL and take.image_size == sam3d_setup.IMAGE_SIZE
    assert take.model_info["backend"] == "sam3d" and take.model_info["precision"] == "fp32"
    assert any(line.startswith("SAM 3D Body per crop (4 crops): backbone") for line in lines)
    sam3d_setup.assert_take_holds_the_fixture_people(take, fixtures_dir)


def test_capture_setup_problems_come_before_any_model_loads(fixtures_dir, tmp_path):
    from instanthmr_blender.capture.offline import capture
    from instanthmr_blender.capture.settings import CaptureError, CaptureSettings

    settings = CaptureSettings(source=str(tmp_path / "any.png"), backend="sam3d",
                               sam3d=sam3d.Sam3DSettings(python=sys.executable, checkpoint=str(tmp_path)))
    with pytest.raises(sam3d.Sam3DError, match="is not a SAM 3D Body checkpoint folder"):
        capture(settings)  # no detector file given either: the SAM 3D Body check comes first
    with pytest.raises(CaptureError, match='backend = .* must be "instanthmr" or "sam3d"'):
        capture(CaptureSettings(source="x", backend="smpl"))
