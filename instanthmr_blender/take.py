"""The take: every tracked person's per-frame model output for one capture, and its `.npz` file format.

The take is the contract between the engine and Blender: saved, it lets a user re-solve the rig with other
settings without running the models again.

File format (`.npz`, written by `save_take`, read by `load_take`; NumPy's zip of `.npy` arrays, loadable
with `np.load(path)` and no pickle). T = tracks (people), F = frame columns, NaN wherever a value is
absent (and single keypoints of a valid frame may be NaN too). Camera axes are OpenCV's: x right, y down,
z forward.

| key | dtype | shape | meaning |
|---|---|---|---|
| `format` | str | () | always `"instanthmr-take"` |
| `version` | int64 | () | `1`; a reader refuses versions newer than it knows |
| `fps` | float64 | () | frames per second of the source |
| `image_size` | int64 | (2,) | `[H, W]` pixels |
| `focal_length` | float64 | () | pixels: the camera the results live in (the user's lens, else the model's own) |
| `principal_point` | float64 | (2,) | `[cx, cy]` pixels |
| `frames` | int64 | (F,) | source frame index of each column, strictly increasing |
| `track_ids` | int64 | (T,) | the id of each track (row), unique |
| `valid` | bool | (T, F) | the person was seen in that frame |
| `score` | float32 | (T, F) | detector confidence |
| `bbox` | float32 | (T, F, 4) | detector box `x1, y1, x2, y2`, pixels |
| `joints_cam` | float32 | (T, F, 70, 3) | MHR70 keypoints, camera space (`joints_3d + cam_trans`), metres |
| `cam_trans` | float32 | (T, F, 3) | InstantHMR `cam_trans`, metres: the MHR rig origin, not the pelvis |
| `joints_2d` | float32 | (T, F, 70, 2) | MHR70 keypoints, full-frame pixels |
| `mhr_params` | float32 | (T, F, 204) | MHR model parameters |
| `shape_params` | float32 | (T, F, 45) | MHR identity coefficients |
| `source` | str | () | where the take came from (the video path), informational |
| `model_info` | str | () | optional: JSON object naming the InstantHMR file that made it (file, sha256, model, |
| | | | licence, licence_url, source, graph, ...; see `provenance.py`); absent or `{}` for other takes |
| `camera_rotation` | float64 | (F, 3, 3) | optional, only for a moving camera: world-from-camera rotation per column |
| `camera_center` | float64 | (F, 3) | optional: camera centre per column, in the path's own units (no metric scale) |
| `camera_registered` | bool | (F,) | optional: False where the pose was interpolated (the solver could not place it) |
| `camera_points` | float64 | (N, 3) | optional: the background points the path was solved from (may be empty) |
| `camera_info` | str | () | optional: JSON object: `method` (`camera/path.py` METHODS) and the solve's figures |

A take without the `camera_*` keys was filmed by a still camera (or captured before the camera solve existed);
all five are written together (`camera/path.py` `CameraPath`), so rebuilding a scene never solves the camera again.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .camera.path import CameraPath, CameraPathError

TAKE_FORMAT = "instanthmr-take"
TAKE_VERSION = 1
NUM_KEYPOINTS = 70
NUM_MHR_PARAMS = 204
NUM_SHAPE_PARAMS = 45

# Per-track, per-frame arrays: dtype and shape, where "T" and "F" stand for the number of tracks and frames.
_ARRAY_FIELDS: dict[str, tuple[type, tuple]] = {
    "frames": (np.int64, ("F",)),
    "track_ids": (np.int64, ("T",)),
    "valid": (np.bool_, ("T", "F")),
    "score": (np.float32, ("T", "F")),
    "bbox": (np.float32, ("T", "F", 4)),
    "joints_cam": (np.float32, ("T", "F", NUM_KEYPOINTS, 3)),
    "cam_trans": (np.float32, ("T", "F", 3)),
    "joints_2d": (np.float32, ("T", "F", NUM_KEYPOINTS, 2)),
    "mhr_params": (np.float32, ("T", "F", NUM_MHR_PARAMS)),
    "shape_params": (np.float32, ("T", "F", NUM_SHAPE_PARAMS)),
}
# Per-track, per-frame values a TakeBuilder record carries, with their shape for one person in one frame.
_RECORD_FIELDS = {name: shape[2:] for name, (_, shape) in _ARRAY_FIELDS.items() if shape[:2] == ("T", "F")}
_SCALAR_KEYS = ("format", "version", "fps", "image_size", "focal_length", "principal_point", "source")
TAKE_KEYS = _SCALAR_KEYS + tuple(_ARRAY_FIELDS)
#: Keys a take may have; older takes lack them (same version: a reader that does not know them ignores them).
OPTIONAL_KEYS = ("model_info", "camera_rotation", "camera_center", "camera_registered", "camera_points", "camera_info")
_CAMERA_KEYS = OPTIONAL_KEYS[1:]


class TakeError(ValueError):
    """A take that is malformed, unreadable or from a newer version; the message names the file or field."""


@dataclass
class Take:
    """Every tracked person's per-frame model output for one capture (shapes and units: module docstring)."""

    fps: float
    image_size: tuple[int, int]  # (H, W) pixels
    focal_length: float  # pixels
    principal_point: tuple[float, float]  # (cx, cy) pixels
    frames: np.ndarray  # (F,) int64 source frame index of each column
    track_ids: np.ndarray  # (T,) int64
    valid: np.ndarray  # (T, F) bool
    score: np.ndarray  # (T, F) float32, NaN where absent
    bbox: np.ndarray  # (T, F, 4) float32 xyxy pixels, NaN where absent
    joints_cam: np.ndarray  # (T, F, 70, 3) float32 metres, OpenCV camera axes; NaN where absent
    cam_trans: np.ndarray  # (T, F, 3) float32 metres, OpenCV camera axes
    joints_2d: np.ndarray  # (T, F, 70, 2) float32 pixels
    mhr_params: np.ndarray  # (T, F, 204) float32
    shape_params: np.ndarray  # (T, F, 45) float32
    source: str = ""  # where it came from (video path), informational
    model_info: dict = field(default_factory=dict)  # the InstantHMR file that made it (provenance.py), JSON-ready
    camera_path: CameraPath | None = None  # a moving camera's path (camera/path.py); None: a still camera

    @property
    def num_tracks(self) -> int:
        return int(self.track_ids.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @classmethod
    def empty(
        cls,
        num_tracks: int,
        frames,
        *,
        fps: float,
        image_size: tuple[int, int],
        focal_length: float,
        principal_point: tuple[float, float],
        track_ids=None,
        source: str = "",
        model_info: dict | None = None,
    ) -> Take:
        """A take with every array allocated, NaN-filled and `valid` all False.

        `frames`: (F,) source frame indices. `track_ids`: (num_tracks,) ids; None numbers them 0..T-1.
        """
        frames = np.asarray(frames, dtype=np.int64).reshape(-1)
        track_ids = np.arange(num_tracks, dtype=np.int64) if track_ids is None else np.asarray(track_ids)
        track_ids = track_ids.astype(np.int64).reshape(-1)
        if track_ids.shape[0] != num_tracks:
            raise TakeError(f"{num_tracks} tracks requested but {track_ids.shape[0]} track ids given")
        sizes = {"T": num_tracks, "F": frames.shape[0]}
        arrays = {}
        for name, (dtype, symbolic) in _ARRAY_FIELDS.items():
            if name in ("frames", "track_ids"):
                continue
            shape = tuple(sizes.get(dim, dim) for dim in symbolic)
            arrays[name] = np.zeros(shape, bool) if dtype is np.bool_ else np.full(shape, np.nan, dtype)
        take = cls(
            fps=float(fps),
            image_size=(int(image_size[0]), int(image_size[1])),
            focal_length=float(focal_length),
            principal_point=(float(principal_point[0]), float(principal_point[1])),
            frames=frames,
            track_ids=track_ids,
            source=str(source),
            model_info=dict(model_info or {}),
            **arrays,
        )
        take.validate()
        return take

    def validate(self) -> None:
        """Raise TakeError naming the first field whose type, dtype, shape or value is wrong."""
        if not (_is_real(self.fps) and self.fps > 0):
            raise TakeError(f"take field `fps` must be a positive number, got {self.fps!r}")
        if not (_is_real(self.focal_length) and self.focal_length > 0):
            raise TakeError(
                f"take field `focal_length` must be a positive number of pixels, got {self.focal_length!r}"
            )
        if not (
            len(tuple(self.image_size)) == 2
            and all(isinstance(v, int | np.integer) and v > 0 for v in self.image_size)
        ):
            raise TakeError(
                f"take field `image_size` must be (H, W) positive whole pixels, got {self.image_size!r}"
            )
        if not (len(tuple(self.principal_point)) == 2 and all(_is_real(v) for v in self.principal_point)):
            raise TakeError(
                f"take field `principal_point` must be (cx, cy) pixels, got {self.principal_point!r}"
            )
        if not isinstance(self.source, str):
            raise TakeError(f"take field `source` must be text, got {type(self.source).__name__}")
        if not isinstance(self.model_info, dict):
            raise TakeError(f"take field `model_info` must be a dict, got {type(self.model_info).__name__}")
        try:
            json.dumps(self.model_info)
        except (TypeError, ValueError) as error:
            raise TakeError(f"take field `model_info` must hold only text and numbers ({error})") from None
        for name in ("frames", "track_ids"):
            _check_array(name, getattr(self, name), sizes=None)
        sizes = {"T": self.num_tracks, "F": self.num_frames}
        for name in _ARRAY_FIELDS:
            _check_array(name, getattr(self, name), sizes)
        if self.num_frames > 1 and not np.all(np.diff(self.frames) > 0):
            raise TakeError("take field `frames` must be strictly increasing source frame indices")
        if np.unique(self.track_ids).shape[0] != self.num_tracks:
            raise TakeError(f"take field `track_ids` has duplicates: {self.track_ids.tolist()}")
        if self.camera_path is not None:
            try:
                self.camera_path.validate(self.num_frames)
            except CameraPathError as error:
                raise TakeError(f"take field `camera_path`: {error}") from None


def _is_real(value) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value)


