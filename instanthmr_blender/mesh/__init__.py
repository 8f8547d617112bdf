"""The optional body mesh: each person's MHR mesh per frame, from the take's `mhr_params`, through Meta's MHR
TorchScript module (`mhr_model.pt`), streamed into a PC2 point cache in Blender world space.

Where torch runs. torch is optional and never imported on the default path (capture, solve, rig). The
module runs either in-process, when no separate Python is configured and `import torch` works in this
Python, or in a separate Python the user points to (preference "Python for the body mesh", CLI
`--mesh-python PATH`): `mesh_worker.py` runs there as a subprocess (`worker_client.py`) and exchanges
length-prefixed `.npy` arrays over stdin/stdout, one batch of frames per request (no pickle, so no code crosses
the pipe). Blender's own Python usually has no torch, so the separate Python is the usual path.

Units and axes. The module returns vertices in cm, MHR-native axes (Y up, body facing +Z, +X the subject's
left); OpenCV camera axes are `(x, -y, -z) / 100`. The root translation `model_params[0:3]` is set to 0, so
the module gives the body around the MHR rig origin, and `cam_trans` (metres, camera axes) is added here in
float64: that is exactly how InstantHMR's `joints_3d + cam_trans` are placed, independent of the module's
translation units. World space is the rig's: `camera_to_world` of solve/ground.py. Identity is each person's
`shape_params`, median over the take's valid frames (one body shape, no flicker); expression is 0.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..models.files import KNOWN_MODELS, download
from ..workers import mesh_worker
from ..workers.client import WorkerProcess

WORKER_SCRIPT = Path(mesh_worker.__file__).resolve()
MODULE_FILENAME = "mhr_model.pt"
ARCHIVE_MEMBER = "assets/mhr_model.pt"  # inside the MHR release archive assets.zip
MESH_FOLDER = "mhr"  # beside the other model files: <model folder>/mhr/mhr_model.pt
RELEASE_LOD = 1  # the release module is MHR's LOD1: 18439 vertices, 36874 triangles
RELEASE_NUM_VERTICES = 18439
DEFAULT_BATCH_SIZE = 64  # frames per module call: 64 x 18439 x 3 float32 = 14 MB a reply

# PC2 ("POINTCACHE2"): a 32-byte little-endian header, then num_samples x num_points x (x, y, z) float32.
PC2_MAGIC = b"POINTCACHE2\0"
PC2_HEADER = np.dtype([
    ("magic", "S12"), ("version", "<i4"), ("num_points", "<i4"),
    ("start_frame", "<f4"), ("sample_rate", "<f4"), ("num_samples", "<i4"),
])  # fmt: skip

# Camera axes (x right, y down, z forward) from MHR-native axes, with cm -> m.
_MHR_TO_CAMERA = np.array([0.01, -0.01, -0.01])

Progress = Callable[[int, int], None]


class MeshError(RuntimeError):
    """The body mesh could not be built; the message names the input and what to do."""


class TorchUnavailableError(MeshError):
    """No torch in this Python and no separate Python configured."""


class MeshModuleError(MeshError):
    """The file is not a usable MHR module (not TorchScript, wrong call signature or output shapes)."""


class MeshWorkerError(MeshError):
    """The separate Python could not be started, died, or answered garbage."""


_PROBLEM_CLASSES = {"torch": TorchUnavailableError, "module": MeshModuleError, "request": MeshWorkerError}

ENABLE_TORCH_ADVICE = (
    "the body mesh needs PyTorch, which this Python does not have: install it into a Python of your own "
    "(`python -m pip install torch`) and set that Python as \"Python for the body mesh\" in the InstantHMR "
    "add-on preferences (or pass `--mesh-python PATH` to capture.py)"
)


# ---------------------------------------------------------------------------------------------------------
# Inputs from the take.


def robust_identity(shape_params: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """One body shape for a person: the per-coefficient median over valid frames with finite values.

    shape_params: (F, 45) MHR identity coefficients; valid: (F,) bool -> (45,) float32. The median ignores
    the occasional outlier frame and, being one value for the whole take, the mesh cannot flicker.
    """
    shape_params = np.asarray(shape_params, np.float64)
    use = np.asarray(valid, bool) & np.isfinite(shape_params).all(axis=1)
    if not use.any():
        raise MeshError("this person has no frame with finite shape_params: the take holds no body shape")
    return np.median(shape_params[use], axis=0).astype(np.float32)


def model_parameters(mhr_params: np.ndarray) -> np.ndarray:
    """(F, 204) take `mhr_params` -> (F, 204) float32 module input: root translation [0:3] set to 0 (the
    placement comes from `cam_trans`, see the module docstring), everything else as the model gave it."""
    params = np.array(mhr_params, dtype=np.float32, copy=True)
    params[:, 0:3] = 0.0
    return params


def mhr_to_camera(verts_cm: np.ndarray, cam_trans: np.ndarray) -> np.ndarray:
    """(B, V, 3) body-centred module vertices (cm, MHR-native axes) + (B, 3) cam_trans (m, camera axes)
    -> (B, V, 3) float64 camera-space points (metres, OpenCV axes)."""
    return np.asarray(verts_cm, np.float64) * _MHR_TO_CAMERA + np.asarray(cam_trans, np.float64)[:, None, :]


def mhr_to_world(verts_cm: np.ndarray, cam_trans: np.ndarray, camera_matrix_world: np.ndarray) -> np.ndarray:
    """(B, V, 3) module vertices (cm, MHR-native) + (B, 3) cam_trans (m, camera axes) -> (B, V, 3) float32
    Blender world points (metres): the world contract `camera_to_world` of `mhr_to_camera`, folded.

    camera_to_world(p) = (p * (1, -1, -1)) @ R.T + t and p = v * (0.01, -0.01, -0.01) + c give
    world = v @ (0.01 R).T + ((c * (1, -1, -1)) @ R.T + t): one float32 product per vertex (6x faster than
    going through float64 camera points; float32 keeps 1e-6 m at 10 m), the per-frame offset in float64.
    """
    matrix = np.asarray(camera_matrix_world, np.float64)
    rotation = matrix[:3, :3]
    offsets = (np.asarray(cam_trans, np.float64) * np.array([1.0, -1.0, -1.0])) @ rotation.T + matrix[:3, 3]
    verts = np.asarray(verts_cm, np.float32)
    world = (verts.reshape(-1, 3) @ (0.01 * rotation.T).astype(np.float32)).reshape(verts.shape)
    world += offsets[:, None, :].astype(np.float32)
    return world


def check_lod(lod: int | None, num_vertices: int) -> None:
    """The level of detail is the module's own: MHR's release module is LOD1 (18439 vertices) and takes no
    LOD argument. `lod` None accepts whatever the module gives; 1 is checked against the vertex count."""
    if lod is None:
        return
    if int(lod) != RELEASE_LOD:
        raise MeshError(
            f"body mesh level of detail {lod} is not available: MHR's `{MODULE_FILENAME}` gives LOD{RELEASE_LOD} "
            f"only; for another level, export a module at that level with MHR's "
            f"tools/torchscript/make_torchscript_model.py (-l {lod}) and point the add-on at it, leaving LOD unset"
        )
    if num_vertices != RELEASE_NUM_VERTICES:
        raise MeshError(
            f"LOD{RELEASE_LOD} asked for, but the module gives {num_vertices} vertices (LOD1 has "
            f"{RELEASE_NUM_VERTICES}): leave LOD unset to use the module's own level"
        )


# ---------------------------------------------------------------------------------------------------------
# Running the module: in-process or in a separate Python.


class InProcessRunner:
    """The module loaded in this Python (needs torch here). `faces` (Fc, 3) int32, `num_vertices`."""

    def __init__(self, module_path: str | os.PathLike) -> None:
        self.module_path = Path(module_path)
        self._name = f"`{self.module_path.name}`"
        try:
            self._module = mesh_worker.load_module(self.module_path)
            info, self.faces = mesh_worker.describe_module(self._module, self._name)
        except mesh_worker.WorkerProblem as problem:
            raise _PROBLEM_CLASSES[problem.kind](str(problem)) from None
        self.num_vertices = int(info["num_vertices"])

    def evaluate(self, identity: np.ndarray, model_params: np.ndarray) -> np.ndarray:
        """identity (B, 45), model_params (B, 204) -> verts (B, V, 3) float32, cm, MHR-native axes."""
        try:
            return mesh_worker.evaluate(self._module, identity, model_params, self._name)
        except mesh_worker.WorkerProblem as problem:
            raise _PROBLEM_CLASSES[problem.kind](str(problem)) from None

    def close(self) -> None:
        self._module = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SubprocessRunner:
    """The module run by `mesh_worker.py` under another Python (see the module docstring for the protocol).

    Same interface as InProcessRunner. Worker errors arrive as the matching MeshError; a worker that dies
    raises MeshWorkerError with its exit status and its last line of output (worker_client.WorkerProcess).
    """

    def __init__(self, module_path: str | os.PathLike, python: str | os.PathLike) -> None:
        self.module_path = Path(module_path)
        self.python = Path(python)
        if not self.python.is_file() or not os.access(self.python, os.X_OK):
            raise MeshWorkerError(
                f"the Python for the body mesh `{self.python}` is not an executable file: set it to a python "
                "executable that has torch installed (for example `/path/to/venv/bin/python`)"
            )
        if not self.module_path.is_file():
            raise MeshModuleError(
                f"MHR module `{self.module_path}` does not exist: point at `{MODULE_FILENAME}` from the MHR "
                "release archive (assets.zip, folder assets/)"
            )
        self._worker = WorkerProcess(
            self.python, WORKER_SCRIPT, [str(self.module_path)], describe="the body-mesh worker",
            error=MeshWorkerError, problems=_PROBLEM_CLASSES,
        )  # fmt: skip
        try:
            header, arrays = self._worker.receive("ready", None)
        except BaseException:
            self.close()
            raise
        self.faces = np.asarray(arrays[0], np.int32)
        self.num_vertices = int(header["num_vertices"])
        self.torch_version = str(header.get("torch", ""))

    def evaluate(self, identity: np.ndarray, model_params: np.ndarray) -> np.ndarray:
        """identity (B, 45), model_params (B, 204) -> verts (B, V, 3) float32, cm, MHR-native axes."""
        arrays = [np.asarray(identity, np.float32), np.asarray(model_params, np.float32)]
        return self._worker.request({"op": "evaluate"}, arrays, "vertices", None)[1][0]

    def echo(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Send arrays to the worker and back (a check of the channel)."""
        return self._worker.request({"op": "echo"}, list(arrays), "echo", None)[1]

    def close(self) -> None:
        self._worker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def torch_importable() -> bool:
    """Whether `import torch` would find a package here (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def open_runner(module_path: str | os.PathLike, python: str | os.PathLike | None = None):
    """The module ready to evaluate: in `python` (a separate Python, as a worker) when given, else in this
    Python when torch is importable here, else TorchUnavailableError saying how to enable the mesh."""
    if python:
        return SubprocessRunner(module_path, python)
    if not torch_importable():
        raise TorchUnavailableError(ENABLE_TORCH_ADVICE)
    return InProcessRunner(module_path)


# ---------------------------------------------------------------------------------------------------------
# The module file: given, or extracted from the MHR release archive (downloaded when allowed).


def extract_mhr_module(zip_path: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Extract `assets/mhr_model.pt` from the MHR release archive into `dest_dir/mhr_model.pt`; returns it.

    Atomic: written to a temporary file in `dest_dir`, renamed into place once complete.
    """
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    try:
        archive = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise MeshError(f"MHR archive `{zip_path}` does not exist: download it again") from None
    except (zipfile.BadZipFile, OSError) as error:
        raise MeshError(
            f"`{zip_path.name}` is not a readable zip archive ({error}): delete it and download it again"
        ) from None
    with archive:
        names = archive.namelist()
        member = ARCHIVE_MEMBER if ARCHIVE_MEMBER in names else next(
            (n for n in names if n.endswith("/" + MODULE_FILENAME) or n == MODULE_FILENAME), None
        )
        if member is None:
            raise MeshError(
                f"`{zip_path.name}` has no `{ARCHIVE_MEMBER}`: is it the MHR release archive (assets.zip of "
                "github.com/facebookresearch/MHR, v1.0.0 or later)?"
            )
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise MeshError(
                f"cannot create `{dest_dir}` ({error.strerror or error}): choose a writable folder"
            ) from None
        handle, temporary = tempfile.mkstemp(prefix=f".{MODULE_FILENAME}.", suffix=".tmp", dir=dest_dir)
        try:
            with os.fdopen(handle, "wb") as out, archive.open(member) as source:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            destination = dest_dir / MODULE_FILENAME
            os.replace(temporary, destination)
        except BaseException as error:
            Path(temporary).unlink(missing_ok=True)
            if isinstance(error, OSError | zipfile.BadZipFile):
                raise MeshError(
                    f"extracting `{member}` from `{zip_path.name}` failed ({error}): check the disk space, or "
                    "delete the archive and download it again"
                ) from None
            raise
    return destination


