"""Point caches (PC2), written by streaming: the file format, and one person's mesh animation evaluated through
a runner (runner.py) batch by batch into a PC2 in Blender world space."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .body import mhr_to_world, model_parameters, robust_identity
from .errors import MeshError

DEFAULT_BATCH_SIZE = 64  # frames per module call: 64 x 18439 x 3 float32 = 14 MB a reply

# PC2 ("POINTCACHE2"): a 32-byte little-endian header, then num_samples x num_points x (x, y, z) float32.
PC2_MAGIC = b"POINTCACHE2\0"
PC2_HEADER = np.dtype([
    ("magic", "S12"), ("version", "<i4"), ("num_points", "<i4"),
    ("start_frame", "<f4"), ("sample_rate", "<f4"), ("num_samples", "<i4"),
])  # fmt: skip

Progress = Callable[[int, int], None]


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

