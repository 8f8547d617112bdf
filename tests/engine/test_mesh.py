"""The body mesh (instanthmr_blender.mesh, mesh_worker): identity, units and axes, the MHR stub on real SAM 3D
Body outputs, point caches, the worker protocol and process, clear errors, and torch kept off the default path."""

import io
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from instanthmr_blender import mesh
from instanthmr_blender.mesh import runner as mesh_runner
from instanthmr_blender.models.files import ModelDownloadError
from instanthmr_blender.solve import ground
from instanthmr_blender.take import Take
from instanthmr_blender.workers import mesh_worker
from testkit import mhr_stub

REPO_ROOT = Path(__file__).resolve().parents[2]
# A camera 3 m up, looking level along world +Y, a little turned: any rigid placement will do.
_turn = np.radians(20.0)
CAMERA = np.array([
    [np.cos(_turn), 0.0, np.sin(_turn), 0.5],
    [np.sin(_turn), 0.0, -np.cos(_turn), -4.0],
    [0.0, 1.0, 0.0, 3.0],
    [0.0, 0.0, 0.0, 1.0],
])  # fmt: skip


def sam3d_take(fixtures_dir: Path) -> Take:
    """The four SAM 3D Body people in one frame, as a take (tracks in file order)."""
    files = sorted((fixtures_dir / "sam3d").glob("img_subj*.npz"))
    take = Take.empty(len(files), [0], fps=30.0, image_size=(890, 1920), focal_length=2535.27,
                      principal_point=(960.0, 445.0))
    for track, path in enumerate(files):
        data = np.load(path)
        take.joints_cam[track, 0] = data["pred_keypoints_3d"] + data["pred_cam_t"]
        take.cam_trans[track, 0] = data["pred_cam_t"]
        take.mhr_params[track, 0] = data["mhr_model_params"]
        take.shape_params[track, 0] = data["shape_params"]
        take.valid[track, 0] = True
    return take


@pytest.fixture(scope="module")
def sam3d(fixtures_dir):
    return mhr_stub.sam3d_templates(fixtures_dir)


@pytest.fixture(scope="module")
def stub_path(sam3d, tmp_path_factory):
    pytest.importorskip("torch")
    templates, identities = sam3d
    return mhr_stub.build_stub(tmp_path_factory.mktemp("stub") / "mhr_model.pt", templates, identities, pose_gain=1.0)


@pytest.fixture(scope="module")
def runner(stub_path):
    with mesh.InProcessRunner(stub_path) as in_process:
        yield in_process


@pytest.fixture(scope="module")
def worker(stub_path):
    with mesh.SubprocessRunner(stub_path, sys.executable) as subprocess_runner:
        yield subprocess_runner


# ---------------------------------------------------------------------------------------------------------
# Inputs: identity, parameters, units and axes.


def test_identity_is_the_median_of_valid_frames_and_ignores_outliers():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=45).astype(np.float32)
    shape = truth + rng.normal(scale=0.05, size=(200, 45)).astype(np.float32)
    valid = np.ones(200, bool)
    shape[10] += 50.0  # one wild frame
    shape[20:30] = np.nan  # frames without values
    valid[40:60] = False
    shape[40:60] = -1000.0  # garbage where the person was not seen
    identity = mesh.robust_identity(shape, valid)
    assert identity.shape == (45,) and identity.dtype == np.float32
    assert np.abs(identity - truth).max() < 0.03
    with pytest.raises(mesh.MeshError, match="no frame with finite shape_params"):
        mesh.robust_identity(shape, np.zeros(200, bool))


def test_model_parameters_zero_only_the_root_translation():
    params = np.arange(3 * 204, dtype=np.float32).reshape(3, 204) + 1
    out = mesh.model_parameters(params)
    assert out.dtype == np.float32 and np.all(out[:, 0:3] == 0)
    np.testing.assert_array_equal(out[:, 3:], params[:, 3:])
    assert np.all(params[:, 0:3] != 0), "the take's own array must not be modified"


def test_units_and_axes_mhr_native_cm_to_camera_metres_to_world():
    verts_cm = np.array([[[100.0, 0, 0], [0, 100.0, 0], [0, 0, 100.0], [0, 0, 0]]])
    cam_trans = np.array([[0.5, -0.25, 4.0]])
    camera = mesh.mhr_to_camera(verts_cm, cam_trans)
    # MHR +X (subject's left) = camera +x; MHR +Y (up) = camera -y (y is down); MHR +Z (facing) = camera -z.
    expected = np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1], [0, 0, 0]]) + cam_trans[0]
    np.testing.assert_allclose(camera[0], expected, atol=1e-12)
    world = mesh.mhr_to_world(verts_cm, cam_trans, CAMERA)
    assert world.dtype == np.float32
    np.testing.assert_allclose(world, ground.camera_to_world(expected, CAMERA)[None], atol=1e-6)