def ensure_mhr_module(
    model_dir: str | os.PathLike,
    *,
    allow_network: bool,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Path:
    """`<model_dir>/mhr/mhr_model.pt`, extracted from `<model_dir>/mhr-assets.zip` when missing, the archive
    downloaded first (model_files.download, only when `allow_network`) when that is missing too."""
    model_dir = Path(model_dir)
    module = model_dir / MESH_FOLDER / MODULE_FILENAME
    if module.is_file() and module.stat().st_size > 0:
        return module
    spec = KNOWN_MODELS["mhr-assets"]
    archive = model_dir / spec.filename
    if not (archive.is_file() and archive.stat().st_size > 0):
        archive = download(spec, model_dir, allow_network=allow_network, progress=progress, cancel=cancel)
    return extract_mhr_module(archive, module.parent)


# ---------------------------------------------------------------------------------------------------------
# Point caches (PC2), written by streaming.


class PointCacheWriter:
    """Writes a PC2 file sample by sample: `write(points (num_points, 3))` num_samples times, then `close()`.

    The file appears at `path` only when complete (temporary file + rename); `abort()` removes the
    temporary file. start_frame / sample_rate go into the header (other tools read them; Blender's Mesh
    Cache modifier in frame mode uses its own frame_start).
    """

    def __init__(self, path: str | os.PathLike, num_points: int, num_samples: int, *,
                 start_frame: float = 0.0, sample_rate: float = 1.0) -> None:
        self.path = Path(path)
        self.num_points, self.num_samples = int(num_points), int(num_samples)
        self.written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, self._temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                                       dir=self.path.parent)
        except OSError as error:
            raise MeshError(
                f"cannot write the point cache in `{self.path.parent}` ({error.strerror or error}): "
                "choose a writable cache folder"
            ) from None
        self._stream = os.fdopen(handle, "wb")
        header = np.zeros((), PC2_HEADER)
        header["magic"], header["version"], header["num_points"] = PC2_MAGIC, 1, self.num_points
        header["start_frame"], header["sample_rate"], header["num_samples"] = start_frame, sample_rate, num_samples
        self._stream.write(header.tobytes())

    def write(self, points: np.ndarray) -> None:
        """One sample: (num_points, 3) points, stored as little-endian float32."""
        points = np.asarray(points)
        if points.shape != (self.num_points, 3):
            raise ValueError(f"point cache sample has shape {points.shape}; expected ({self.num_points}, 3)")
        if self.written >= self.num_samples:
            raise ValueError(f"point cache `{self.path.name}` already holds its {self.num_samples} samples")
        self._stream.write(np.ascontiguousarray(points, dtype="<f4").tobytes())
        self.written += 1

    def close(self) -> Path:
        if self.written != self.num_samples:
            self.abort()
            raise ValueError(f"point cache closed after {self.written} of {self.num_samples} samples")
        try:
            self._stream.flush()
            os.fsync(self._stream.fileno())
            self._stream.close()
            os.replace(self._temporary, self.path)
        except OSError as error:
            self.abort()
            raise MeshError(
                f"writing the point cache `{self.path}` failed ({error.strerror or error}): check the disk space"
            ) from None
        return self.path

    def abort(self) -> None:
        try:
            self._stream.close()
        finally:
            Path(self._temporary).unlink(missing_ok=True)


