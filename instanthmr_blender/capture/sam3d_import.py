"""SAM 3D Body results a user already ran with the upstream demo, imported as a take (no model runs).

Input: one folder per clip, one file per frame and person (or per frame, holding its people), each the dict
upstream's `SAM3DBodyEstimator.process_one_image` returns for a person, saved as `.npz` (`np.savez(path,
**person)`) or `.pkl` (`pickle.dump(person_or_people, file)`). Keys read: `pred_keypoints_3d` (70, 3) m relative
to the MHR rig origin, `pred_keypoints_2d` (70, 2) px, `pred_cam_t` (3,) m, `focal_length` px, `bbox` (4,) xyxy
px, and when present `mhr_model_params` (204,) and `shape_params` (45,) (NaN in the take otherwise).

Frames and people come from the file names (the path below the folder, without its suffix): with two or more
numbers in it, the last is the person and the one before it the frame (`frame_000012_1.npz`, `000012/1.pkl`);
with one number, it is the person when a person word precedes it (`img_subj00`, `person3`, `p2`, `id1`),
else the frame; files with no frame number are frames in name order. Identities across frames come from the
add-on's own tracker (`tracking.PersonTracker`), never from the file names.

The camera is checked, not assumed: the 2D keypoints must be the projection of `pred_keypoints_3d +
pred_cam_t` with the files' focal length and one principal point, which is the frame centre in upstream's
cameras; that point gives the frame size when no clip is given, and must be the centre of the clip's frame
when one is.

`.pkl` files are read with a restricted unpickler that only rebuilds numpy arrays, numpy scalars and dtypes,
and plain containers and numbers: a pickle naming any other class or function is refused before anything in
it runs, so an untrusted results folder cannot execute code.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..take import Take, TakeBuilder, TakeError
from .tracking import PersonTracker, TrackerSettings, keypoint_extent

RESULT_SUFFIXES = (".npz", ".pkl", ".pickle")
NUM_KEYPOINTS = 70
#: What each kept key must look like for one person.
_REQUIRED = {"pred_keypoints_3d": (NUM_KEYPOINTS, 3), "pred_keypoints_2d": (NUM_KEYPOINTS, 2), "pred_cam_t": (3,)}
_OPTIONAL = {"mhr_model_params": (204,), "shape_params": (45,), "bbox": (4,), "focal_length": ()}
_PERSON_WORD = re.compile(r"(subj|subject|person|people|human|pid|id|p)[_\-]?$", re.IGNORECASE)
#: Largest median distance (px) between the 2D keypoints and the projection of the 3D ones.
MAX_REPROJECTION_PX = 1.0
#: Largest distance (px) between the fitted principal point and the centre of the given frame.
MAX_CENTRE_OFFSET_PX = 2.0


class Sam3DImportError(TakeError):
    """The folder's results cannot become a take; the message names the file and what is wrong."""


# ---------------------------------------------------------------------------------------------------------
# Reading one file (no code runs).

_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
}  # fmt: skip


class _DataOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays/scalars/dtypes, dicts, lists, tuples, strings and numbers; refuses any other global
    (so no constructor or function named by the file is ever called)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it names `{module}.{name}`")
        try:
            return super().find_class(module, name)
        except ModuleNotFoundError:  # a pickle from numpy 2 (numpy._core) read with numpy 1
            return super().find_class(module.replace("numpy._core", "numpy.core"), name)


def load_pickle_data(path: str | os.PathLike):
    """The data in a `.pkl` file, rebuilt by the restricted unpickler (module docstring)."""
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            return _DataOnlyUnpickler(stream).load()
    except pickle.UnpicklingError as error:
        raise Sam3DImportError(
            f"`{path}` was not read: {error}, and only numpy arrays, dicts, lists and numbers are loaded from "
            ".pkl files (no code runs); save SAM 3D Body's outputs as numpy arrays (.cpu().numpy()) or as .npz"
        ) from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise Sam3DImportError(f"`{path}` is not a readable pickle ({error})") from None