def test_body_centred_plus_cam_trans_equals_the_documented_camera_frame_recipe(runner, sam3d):
    """Contract section 3: 10 * (tx, -ty, -tz) in params[0:3] and (x, -y, -z) / 100 give camera-frame verts;
    the engine's route (params[0:3] = 0, then + cam_trans) must give the same points."""
    _, identities = sam3d
    cam_trans = np.array([[-2.5, 1.2, 8.3], [0.4, -0.1, 3.0]])
    params = np.zeros((2, 204), np.float32)
    documented = params.copy()
    documented[:, 0:3] = 10 * cam_trans * np.array([1, -1, -1])
    recipe = runner.evaluate(identities[:2], documented) * np.array([1, -1, -1]) / 100
    engine = mesh.mhr_to_camera(runner.evaluate(identities[:2], params), cam_trans)
    np.testing.assert_allclose(engine, recipe, atol=1e-5)


def test_lod_is_the_modules_own():
    mesh.check_lod(None, 70)
    mesh.check_lod(1, mesh.RELEASE_NUM_VERTICES)
    with pytest.raises(mesh.MeshError, match="gives LOD1 only"):
        mesh.check_lod(3, mesh.RELEASE_NUM_VERTICES)
    with pytest.raises(mesh.MeshError, match="gives 70 vertices"):
        mesh.check_lod(1, 70)


# ---------------------------------------------------------------------------------------------------------
# The data path on real SAM 3D Body outputs, and over frames.


def test_sam3d_mesh_lands_on_each_persons_keypoints_in_world(runner, fixtures_dir, tmp_path):
    """Stub vertices are each person's body-centred keypoints: through the engine they must land exactly on
    the take's camera-space keypoints (joints_3d + cam_trans) mapped to world, person by person."""
    take = sam3d_take(fixtures_dir)
    take.mhr_params[:, :, 0:3] = 7.0  # a root translation the engine must ignore (the teacher leaves 0)
    # This stub moves the whole body by params[6:9] cm (to show the per-frame path); the real module poses
    # the body from them, and the SAM 3D keypoints already carry that pose.
    take.mhr_params[:, :, 6:9] = 0.0
    for track in range(take.num_tracks):
        cache = mesh.write_person_cache(runner, take, track, CAMERA, tmp_path / f"p{track}.pc2", frame_offset=1)
        info, samples = mesh.read_point_cache(cache.path)
        assert (cache.first_frame, cache.last_frame, info["num_samples"]) == (1, 1, 1)
        expected = ground.camera_to_world(take.joints_cam[track, 0], CAMERA)
        np.testing.assert_allclose(samples[0], expected, atol=2e-5)
        np.testing.assert_array_equal(cache.faces, mhr_stub.strip_faces(70))


def _moving_take(identity: np.ndarray, frames: list[int]) -> Take:
    take = Take.empty(1, frames, fps=30.0, image_size=(480, 640), focal_length=800.0, principal_point=(320, 240))
    count = len(frames)
    take.valid[0] = True
    take.cam_trans[0] = np.stack([np.linspace(-1, 1, count), np.zeros(count), np.full(count, 5.0)], axis=1)
    take.mhr_params[0] = 0.0
    take.mhr_params[0, :, 6] = np.asarray(frames, np.float32)  # stub: the body moves 1 cm along MHR +X per frame
    take.shape_params[0] = identity
    return take