def _check_array(name: str, value, sizes: dict[str, int] | None) -> None:
    dtype, symbolic = _ARRAY_FIELDS[name]
    if not isinstance(value, np.ndarray):
        raise TakeError(f"take field `{name}` must be a numpy array, got {type(value).__name__}")
    if value.dtype != np.dtype(dtype):
        raise TakeError(f"take field `{name}` has dtype {value.dtype}; expected {np.dtype(dtype)}")
    if sizes is None:  # frames / track_ids define F and T: only their rank is checked
        expected = None if value.ndim == 1 else "1-D"
    else:
        expected_shape = tuple(sizes.get(dim, dim) for dim in symbolic)
        expected = None if value.shape == expected_shape else expected_shape
    if expected is not None:
        symbols = "(" + ", ".join(str(dim) for dim in symbolic) + ("," if len(symbolic) == 1 else "") + ")"
        raise TakeError(
            f"take field `{name}` has shape {value.shape}; expected {symbols}"
            + ("" if sizes is None else f" = {expected}")
        )


def save_take(take: Take, path: str | os.PathLike) -> Path:
    """Write `take` to `path` (an `.npz`; the name is used as given) and return the path.

    Atomic: the data goes to a temporary file in the same folder, which replaces the destination only once
    complete, so a crash, a full disk or a cancel never leaves a half-written take behind.
    """
    take.validate()
    destination = Path(path)
    folder = destination.parent
    if not folder.is_dir():
        raise TakeError(f"cannot save take to `{destination}`: the folder `{folder}` does not exist")
    payload = {
        "format": np.array(TAKE_FORMAT),
        "version": np.array(TAKE_VERSION, dtype=np.int64),
        "fps": np.array(take.fps, dtype=np.float64),
        "image_size": np.array(take.image_size, dtype=np.int64),
        "focal_length": np.array(take.focal_length, dtype=np.float64),
        "principal_point": np.array(take.principal_point, dtype=np.float64),
        "source": np.array(take.source),
        "model_info": np.array(json.dumps(take.model_info, sort_keys=True)),
    }
    payload.update({name: getattr(take, name) for name in _ARRAY_FIELDS})
    if take.camera_path is not None:
        path = take.camera_path
        payload.update({
            "camera_rotation": np.asarray(path.rotation, dtype=np.float64),
            "camera_center": np.asarray(path.center, dtype=np.float64),
            "camera_registered": np.asarray(path.registered, dtype=bool),
            "camera_points": np.asarray(path.points, dtype=np.float64).reshape(-1, 3),
            "camera_info": np.array(json.dumps({**path.info, "method": path.method}, sort_keys=True)),
        })  # fmt: skip
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=folder)
    except OSError as error:  # a read-only or full folder: name the take, not the temporary file
        raise TakeError(
            f"could not save take to `{destination}` ({error.strerror or error}): "
            "check that the folder is writable and the disk has space"
        ) from None
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez_compressed(stream, **payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, destination)
    except BaseException as error:
        # Any failure, KeyboardInterrupt included, removes the partial file and leaves the destination alone.
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise TakeError(
                f"could not save take to `{destination}` ({error.strerror or error}): "
                "check that the folder is writable and the disk has space"
            ) from error
        raise
    return destination