def read_point_cache(path: str | os.PathLike) -> tuple[dict, np.ndarray]:
    """({"num_points", "start_frame", "sample_rate", "num_samples"}, samples (S, N, 3) float32 memory map)."""
    path = Path(path)
    header = np.fromfile(path, PC2_HEADER, count=1)
    if header.shape != (1,) or header["magic"][0] != PC2_MAGIC.rstrip(b"\0"):
        raise MeshError(f"`{path.name}` is not a PC2 point cache")
    info = {
        "num_points": int(header["num_points"][0]), "start_frame": float(header["start_frame"][0]),
        "sample_rate": float(header["sample_rate"][0]), "num_samples": int(header["num_samples"][0]),
    }  # fmt: skip
    samples = np.memmap(path, "<f4", "r", offset=PC2_HEADER.itemsize,
                        shape=(info["num_samples"], info["num_points"], 3))
    return info, samples


# ---------------------------------------------------------------------------------------------------------
# One person's mesh animation.


@dataclass
class PersonCache:
    """A person's body-mesh animation as written: `path` holds one PC2 sample per frame from `first_frame`
    to `last_frame` (source frame + frame_offset, inclusive). `hidden`: (first, last) frame ranges, same
    numbering, where the person was absent longer than the gap limit (the cache holds the last pose there:
    hide the mesh). `faces`: (Fc, 3) int32; `identity`: (45,) float32 the shape used."""

    track_id: int
    path: Path
    first_frame: int
    last_frame: int
    num_points: int
    faces: np.ndarray
    identity: np.ndarray
    hidden: list[tuple[int, int]] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return self.last_frame - self.first_frame + 1