def read_people(path: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """The people in one result file: a person dict, a list of them, or arrays with a leading person axis."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                data = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError) as error:
            raise Sam3DImportError(f"`{path}` is not a readable .npz file ({error})") from None
    else:
        data = load_pickle_data(path)
    if isinstance(data, dict):
        keypoints = np.asarray(data.get("pred_keypoints_3d", np.zeros(0)))
        if keypoints.ndim == 3:  # batched: one row per person
            return [
                {key: np.asarray(value)[row] if np.ndim(value) > 0 else value for key, value in data.items()}
                for row in range(len(keypoints))
            ]
        return [data]
    if isinstance(data, list | tuple) and all(isinstance(person, dict) for person in data):
        return list(data)
    raise Sam3DImportError(
        f"`{path}` holds a {type(data).__name__}, not SAM 3D Body outputs (a dict per person, or a list of them)"
    )


@dataclass
class PersonResult:
    """One person in one frame, checked and in take units (see the module docstring for the keys)."""

    path: Path
    keypoints_3d: np.ndarray  # (70, 3) m, relative to the MHR rig origin
    keypoints_2d: np.ndarray  # (70, 2) px
    cam_t: np.ndarray  # (3,) m
    bbox: np.ndarray  # (4,) xyxy px (the keypoints' extent when the file has none)
    mhr_params: np.ndarray  # (204,), NaN when absent
    shape_params: np.ndarray  # (45,), NaN when absent
    focal_length: float | None


def check_person(path: Path, person: dict) -> PersonResult:
    values = {}
    for key, shape in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in person or person[key] is None:
            if key in _REQUIRED:
                found = ", ".join(sorted(str(k) for k in person)) or "nothing"
                raise Sam3DImportError(f"`{path}` has no `{key}` (it holds {found}): is it a SAM 3D Body output?")
            continue
        try:
            value = np.asarray(person[key], np.float64)
        except (TypeError, ValueError):
            raise Sam3DImportError(f"`{path}`: `{key}` is not numeric") from None
        if key == "focal_length":
            value = value.reshape(-1)[:1].reshape(()) if value.size else value
        if value.shape != shape:
            raise Sam3DImportError(f"`{path}`: `{key}` has shape {value.shape}; SAM 3D Body's is {shape}")
        values[key] = value
    for key in _REQUIRED:
        if not np.isfinite(values[key]).all():
            raise Sam3DImportError(f"`{path}`: `{key}` has values that are not finite")
    bbox = values.get("bbox")
    if bbox is None:
        bbox = keypoint_extent(values["pred_keypoints_2d"])
    return PersonResult(
        path=path, keypoints_3d=values["pred_keypoints_3d"], keypoints_2d=values["pred_keypoints_2d"],
        cam_t=values["pred_cam_t"], bbox=bbox,
        mhr_params=values.get("mhr_model_params", np.full(204, np.nan)),
        shape_params=values.get("shape_params", np.full(45, np.nan)),
        focal_length=float(values["focal_length"]) if "focal_length" in values else None,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# The folder: frames, people, camera.


def result_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise Sam3DImportError(f"SAM 3D Body results folder `{folder}` does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in RESULT_SUFFIXES)
    if not files:
        raise Sam3DImportError(
            f"`{folder}` holds no SAM 3D Body results (.npz or .pkl files, one per frame and person)"
        )
    return files


def frame_key(relative: Path) -> tuple[str, int | None]:
    """(the frame's name, its number or None) of a result file's path below the folder (module docstring)."""
    text = relative.with_suffix("").as_posix()
    numbers = list(re.finditer(r"\d+", text))
    if len(numbers) >= 2:
        frame = numbers[-2]
        return text[: numbers[-1].start()], int(frame.group())
    if len(numbers) == 1:
        only = numbers[0]
        if _PERSON_WORD.search(text[: only.start()]):
            return text[: only.start()], None
        return text[: only.end()], int(only.group())
    return text, None


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def group_frames(folder: Path, files: list[Path]) -> tuple[list[int], list[list[PersonResult]]]:
    """Source frame indices (increasing) and the people of each frame."""
    groups: dict[str, list[PersonResult]] = {}
    numbers: dict[str, int | None] = {}
    for path in files:
        key, number = frame_key(path.relative_to(folder))
        numbers[key] = number
        groups.setdefault(key, []).extend(check_person(path, person) for person in read_people(path))
    keys = sorted(groups, key=_natural)
    values = [numbers[key] for key in keys]
    if all(v is not None for v in values) and len(set(values)) == len(values):
        order = sorted(range(len(keys)), key=lambda i: values[i])
        return [values[i] for i in order], [groups[keys[i]] for i in order]
    return list(range(len(keys))), [groups[key] for key in keys]


def fit_camera(people: list[PersonResult], focal_px: float | None) -> tuple[float, tuple[float, float], str]:
    """(focal px, principal point px, where the focal length came from), checked against every person."""
    focals = [p.focal_length for p in people if p.focal_length is not None]
    if focal_px is not None:
        focal, source = float(focal_px), "given"
    elif len(focals) < len(people):
        missing = next(p.path for p in people if p.focal_length is None)
        raise Sam3DImportError(
            f"`{missing}` has no `focal_length`: give the focal length the results were made with (--focal-px)"
        )
    else:
        focal, source = float(np.median(focals)), "files"
        odd = next((p for p in people if abs(p.focal_length - focal) > 1e-3 * focal), None)
        if odd is not None:
            raise Sam3DImportError(
                f"the results disagree on the camera: `{odd.path}` has focal_length {odd.focal_length:.2f} px, "
                f"the others {focal:.2f}; a take has one camera (run SAM 3D Body with fixed intrinsics)"
            )
    offsets = []
    for person in people:
        points = person.keypoints_3d + person.cam_t
        offsets.append(person.keypoints_2d - focal * points[:, :2] / points[:, 2:3])
    centre = np.median(np.concatenate(offsets), axis=0)
    for person, offset in zip(people, offsets):
        error = float(np.median(np.linalg.norm(offset - centre, axis=1)))
        if error > MAX_REPROJECTION_PX:
            raise Sam3DImportError(
                f"`{person.path}`: pred_keypoints_2d are {error:.1f} px from the projection of pred_keypoints_3d + "
                f"pred_cam_t with f = {focal:.2f} px: "
                + ("the given focal length is not the results'" if source == "given" else "the file is inconsistent")
            )
    return focal, (float(centre[0]), float(centre[1])), source


def import_sam3d_results(
    folder: str | os.PathLike,
    *,
    image_size: tuple[int, int] | None = None,
    fps: float = 30.0,
    focal_px: float | None = None,
    source: str = "",
    min_track_length: int = 1,
    lost_track_frames: int = 15,
) -> Take:
    """A take from a folder of SAM 3D Body results. image_size: (H, W) of the clip's frames (None: from the
    results' principal point, the frame centre); fps: the clip's rate; focal_px: the focal length when the
    files lack it. People are tracked across frames by the add-on's tracker; tracks shorter than
    `min_track_length` frames (capped at the number of frames) are dropped."""
    folder = Path(folder)
    frames, people_per_frame = group_frames(folder, result_files(folder))
    everyone = [person for people in people_per_frame for person in people]
    focal, centre, focal_source = fit_camera(everyone, focal_px)
    if image_size is None:
        image_size = (int(round(2 * centre[1])), int(round(2 * centre[0])))
    else:
        height, width = image_size
        if max(abs(centre[0] - width / 2), abs(centre[1] - height / 2)) > MAX_CENTRE_OFFSET_PX:
            raise Sam3DImportError(
                f"the results' principal point ({centre[0]:.1f}, {centre[1]:.1f}) px is not the centre of a {width}x"
                f"{height} frame: were they made from another clip (or a resized one)?"
            )
    principal_point = (image_size[1] / 2.0, image_size[0] / 2.0)
    model_info = {
        "backend": "sam3d", "model": "SAM 3D Body", "imported_from": str(folder.resolve()),
        "files": len(everyone), "focal_source": focal_source,
    }  # fmt: skip
    builder = TakeBuilder(fps, image_size, focal, principal_point, source=source, model_info=model_info)
    most = max(len(people) for people in people_per_frame)
    tracker = PersonTracker(TrackerSettings(max_persons=max(most, 1), lost_track_frames=lost_track_frames))
    for step, (frame, people) in enumerate(zip(frames, people_per_frame)):
        builder.add_frame(frame)
        if not people:
            continue
        boxes = np.stack([p.bbox for p in people])
        keypoints = np.stack([p.keypoints_2d for p in people])
        for track_id, row in tracker.update(step, boxes, np.ones(len(people)), keypoints):
            person = people[row]
            builder.add(
                frame, track_id, score=1.0, bbox=person.bbox, joints_cam=person.keypoints_3d + person.cam_t,
                cam_trans=person.cam_t, joints_2d=person.keypoints_2d, mhr_params=person.mhr_params,
                shape_params=person.shape_params,
            )  # fmt: skip
    take = builder.build(min_track_length=max(1, min(int(min_track_length), len(frames))))
    take.track_ids = np.arange(take.num_tracks, dtype=np.int64)
    return take