def test_frames_batches_gaps_and_absences_follow_the_take(runner, sam3d, tmp_path):
    templates, identities = sam3d
    frames = [*range(10), 12, 13, 30, 31]  # a 2-frame gap (blended) and a 16-frame absence (held, hidden)
    take = _moving_take(identities[1], frames)
    calls = []
    cache = mesh.write_person_cache(runner, take, 0, CAMERA, tmp_path / "walk.pc2", frame_offset=1,
                                    batch_size=3, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (len(frames), len(frames)) and len(calls) == 5  # batches of 3
    assert (cache.first_frame, cache.last_frame, cache.num_samples) == (1, 32, 32)
    assert cache.hidden == [(15, 30)]  # source frames 14..29, scene numbering (+1)
    info, samples = mesh.read_point_cache(cache.path)
    assert info["num_samples"] == 32 and info["num_points"] == 70 and info["start_frame"] == 1.0

    def expected(column):
        verts = templates[1][None] + np.array([frames[column], 0, 0], np.float32)
        return mesh.mhr_to_world(verts, take.cam_trans[0, column][None], CAMERA)[0]

    for column, frame in enumerate(frames):
        np.testing.assert_allclose(samples[frame], expected(column), atol=1e-5)
    for sample, weight in ((10, 1 / 3), (11, 2 / 3)):  # between source frames 9 and 12
        np.testing.assert_allclose(samples[sample], (1 - weight) * expected(9) + weight * expected(10), atol=1e-5)
    for sample in range(14, 30):  # the absence holds the last pose
        np.testing.assert_array_equal(samples[sample], samples[13])


def test_identity_jitter_does_not_flicker_the_mesh(runner, sam3d, tmp_path):
    """Per-frame shape_params that wander towards another person's shape: the median keeps one body."""
    templates, identities = sam3d
    rng = np.random.default_rng(11)
    frames = list(range(41))
    take = _moving_take(identities[2], frames)
    take.mhr_params[0, :, 6] = 0.0
    toward_other = rng.uniform(0.0, 0.7, size=(41, 1))
    toward_other[::4] = 0.75  # every 4th frame is nearer person 0's shape than person 2's on its own
    take.shape_params[0] = identities[2] + toward_other * (identities[0] - identities[2])
    per_frame_choice = np.argmin(((take.shape_params[0][:, None] - identities[None]) ** 2).sum(-1), axis=1)
    assert len(set(per_frame_choice)) > 1, "the jitter must be large enough to flicker frame by frame"
    cache = mesh.write_person_cache(runner, take, 0, CAMERA, tmp_path / "jitter.pc2")
    _, samples = mesh.read_point_cache(cache.path)
    body = samples - samples.mean(axis=1, keepdims=True)  # the shape, without the travelling cam_trans
    assert np.abs(body - body[0]).max() < 1e-5
    centred = templates[2] - templates[2].mean(axis=0)
    # Body-centred MHR axes are the camera's Blender-local axes (x right, y up, z back): world = R @ v / 100.
    np.testing.assert_allclose(body[0], (centred / 100.0) @ CAMERA[:3, :3].T, atol=1e-5)


def test_a_person_with_no_usable_frame_is_refused(runner, sam3d, tmp_path):
    take = _moving_take(sam3d[1][0], [0, 1, 2])
    take.valid[0] = False
    with pytest.raises(mesh.MeshError, match="track 0 has no frame with MHR parameters"):
        mesh.write_person_cache(runner, take, 0, CAMERA, tmp_path / "none.pc2")
    assert not list(tmp_path.iterdir()), "nothing may be left behind"


# ---------------------------------------------------------------------------------------------------------
# Point caches.


def test_pc2_file_layout_is_what_blenders_reader_expects(tmp_path):
    path = tmp_path / "cache.pc2"
    writer = mesh.PointCacheWriter(path, 4, 2, start_frame=5.0, sample_rate=1.0)
    samples = np.arange(24, dtype=np.float64).reshape(2, 4, 3) / 7
    writer.write(samples[0])
    assert not path.exists(), "the cache appears only when complete"
    writer.write(samples[1])
    with pytest.raises(ValueError, match="already holds"):
        writer.write(samples[1])
    writer.close()
    raw = path.read_bytes()
    assert len(raw) == 32 + 2 * 4 * 3 * 4
    assert struct.unpack("<12siiffi", raw[:32]) == (b"POINTCACHE2\0", 1, 4, 5.0, 1.0, 2)
    np.testing.assert_array_equal(np.frombuffer(raw[32:], "<f4").reshape(2, 4, 3), samples.astype(np.float32))
    info, mapped = mesh.read_point_cache(path)
    assert info == {"num_points": 4, "start_frame": 5.0, "sample_rate": 1.0, "num_samples": 2}
    np.testing.assert_array_equal(mapped, samples.astype(np.float32))
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        mesh.PointCacheWriter(tmp_path / "b.pc2", 4, 1).write(np.zeros((3, 3)))


def test_an_incomplete_cache_leaves_nothing_behind(tmp_path):
    writer = mesh.PointCacheWriter(tmp_path / "short.pc2", 2, 3)
    writer.write(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="1 of 3 samples"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------
# The worker protocol and process.


ARRAYS = [
    np.array([[1.5, np.nan], [np.inf, -0.0]], np.float32),
    np.random.default_rng(0).normal(size=(3, 5, 3)),
    np.arange(12, dtype=np.int32).reshape(4, 3),
    np.array([True, False]),
    np.zeros((0, 3), np.float32),
    np.arange(6, dtype=">i8"),  # big-endian: the .npy header carries the byte order
]


def _assert_same(got, sent):
    assert len(got) == len(sent)
    for a, b in zip(got, sent):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_protocol_round_trips_arrays_exactly_and_rejects_garbage():
    stream = io.BytesIO()
    mesh_worker.write_message(stream, {"op": "echo", "note": "é"}, ARRAYS)
    mesh_worker.write_message(stream, {"op": "close"})
    stream.seek(0)
    header, arrays = mesh_worker.read_message(stream)
    assert header == {"op": "echo", "note": "é", "arrays": len(ARRAYS)}
    _assert_same(arrays, ARRAYS)
    assert mesh_worker.read_message(stream) == ({"op": "close", "arrays": 0}, [])
    with pytest.raises(EOFError):
        mesh_worker.read_message(stream)
    with pytest.raises(ValueError, match="not a worker message"):
        mesh_worker.read_message(io.BytesIO(b"Traceback (most recent call last):\n"))
    truncated = io.BytesIO()
    mesh_worker.write_message(truncated, {"op": "echo"}, ARRAYS[:2])
    with pytest.raises(EOFError):
        mesh_worker.read_message(io.BytesIO(truncated.getvalue()[:-10]))


def test_subprocess_worker_round_trips_and_matches_in_process(worker, runner, sam3d):
    _assert_same(worker.echo(ARRAYS), ARRAYS)
    assert worker.num_vertices == runner.num_vertices == 70
    np.testing.assert_array_equal(worker.faces, runner.faces)
    params = np.random.default_rng(5).normal(size=(7, 204)).astype(np.float32)
    identity = np.repeat(sam3d[1][3:4], 7, axis=0)
    np.testing.assert_array_equal(worker.evaluate(identity, params), runner.evaluate(identity, params))
    with pytest.raises(mesh.MeshWorkerError, match=r"model_params must be \(7, 204\)"):
        worker.evaluate(identity, params[:, :100])
    np.testing.assert_array_equal(worker.evaluate(identity[:1], params[:1]), runner.evaluate(identity[:1], params[:1]))


@pytest.mark.parametrize(
    "kind, message",
    [
        ("verts-shape", r"returned verts of shape \(1, 10, 2\); expected \(1, V, 3\)"),
        ("skeleton-shape", r"returned skel_state of shape \(1, 24, 8\); expected \(1, 127, 8\)"),
        ("two-inputs", r"rejected the MHR call \(identity\[1,45\], model_params\[1,204\], expr\[1,72\]\)"),
        ("no-faces", r"has no `character_torch.mesh.faces` buffer"),
        ("single-output", r"returned Tensor; expected \(verts\[B,V,3\], skel_state\[B,127,8\]\)"),
    ],
)
def test_a_wrong_module_names_the_mismatch(kind, message, tmp_path):
    pytest.importorskip("torch")
    path = mhr_stub.build_wrong_module(tmp_path / f"{kind}.pt", kind)
    with pytest.raises(mesh.MeshModuleError, match=message):
        mesh.open_runner(path)


def test_worker_reports_a_wrong_module_and_a_non_torchscript_file(tmp_path):
    pytest.importorskip("torch")
    path = mhr_stub.build_wrong_module(tmp_path / "mhr_model.pt", "verts-shape")
    with pytest.raises(mesh.MeshModuleError, match=r"`mhr_model.pt` returned verts of shape \(1, 10, 2\)"):
        mesh.open_runner(path, python=sys.executable)
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    with pytest.raises(mesh.MeshModuleError, match="`notes.pt` is not a TorchScript module"):
        mesh.open_runner(text)


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script as the Python")
def test_worker_python_without_torch_says_how_to_enable_it(tmp_path):
    module = tmp_path / "mhr_model.pt"
    module.write_bytes(b"unused: torch fails first")
    # A Python in which `import torch` fails, as in a plain system Python.
    prelude = ("import sys, runpy; sys.modules['torch'] = None; args = [a for a in sys.argv[1:] if a != '-E']; "
               "sys.argv = args; runpy.run_path(args[0], run_name='__main__')")
    python = _script(tmp_path / "python", f'exec "{sys.executable}" -c "{prelude}" "$@"\n')
    with pytest.raises(mesh.TorchUnavailableError, match=r"cannot import torch .*-m pip install torch"):
        mesh.open_runner(module, python=python)


@pytest.mark.skipif(os.name != "posix", reason="uses a shell script as the Python")
def test_worker_that_dies_is_reported_with_its_output(tmp_path):
    module = tmp_path / "mhr_model.pt"
    module.write_bytes(b"x")
    python = _script(tmp_path / "python", "echo 'Fatal Python error: boom' >&2\nexit 3\n")
    died = r"stopped \(exit status 3; its last output: 'Fatal Python error: boom'\)"
    with pytest.raises(mesh.MeshWorkerError, match=died):
        mesh.open_runner(module, python=python)
    chatty = _script(tmp_path / "chatty", "echo 'Welcome to my python'\n")
    with pytest.raises(mesh.MeshWorkerError, match="answered garbage"):
        mesh.open_runner(module, python=chatty)
    with pytest.raises(mesh.MeshWorkerError, match="is not an executable file"):
        mesh.open_runner(module, python=tmp_path / "no-such-python")
    with pytest.raises(mesh.MeshModuleError, match="does not exist"):
        mesh.open_runner(tmp_path / "missing.pt", python=sys.executable)


def test_without_torch_here_and_no_separate_python_the_message_says_how(monkeypatch, tmp_path):
    monkeypatch.setattr(mesh_runner, "torch_importable", lambda: False)  # where open_runner looks it up
    with pytest.raises(mesh.TorchUnavailableError) as caught:
        mesh.open_runner(tmp_path / "mhr_model.pt")
    message = str(caught.value)
    assert "pip install torch" in message and "Python for the body mesh" in message and "--mesh-python" in message


def test_default_path_never_imports_torch(stub_path, fixtures_dir):
    """Capture-side engine work (import, solve) and a mesh through a separate Python leave torch unimported
    here, even though this Python has torch."""
    code = f"""
import sys
sys.path[:0] = [{str(REPO_ROOT)!r}]
import numpy as np
import instanthmr_blender, instanthmr_blender.mesh as mesh, instanthmr_blender.solve as solve
from tests.engine.test_mesh import sam3d_take
from pathlib import Path
take = sam3d_take(Path({str(fixtures_dir)!r}))
solution = solve.solve_take(take)
assert "torch" not in sys.modules, "solve imported torch"
with mesh.open_runner({str(stub_path)!r}, python=sys.executable) as runner:
    cache = mesh.write_person_cache(runner, take, 0, solution.camera_matrix_world, {str(stub_path)!r} + ".pc2")
assert "torch" not in sys.modules, "the worker path imported torch"
print("ok", cache.num_samples)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["ok", "1"]


# ---------------------------------------------------------------------------------------------------------
# The module file from the MHR release archive.


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_extract_mhr_module_from_the_release_archive(tmp_path):
    payload = os.urandom(300_000)
    archive = _archive(tmp_path / "assets.zip", {"assets/lod1.fbx": b"fbx", "assets/mhr_model.pt": payload})
    out = mesh.extract_mhr_module(archive, tmp_path / "models" / "mhr")
    assert out == tmp_path / "models" / "mhr" / "mhr_model.pt" and out.read_bytes() == payload
    assert [p.name for p in out.parent.iterdir()] == ["mhr_model.pt"], "no temporary file left"
    wrong = _archive(tmp_path / "other.zip", {"assets/readme.txt": b"hi"})
    with pytest.raises(mesh.MeshError, match="has no `assets/mhr_model.pt`: is it the MHR release archive"):
        mesh.extract_mhr_module(wrong, tmp_path / "x")
    not_zip = tmp_path / "broken.zip"
    not_zip.write_bytes(b"<html>404</html>")
    with pytest.raises(mesh.MeshError, match="`broken.zip` is not a readable zip archive"):
        mesh.extract_mhr_module(not_zip, tmp_path / "x")


def test_ensure_mhr_module_extracts_a_present_archive_and_never_downloads_when_offline(tmp_path):
    with pytest.raises(ModelDownloadError, match="needs online access"):
        mesh.ensure_mhr_module(tmp_path, allow_network=False)
    _archive(tmp_path / "mhr-assets.zip", {"assets/mhr_model.pt": b"module bytes"})
    module = mesh.ensure_mhr_module(tmp_path, allow_network=False)
    assert module == tmp_path / "mhr" / "mhr_model.pt" and module.read_bytes() == b"module bytes"
    (tmp_path / "mhr-assets.zip").unlink()
    assert mesh.ensure_mhr_module(tmp_path, allow_network=False) == module  # already extracted