def locate_source(source: str, take_path: str | os.PathLike) -> str | None:
    """Where the clip a take was captured from is now, or None when it cannot be found.

    Tried in order: the recorded path (absolute since takes record it so; older takes hold it as typed,
    relative to the folder the capture ran in); that path relative to the take's folder; a file or folder of
    the same name next to the take (the take and its clip were moved together). An image-sequence pattern
    (`frame_%04d.png`) counts as found when its folder exists.
    """
    if not source:
        return None
    recorded = Path(source)
    take_folder = Path(take_path).absolute().parent
    candidates = [recorded, take_folder / recorded, take_folder / recorded.name]
    for candidate in candidates:
        if candidate.exists() or ("%" in candidate.name and candidate.parent.is_dir()):
            return os.path.abspath(candidate)
    return None


def load_take(path: str | os.PathLike) -> Take:
    """Read a take written by `save_take`; checks format, version, keys, dtypes and shapes (TakeError)."""
    source_path = Path(path)
    if not source_path.is_file():
        raise TakeError(f"take file `{source_path}` does not exist: check the path")
    not_a_take = f"`{source_path}` is not an InstantHMR take (.npz)"
    try:
        archive = np.load(source_path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise TakeError(f"{not_a_take}: {error}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise TakeError(f"{not_a_take}: it holds a single array, not a take")
    with archive:
        try:
            return _take_from_archive(archive, source_path)
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
            if isinstance(error, TakeError):
                raise
            raise TakeError(
                f"take `{source_path}` is damaged ({error}): save it again from a capture"
            ) from None


def _take_from_archive(archive, source_path: Path) -> Take:
    keys = set(archive.files)
    if "format" not in keys:
        raise TakeError(f"`{source_path}` is not an InstantHMR take: it has no `format` entry")
    file_format = _read_scalar(archive, "format", str, source_path)
    if file_format != TAKE_FORMAT:
        raise TakeError(
            f"`{source_path}` is a `{file_format}` file, not an InstantHMR take (`{TAKE_FORMAT}`)"
        )
    if "version" not in keys:
        raise TakeError(f"take `{source_path}` has no `version` entry: the file is damaged")
    version = _read_scalar(archive, "version", int, source_path)
    if version > TAKE_VERSION:
        raise TakeError(
            f"take `{source_path}` was written by a newer InstantHMR (take version {version}; this add-on "
            f"reads up to {TAKE_VERSION}): update the add-on to open it"
        )
    if version < 1:
        raise TakeError(f"take `{source_path}` has an invalid version {version}")
    missing = [key for key in TAKE_KEYS if key not in keys]
    if missing:
        listed = ", ".join(f"`{key}`" for key in missing)
        raise TakeError(f"take `{source_path}` is missing {listed}: the file is incomplete or damaged")

    arrays = {}
    for name, (dtype, _) in _ARRAY_FIELDS.items():
        value = archive[name]
        wanted_kind = np.dtype(dtype).kind
        allowed = {"f": "f", "i": "iu", "b": "b"}[wanted_kind]
        if value.dtype.kind not in allowed:
            raise TakeError(
                f"take `{source_path}` field `{name}` has dtype {value.dtype}; expected {np.dtype(dtype)}"
            )
        arrays[name] = value.astype(dtype, copy=False)
    image_size = _read_vector(archive, "image_size", source_path)
    if not np.all(image_size == np.round(image_size)):
        raise TakeError(
            f"take `{source_path}` field `image_size` must be whole pixels, got {image_size.tolist()}"
        )
    principal_point = _read_vector(archive, "principal_point", source_path)
    take = Take(
        fps=_read_scalar(archive, "fps", float, source_path),
        image_size=(int(image_size[0]), int(image_size[1])),
        focal_length=_read_scalar(archive, "focal_length", float, source_path),
        principal_point=(float(principal_point[0]), float(principal_point[1])),
        source=_read_scalar(archive, "source", str, source_path),
        model_info=_read_model_info(archive, source_path),
        camera_path=_read_camera_path(archive, source_path),
        **arrays,
    )
    try:
        take.validate()
    except TakeError as error:
        raise TakeError(f"take `{source_path}`: {error}") from None
    return take


def _read_scalar(archive, key: str, kind: type, source_path: Path):
    value = archive[key]
    kinds = {str: "U", int: "iu", float: "fiu"}[kind]
    if value.shape != () or value.dtype.kind not in kinds:
        raise TakeError(
            f"take `{source_path}` field `{key}` must be a single {kind.__name__}, "
            f"got dtype {value.dtype} shape {value.shape}"
        )
    return kind(value[()])


def _read_model_info(archive, source_path: Path) -> dict:
    if "model_info" not in archive.files:
        return {}
    text = _read_scalar(archive, "model_info", str, source_path)
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise TakeError(f"take `{source_path}` field `model_info` is not a JSON object: the file is damaged")
    return info


def _read_camera_path(archive, source_path: Path) -> CameraPath | None:
    present = [key for key in _CAMERA_KEYS if key in archive.files]
    if not present:
        return None
    if len(present) != len(_CAMERA_KEYS):
        missing = ", ".join(f"`{key}`" for key in _CAMERA_KEYS if key not in present)
        raise TakeError(f"take `{source_path}` has a camera path without {missing}: the file is damaged")
    text = _read_scalar(archive, "camera_info", str, source_path)
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if not isinstance(info, dict) or not isinstance(info.get("method"), str):
        raise TakeError(f"take `{source_path}` field `camera_info` is not a JSON object with a `method`")
    method = info.pop("method")
    return CameraPath(
        rotation=archive["camera_rotation"].astype(np.float64), center=archive["camera_center"].astype(np.float64),
        registered=archive["camera_registered"].astype(bool), points=archive["camera_points"].astype(np.float64),
        method=method, info=info,
    )  # fmt: skip


def _read_vector(archive, key: str, source_path: Path) -> np.ndarray:
    value = archive[key]
    if value.shape != (2,) or value.dtype.kind not in "fiu":
        raise TakeError(
            f"take `{source_path}` field `{key}` has dtype {value.dtype} shape {value.shape}; "
            "expected 2 numbers"
        )
    return value.astype(np.float64)


class TakeBuilder:
    """Collects per-frame, per-track records as a capture runs, then builds a Take.

    Call `add_frame(i)` for every processed frame (even with nobody in it, so the take's frame columns
    cover the whole processed range) and `add(i, track_id, ...)` for each person found in it.
    """

    def __init__(
        self,
        fps: float,
        image_size: tuple[int, int],
        focal_length: float,
        principal_point: tuple[float, float],
        source: str = "",
        model_info: dict | None = None,
    ) -> None:
        self.fps = float(fps)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.focal_length = float(focal_length)
        self.principal_point = (float(principal_point[0]), float(principal_point[1]))
        self.source = str(source)
        self.model_info = dict(model_info or {})
        self._frames: set[int] = set()
        self._records: dict[int, dict[int, dict[str, np.ndarray]]] = {}

    def add_frame(self, frame_index: int) -> None:
        """Register a processed source frame (a column of the take)."""
        self._frames.add(int(frame_index))

    def add(
        self,
        frame_index: int,
        track_id: int,
        *,
        score: float,
        bbox,
        joints_cam,
        cam_trans,
        joints_2d,
        mhr_params,
        shape_params,
    ) -> None:
        """Record one person in one frame. Shapes: bbox (4,) xyxy px, joints_cam (70, 3) m camera axes,
        cam_trans (3,) m, joints_2d (70, 2) px, mhr_params (204,), shape_params (45,). Copies the values."""
        frame_index, track_id = int(frame_index), int(track_id)
        values = {
            "score": score, "bbox": bbox, "joints_cam": joints_cam, "cam_trans": cam_trans,
            "joints_2d": joints_2d, "mhr_params": mhr_params, "shape_params": shape_params,
        }
        record = {}
        for name, expected_shape in _RECORD_FIELDS.items():
            if name == "valid":
                continue
            array = np.array(values[name], dtype=np.float32)  # a copy: callers may reuse their buffers
            if array.shape != expected_shape:
                raise TakeError(
                    f"TakeBuilder.add: `{name}` for track {track_id} at frame {frame_index} has shape "
                    f"{array.shape}; expected {expected_shape}"
                )
            record[name] = array
        track = self._records.setdefault(track_id, {})
        if frame_index in track:
            raise TakeError(f"TakeBuilder.add: track {track_id} was already added at frame {frame_index}")
        track[frame_index] = record
        self._frames.add(frame_index)

    def track_lengths(self) -> dict[int, int]:
        """Recorded frames per track id so far (before any minimum length is applied)."""
        return {track_id: len(track) for track_id, track in self._records.items()}

    def build(self, min_track_length: int = 1) -> Take:
        """The Take: tracks with at least `min_track_length` recorded frames, sorted by id; frame columns
        are the sorted union of every frame seen by `add_frame` or `add`."""
        if int(min_track_length) < 1:
            raise TakeError(f"min_track_length must be 1 or more, got {min_track_length}")
        kept_ids = sorted(tid for tid, track in self._records.items() if len(track) >= min_track_length)
        frames = np.array(sorted(self._frames), dtype=np.int64)
        take = Take.empty(
            len(kept_ids), frames, fps=self.fps, image_size=self.image_size, focal_length=self.focal_length,
            principal_point=self.principal_point, track_ids=kept_ids, source=self.source,
            model_info=self.model_info,
        )
        column_of = {int(frame): column for column, frame in enumerate(frames)}
        for row, track_id in enumerate(kept_ids):
            for frame_index, record in self._records[track_id].items():
                column = column_of[frame_index]
                take.valid[row, column] = True
                for name, value in record.items():
                    getattr(take, name)[row, column] = value
        return take
