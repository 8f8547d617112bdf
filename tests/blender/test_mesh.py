"""The body mesh in real Blender: the installed add-on runs a TorchScript MHR stub in a separate Python (the dev
venv, as a user's torch Python would be), writes PC2 caches, and the Mesh Cache modifier puts each person's
mesh on its capture rig, frame by frame. Blender's own Python here has no torch, like a user's."""

import subprocess
import sys
from importlib import import_module
from pathlib import Path

import bpy
import numpy as np
import pytest
from capture_helpers import (
    EXACT,
    AddonApi,
    bone_keypoints,
    camera_to_world,
    evaluated_joints,
    fresh_scene,
    sam3d_take,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MESH_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


@pytest.fixture(scope="module")
def api(installed_addon):
    api = AddonApi(installed_addon)
    api.mesh = import_module(installed_addon.__name__ + ".scene.mesh")
    api.engine_mesh = import_module(installed_addon.__name__ + ".instanthmr_blender.mesh")
    api.operators = import_module(installed_addon.__name__ + ".operators.mesh")
    return api


@pytest.fixture(scope="module")
def mesh_python() -> Path:
    probe = subprocess.run([str(MESH_PYTHON), "-c", "import torch"], capture_output=True)
    if probe.returncode != 0:
        pytest.fail(f"{MESH_PYTHON} has no torch (tools/setup_venv.sh installs it): no Python for the body mesh")
    return MESH_PYTHON


def _stub(mesh_python, path: Path, *extra: str) -> Path:
    result = subprocess.run(
        [str(mesh_python), str(REPO_ROOT / "testkit" / "mhr_stub.py"), str(path), *extra],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return path


@pytest.fixture(scope="module")
def sam3d_stub(mesh_python, fixtures_dir, tmp_path_factory) -> Path:
    """Each person's body-centred SAM 3D keypoints as its 'mesh' (70 vertices), picked by its shape_params."""
    path = tmp_path_factory.mktemp("stub") / "mhr_model.pt"
    return _stub(mesh_python, path, "--sam3d", str(fixtures_dir))


@pytest.fixture(scope="module")
def moving_stub(mesh_python, fixtures_dir, tmp_path_factory) -> Path:
    """As sam3d_stub, and the body moves 1 cm along MHR +X per unit of model_params[6]."""
    path = tmp_path_factory.mktemp("stub") / "moving.pt"
    return _stub(mesh_python, path, "--sam3d", str(fixtures_dir), "--pose-gain", "1")


def evaluated_vertices(obj, scene, scene_frame: int) -> np.ndarray:
    """(V, 3) world positions of obj's vertices after its modifiers, as Blender evaluates them at a frame."""
    scene.frame_set(scene_frame)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    data = evaluated.to_mesh()
    try:
        coordinates = np.empty(len(data.vertices) * 3, np.float32)
        data.vertices.foreach_get("co", coordinates)
    finally:
        evaluated.to_mesh_clear()
    world = np.array(obj.matrix_world)
    return coordinates.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]


def test_sam3d_body_meshes_sit_on_the_capture_rigs(api, fixtures_dir, sam3d_stub, mesh_python, tmp_path):
    scene = fresh_scene()
    take = sam3d_take(api, fixtures_dir)
    solution = api.solve.solve_take(take, api.solve.SolveOptions(**EXACT))
    built = api.build.build_capture(bpy.context, take, solution, "sam3d")
    bodies = api.mesh.build_body_meshes(bpy.context, take, solution, built, module_path=sam3d_stub,
                                        python=mesh_python, cache_dir=str(tmp_path))
    assert [body.name for body in bodies] == [f"sam3d.person{track:02d}.body" for track in range(4)]
    assert "torch" not in sys.modules, "the body mesh must not import torch into Blender"
    for track, (body, rig) in enumerate(zip(bodies, built.rigs)):
        assert body.name in built.collection.objects and body.type == "MESH"
        assert body[api.naming.PROP_TRACK_ID] == track and body[api.naming.PROP_ROLE] == "body_mesh"
        modifier = body.modifiers[0]
        assert (modifier.type, modifier.cache_format, modifier.frame_start) == ("MESH_CACHE", "PC2", 1.0)
        assert Path(modifier.filepath).parent == tmp_path and len(body.data.polygons) == 68
        vertices = evaluated_vertices(body, scene, 1)
        # On the keypoints, through the camera (the world contract) ...
        target = camera_to_world(built.camera, take.joints_cam[track, 0].astype(float))
        assert np.abs(vertices - target).max() < 1e-4
        # ... and on the capture rig's joints, as Blender evaluates the armature.
        heads, _ = evaluated_joints(rig, scene, 1)
        kp_heads, _ = bone_keypoints(rig, api)
        errors = np.linalg.norm(heads[kp_heads >= 0] - vertices[kp_heads[kp_heads >= 0]], axis=1)
        assert len(errors) > 20 and np.median(errors) < 0.002 and errors.max() < 0.01, errors.max()


def _walking_take(api, fixtures_dir, frames):
    """Person 1 of the SAM 3D samples walking 1 m sideways over the given source frames."""
    data = np.load(sorted((fixtures_dir / "sam3d").glob("img_subj*.npz"))[1])
    take = api.take.Take.empty(1, np.array(frames), fps=30.0, image_size=(890, 1920), focal_length=2535.27,
                               principal_point=(960.0, 445.0))
    count = len(frames)
    cam_trans = data["pred_cam_t"] + np.stack([np.linspace(0, 1, count), np.zeros(count), np.zeros(count)], 1)
    take.cam_trans[0] = cam_trans
    take.joints_cam[0] = data["pred_keypoints_3d"][None] + cam_trans[:, None]
    take.mhr_params[0] = data["mhr_model_params"]
    take.mhr_params[0, :, 6:9] = 0.0
    take.mhr_params[0, :, 6] = np.arange(count)  # the moving stub shifts the body 1 cm per unit
    take.shape_params[0] = data["shape_params"]
    take.valid[0] = True
    return take


def test_mesh_animation_follows_the_take_and_hides_long_absences(api, fixtures_dir, moving_stub, mesh_python,
                                                                 tmp_path):
    scene = fresh_scene()
    frames = [*range(20), *range(40, 50)]  # absent for 20 frames (longer than the 0.25 s gap limit)
    take = _walking_take(api, fixtures_dir, frames)
    solution = api.solve.solve_take(take, api.solve.SolveOptions(**EXACT))
    built = api.build.build_capture(bpy.context, take, solution, "walk")
    body = api.mesh.build_body_meshes(bpy.context, take, solution, built, module_path=moving_stub,
                                      python=mesh_python, cache_dir=str(tmp_path), batch_size=8)[0]
    templates = np.load(sorted((fixtures_dir / "sam3d").glob("img_subj*.npz"))[1])["pred_keypoints_3d"]
    for column in (0, 7, 19, 20, 29):
        frame = frames[column]
        shifted = templates + np.array([column / 100.0, 0, 0])  # +1 cm along MHR +X = camera +x
        expected = camera_to_world(built.camera, shifted + take.cam_trans[0, column])
        got = evaluated_vertices(body, scene, frame + 1)
        assert np.abs(got - expected).max() < 1e-4, f"source frame {frame}"
        assert not body.hide_viewport and not body.hide_render
    scene.frame_set(30 + 1)
    assert body.hide_viewport and body.hide_render, "hidden while the person is absent"
    scene.frame_set(40 + 1)
    assert not body.hide_viewport
    # Building again replaces the mesh rather than adding a second one.
    again = api.mesh.build_body_meshes(bpy.context, take, solution, built, module_path=moving_stub,
                                       python=mesh_python, cache_dir=str(tmp_path))[0]
    assert again.name == "walk.person00.body"
    assert [o.name for o in built.collection.objects if o.type == "MESH"] == ["walk.person00.body"]


@pytest.fixture
def build_mesh_operator(api):
    """The operator registered for the test (the add-on registers it once the lead wires operators/mesh.py)."""
    cls = api.operators.INSTANTHMR_OT_build_mesh
    registered_here = not hasattr(bpy.types, cls.__name__)
    if registered_here:
        bpy.utils.register_class(cls)
    yield bpy.ops.instanthmr.build_mesh
    if registered_here:
        bpy.utils.unregister_class(cls)


def test_operator_builds_meshes_for_the_active_capture_and_reports_errors(
    api, fixtures_dir, sam3d_stub, mesh_python, build_mesh_operator, tmp_path
):
    scene = fresh_scene()
    take = sam3d_take(api, fixtures_dir)
    take_file = api.take.save_take(take, tmp_path / "sam3d.npz")
    solution = api.solve.solve_take(take, api.solve.SolveOptions(**EXACT))
    built = api.build.build_capture(bpy.context, take, solution, "sam3d")
    built.collection[api.mesh.PROP_TAKE_FILE] = str(take_file)
    bpy.context.view_layer.objects.active = built.rigs[2]
    assert build_mesh_operator.poll()
    # Blender's own Python has no torch, and no separate Python is set: the message says what to do.
    with pytest.raises(RuntimeError, match="needs PyTorch.*Python for the body mesh"):
        build_mesh_operator(module_path=str(sam3d_stub))
    wrong = tmp_path / "wrong.pt"
    _stub(mesh_python, wrong, "--wrong", "skeleton-shape")
    with pytest.raises(RuntimeError, match=r"returned skel_state of shape \(1, 24, 8\)"):
        build_mesh_operator(module_path=str(wrong), python=str(mesh_python))
    assert build_mesh_operator(module_path=str(sam3d_stub), python=str(mesh_python)) == {"FINISHED"}
    bodies = [o for o in built.collection.objects if o.get(api.naming.PROP_ROLE) == "body_mesh"]
    assert len(bodies) == 4
    body = bpy.data.objects["sam3d.person02.body"]
    target = camera_to_world(built.camera, take.joints_cam[2, 0].astype(float))
    assert np.abs(evaluated_vertices(body, scene, 1) - target).max() < 1e-4


def test_headless_mesh_flags(api, sam3d_stub, mesh_python, fixtures_dir, tmp_path):
    import os

    take_path = api.take.save_take(sam3d_take(api, fixtures_dir), tmp_path / "sam3d.npz")
    script = Path(os.environ["BLENDER_USER_RESOURCES"]) / "extensions" / "user_default" / "instanthmr" / "capture.py"

    def run(*args):
        return subprocess.run([sys.executable, str(script), "--take", str(take_path), "--smoothing", "off",
                               "--foot-lock", "off", "--out", str(tmp_path / "mesh.blend"), *args],
                              capture_output=True, text=True, timeout=600)

    result = run("--mesh", "--mhr-model", str(sam3d_stub), "--mesh-python", str(mesh_python))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "and 4 body meshes" in result.stdout
    caches = sorted((tmp_path / "mesh_instanthmr_cache").glob("*.pc2"))
    assert len(caches) == 4  # beside the written .blend, as for a saved file
    # Without a Python that has torch, the flag fails up front with one clear line.
    no_torch = run("--mesh", "--mhr-model", str(sam3d_stub))
    assert no_torch.returncode == 2
    assert no_torch.stderr.strip().splitlines()[-1].startswith("capture: error: ")
    assert "torch" in no_torch.stderr.lower()