def write_person_cache(
    runner,
    take,
    track: int,
    camera_matrix_world: np.ndarray,
    path: str | os.PathLike,
    *,
    frame_offset: int = 0,
    max_gap_frames: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> PersonCache:
    """Evaluate row `track` of `take` (take.py Take) through `runner` in batches and stream the PC2 to `path`.

    The module runs only on valid frames (finite `mhr_params` and `cam_trans`). Frames between two of them
    (frames the take skips, or short absences up to `max_gap_frames`, default a quarter second) are linear
    blends of the two neighbours; longer absences hold the last pose and are listed in `hidden`.
    camera_matrix_world: (4, 4) (solve.CaptureSolution); frame_offset: added to source frames (Blender
    scenes put source frame 0 at frame 1); progress(frames_done, frames_total).
    """
    valid = np.asarray(take.valid[track], bool)
    params = np.asarray(take.mhr_params[track], np.float32)
    cam_trans = np.asarray(take.cam_trans[track], np.float64)
    usable = valid & np.isfinite(params).all(axis=1) & np.isfinite(cam_trans).all(axis=1)
    track_id = int(take.track_ids[track])
    if not usable.any():
        raise MeshError(f"track {track_id} has no frame with MHR parameters: no body mesh can be built for it")
    identity = robust_identity(take.shape_params[track], valid)
    columns = np.flatnonzero(usable)
    frames = np.asarray(take.frames, np.int64)[columns] + int(frame_offset)
    gap_limit = max(1, round(0.25 * float(take.fps))) if max_gap_frames is None else int(max_gap_frames)
    module_params = model_parameters(params[columns])
    camera_matrix_world = np.asarray(camera_matrix_world, np.float64)

    writer = PointCacheWriter(path, runner.num_vertices, int(frames[-1] - frames[0] + 1),
                              start_frame=float(frames[0]), sample_rate=1.0)
    hidden: list[tuple[int, int]] = []
    previous, previous_frame = None, None
    try:
        for start in range(0, len(columns), max(1, int(batch_size))):
            rows = slice(start, min(start + int(batch_size), len(columns)))
            count = rows.stop - rows.start
            verts = runner.evaluate(np.broadcast_to(identity, (count, identity.shape[0])), module_params[rows])
            world = mhr_to_world(verts, cam_trans[columns[rows]], camera_matrix_world)
            for current, frame in zip(world, frames[rows]):
                if previous is not None and frame - previous_frame > 1:
                    missing = int(frame - previous_frame - 1)
                    if missing <= gap_limit:
                        for step in range(1, missing + 1):
                            weight = step / (missing + 1)
                            writer.write(previous + weight * (current - previous))
                    else:
                        for _ in range(missing):
                            writer.write(previous)
                        hidden.append((int(previous_frame + 1), int(frame - 1)))
                writer.write(current)
                previous, previous_frame = current, frame
            if progress is not None:
                progress(rows.stop, len(columns))
        cache_path = writer.close()
    except BaseException:
        writer.abort()
        raise
    return PersonCache(
        track_id=track_id, path=cache_path, first_frame=int(frames[0]), last_frame=int(frames[-1]),
        num_points=runner.num_vertices, faces=np.asarray(runner.faces, np.int32), identity=identity, hidden=hidden,
    )  # fmt: skip

