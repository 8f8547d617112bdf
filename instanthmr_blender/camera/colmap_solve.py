"""Solve a moving camera's path from the video's background with COLMAP (pycolmap), every tracked person masked.

Pipeline (`solve_camera`): the take's frames are sampled as the motion needs (a step chosen from the measured
background shift, so neighbouring samples are about `target_shift_px` apart, at most `max_images` of them),
scaled to `long_side` and written to `work_dir/images` with a mask per image (black over each person's grown
box) in `work_dir/masks`. A pan test (pan.py) runs first on the same frames: a camera that only turns is solved
as rotation only and needs no pycolmap. Otherwise pycolmap runs SIFT extraction with the take's intrinsics
fixed (PINHOLE, one camera), sequential matching (overlap 8, quadratic) and the incremental mapper with the
focal fixed, then the global mapper when the incremental one placed too few frames. A reconstruction whose
camera centres barely spread relative to its points' depth is a pan after all and is re-solved as rotation
only. Columns that were not sampled or not placed are then placed against the reconstruction (register.py: the
placed images' observations tracked into their frames by Lucas-Kanade, then PnP seeded with the interpolated
pose); only those that fail its checks are interpolated (`fill_unregistered`) and marked unregistered.

pycolmap runs in a child process (`sys.executable`, Blender's own Python inside Blender 4.2+), because its
own cancellation can lag ~25 s (while it searches for the initial pair) and the global mapper cannot be
cancelled at all: on `cancel` the child is killed, so `solve_camera` raises `CameraSolveCancelled` within
about 0.1 s of the event being set. The child speaks JSON lines on its stdout and writes its result to
`work_dir/result.npz`.

This file is also the child's script: it is loaded by its path in the child, so its top level imports only the
standard library and numpy; the engine's modules are imported inside the parent's functions.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the child process loads this file alone: no engine imports at its top level
    from .path import CameraPath

_FOREIGN_PYTHON_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")


class CameraSolveError(ValueError):
    """The camera path could not be solved; the message is one line naming the input and what to try."""


class CameraSolveCancelled(CameraSolveError):
    """The solve was cancelled (the `cancel` event was set); raised within about a second."""


@dataclass
class SolveSettings:
    """long_side: px of the images COLMAP sees; max_features: SIFT features per image; overlap: sequential
    matching neighbours (plus quadratic ones); threads: 0 = every core; mapper: "auto" (incremental, then
    global when too few frames are placed), "incremental" or "global"; min_registered: the fraction of sampled
    frames that must be placed; step: take columns between samples (0: chosen from the measured shift so that
    samples are `target_shift_px` apart, at most `max_images` samples); pan_residual_px: the rotation-only
    residual below which a clip is a pan (pan.py; 0 disables the pan test); pan_spread: centre spread / median
    point depth below which a reconstruction counts as a pan; max_points: background points kept;
    max_map_seconds: the incremental mapper's time limit; register_between: place the columns COLMAP did not
    (the frames between the samples, samples it left out) by tracking its observations into them and PnP
    (register.py), interpolating only those that fail; max_observations: observations per placed image handed
    to that stage; pnp_min_inliers, pnp_max_median_px: what a PnP pose needs to be accepted (points within 2 px,
    their median reprojection error in px of the solve's images)."""

    long_side: int = 960
    max_features: int = 2048
    overlap: int = 8
    threads: int = 0
    mapper: str = "auto"
    min_registered: float = 0.5
    step: int = 0
    target_shift_px: float = 12.0
    max_images: int = 150
    min_images: int = 24
    image_format: str = "jpg"
    init_min_tri_angle: float = 4.0
    pan_residual_px: float = 1.0
    pan_spread: float = 0.005
    max_points: int = 20000
    max_map_seconds: float = 900.0
    register_between: bool = True
    max_observations: int = 1500
    pnp_min_inliers: int = 30
    pnp_max_median_px: float = 1.5

    def thread_count(self) -> int:
        cores = os.cpu_count() or 1
        return max(1, min(cores, self.threads)) if self.threads > 0 else cores


def pycolmap_problem() -> str | None:
    """Why pycolmap cannot be used here (one line with what to do instead), or None when it imports."""
    try:
        import pycolmap  # noqa: F401
    except (ImportError, OSError) as error:
        import platform

        machine, system = platform.machine().lower(), platform.system()
        if system == "Darwin" and machine in ("x86_64", "amd64"):
            why = "pycolmap has no build for Intel Macs"
        elif system == "Linux" and machine in ("aarch64", "arm64"):
            why = "pycolmap has no build for ARM Linux"
        else:
            why = f"pycolmap could not be loaded ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
        return (f"{why}, so the camera's motion cannot be solved from the video here: use a scene camera "
                "(--camera-path FILE.blend:OBJECT) or treat the camera as still (--camera-motion static)")
    return None


def _intrinsics(take, scale: float) -> np.ndarray:
    f = float(take.focal_length) * scale
    cx, cy = (float(v) * scale for v in take.principal_point)
    return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])


def _choose_step(count: int, shift_px: float, settings: SolveSettings) -> int:
    if settings.step > 0:
        return int(settings.step)
    step = int(settings.target_shift_px / shift_px) if np.isfinite(shift_px) and shift_px > 0 else 1
    step = min(max(1, step), max(1, (count - 1) // max(1, settings.min_images - 1)))  # keep min_images
    return max(step, -(-count // settings.max_images))  # at most max_images


def _sampled_columns(count: int, step: int) -> np.ndarray:
    columns = np.arange(0, count, step)
    if columns[-1] != count - 1:
        columns = np.append(columns, count - 1)
    return columns


def solve_camera(source_path: str | os.PathLike, take, *, work_dir: str | os.PathLike,
                 settings: SolveSettings | None = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 cancel: threading.Event | None = None) -> CameraPath:
    """The camera's path for every column of `take`, solved from the background of `source_path` (module
    docstring). `work_dir` receives the images, masks, database and model (cleared first). `progress(stage,
    done, total)` is called often; `cancel` (a threading.Event) stops the solve within about a second with
    CameraSolveCancelled. Raises CameraSolveError (one line) when the path cannot be solved."""
    from .motion import measure_shift
    from .pan import pan_rotations, pan_test, rotation_only_path

    settings = settings or SolveSettings()
    name = Path(os.fspath(source_path)).name
    work = Path(work_dir)
    report = progress or (lambda stage, done, total: None)
    timer = _StageTimer()

    def cancelled() -> bool:
        return cancel is not None and cancel.is_set()

    def check() -> None:
        if cancelled():
            raise CameraSolveCancelled(f"the camera solve of `{name}` was cancelled")

    count = take.num_frames
    if count < 3:
        raise CameraSolveError(f"the take of `{name}` has {count} frames: a camera path needs at least 3")
    report("measuring motion", 0, 1)
    try:
        shift, shift_pairs = measure_shift(source_path, take, max_pairs=20, cancel=cancel)
    except InterruptedError:
        raise CameraSolveCancelled(f"the camera solve of `{name}` was cancelled") from None
    timer.lap("measure")
    if shift_pairs == 0:
        raise CameraSolveError(
            f"the background of `{name}` has too little texture outside the people to follow the camera: "
            "try --camera-motion static or a scene camera (--camera-path FILE.blend:OBJECT)")
    step = _choose_step(count, shift, settings)
    columns = _sampled_columns(count, step)

    grays, masks, scale = _write_images(source_path, take, columns, work, settings, report, check)
    timer.lap("read")
    intrinsics = _intrinsics(take, scale)
    info = {"sampled_step": step, "sampled_frames": len(columns), "shift_px": round(shift, 3),
            "settings": asdict(settings), "image_size": [int(v) for v in grays[0].shape]}  # fmt: skip

    def rotation_only(reason: str) -> CameraPath:
        report("turning only", 0, len(grays))
        try:
            rotations, linked, figures = pan_rotations(
                grays, masks, intrinsics, progress=lambda done, total: report("turning only", done, total),
                cancelled=cancelled)
        except InterruptedError:
            raise CameraSolveCancelled(f"the camera solve of `{name}` was cancelled") from None
        timer.lap("rotation")
        _check_registered(int(linked.sum()), len(linked), name, settings)
        path = rotation_only_path(rotations, linked, columns, take.frames, info)
        sampled = int(path.registered.sum())
        if settings.register_between and not path.registered.all():
            try:
                _turn_between(source_path, take, scale, intrinsics, path, report, check)
            except InterruptedError:
                raise CameraSolveCancelled(f"the camera solve of `{name}` was cancelled") from None
            timer.lap("between")
        info.update(figures, reason=reason, registered=int(path.registered.sum()), placed_by_rotation=sampled,
                    placed_between=int(path.registered.sum()) - sampled,
                    interpolated=int((~path.registered).sum()), stage_seconds=timer.laps)  # fmt: skip
        path.info = info
        return path

    pan = None
    if settings.pan_residual_px > 0:
        gap = int(np.clip(round(80.0 / max(shift * step, 1e-6)), 2, 8))
        report("testing for a pan", 0, 1)
        pan = pan_test(grays, masks, intrinsics, residual_px=settings.pan_residual_px, gap=gap)
        info["pan_test"] = pan.as_info()
        timer.lap("pan test")
        check()
        if pan.is_pan:
            return rotation_only(f"rotation alone explains the background ({pan.residual_px:.2f} px residual): "
                                 "the camera turns without moving")
    problem = pycolmap_problem()
    if problem:
        raise CameraSolveError(problem)
    del grays[:]  # the child reads the images from disk
    result = _run_child(work, intrinsics, settings, report, cancel, name)
    timer.laps.update({key: round(value, 2) for key, value in result["times"].items()})
    registered_names = result["names"]
    placed = len(registered_names)
    info.update({key: result[key] for key in ("method", "features", "pairs", "mean_reprojection_px",
                                               "pycolmap", "mapper_attempts")})  # fmt: skip
    spread = _spread_ratio(result)
    info["center_spread_ratio"] = None if spread is None else round(spread, 6)
    # A reconstruction is trusted when its centres spread relative to its points' depth and it has points; the
    # global mapper returns a "solution" with random centres and hardly any good points on a pan or a still clip.
    trusted = placed >= 3 and spread is not None and spread >= settings.pan_spread and len(result["points"]) >= 30
    nearly_pan = pan is not None and pan.pairs > 0 and pan.residual_px < 4 * settings.pan_residual_px
    if (spread is not None and spread < settings.pan_spread) or (not trusted and nearly_pan):
        grays[:] = _reload(work, columns, settings)
        return rotation_only("the mappers found no baseline (the camera barely travels): solved as rotation only")
    _check_registered(placed if trusted else 0, len(columns), name, settings)
    path = _colmap_path(result, columns, take, settings)
    kept = int(path.registered.sum())
    by_pnp = 0
    if settings.register_between and not path.registered.all():
        timer.restart()  # the child's stages are timed by the child
        by_pnp = _register_between(source_path, take, scale, intrinsics, result, columns, path, settings, report,
                                   check)  # fmt: skip
        timer.lap("between")
    info.update(registered=int(path.registered.sum()), placed_by_colmap=kept, placed_by_pnp=by_pnp,
                interpolated=int((~path.registered).sum()), jumps_dropped=placed - kept, stage_seconds=timer.laps)
    path.info = info
    return path


def _register_between(source_path, take, scale: float, intrinsics: np.ndarray, result: dict, columns: np.ndarray,
                      path, settings: SolveSettings, report, check) -> int:
    """Place the columns `path` leaves unregistered against COLMAP's reconstruction (register.py), refill the
    rest by interpolation; returns how many were placed."""
    from ..video.frames import open_source
    from .motion import take_columns
    from .path import fill_unregistered
    from .register import Acceptance, Key, place_between

    column_of = {_image_name(int(c), settings): int(c) for c in columns}
    ends = np.concatenate([[0], np.cumsum(result["obs_counts"])])
    keys = {}
    for i, name in enumerate(result["names"]):
        column = column_of[name]
        if path.registered[column] and ends[i + 1] > ends[i]:
            rows = slice(int(ends[i]), int(ends[i + 1]))
            keys[column] = Key(column, result["rotations"][i], result["translations"][i], result["obs_xy"][rows],
                               result["obs_xyz"][rows], result["obs_ids"][rows])  # fmt: skip
    targets = np.flatnonzero(~path.registered)
    stage = "placing the frames in between"
    report(stage, 0, len(targets))
    accept = Acceptance(min_inliers=settings.pnp_min_inliers, max_median_px=settings.pnp_max_median_px)
    frames, boxes = take_columns(take)
    with open_source(source_path, fps=float(take.fps)) as source:
        placed = place_between(source, frames, boxes, scale, intrinsics, keys, targets, path.rotation, path.center,
                               accept, lambda done, total: report(stage, done, total), check)  # fmt: skip
    path.registered[targets[placed]] = True
    path.rotation, path.center = fill_unregistered(path.rotation, path.center, path.registered, take.frames)
    return int(placed.sum())


def _turn_between(source_path, take, scale: float, intrinsics: np.ndarray, path, report, check) -> None:
    """A rotation-only path's columns between its samples, placed from the images (pan.place_between) as the
    video is read once in order; the rest interpolated again."""
    import cv2

    from ..video.frames import open_source
    from .motion import background_mask, resize, take_columns
    from .pan import place_between
    from .path import fill_unregistered

    frames, boxes = take_columns(take)
    column_of = {int(frame): column for column, frame in enumerate(frames)}
    stage = "placing the frames in between"
    report(stage, 0, int((~path.registered).sum()))

    def scaled_frames():
        with open_source(source_path, fps=float(take.fps)) as source:
            for index, rgb in source.frames(int(frames[0]), int(frames[-1]) + 1):
                check()
                column = column_of.get(int(index))
                if column is None:
                    continue
                gray = cv2.cvtColor(resize(rgb, scale), cv2.COLOR_RGB2GRAY)
                yield column, gray, background_mask(gray.shape, None if boxes is None else boxes[:, column], scale)

    place_between(path, scaled_frames(), intrinsics, progress=lambda done, total: report(stage, done, total))
    path.rotation, _ = fill_unregistered(path.rotation, path.center, path.registered, take.frames)


def _check_registered(placed: int, total: int, name: str, settings: SolveSettings) -> None:
    if placed < max(3, settings.min_registered * total):
        raise CameraSolveError(
            f"only {placed} of {total} frames of `{name}` could be placed (the background has too little texture "
            "or moves with the people): try --camera-motion static, a scene camera (--camera-path "
            "FILE.blend:OBJECT), or a lens value")


class _StageTimer:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def restart(self) -> None:
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = round(now - self._last, 3)
        self._last = now


def _image_name(column: int, settings: SolveSettings) -> str:
    return f"f_{column:06d}.{settings.image_format}"


def _write_images(source_path, take, columns, work: Path, settings: SolveSettings, report, check):
    """Read the sampled columns, write scaled images and masks; returns (gray frames, masks, scale)."""
    import cv2

    from ..video.frames import open_source
    from .motion import background_mask, resize, scale_for, take_columns

    shutil.rmtree(work, ignore_errors=True)
    (work / "images").mkdir(parents=True)
    (work / "masks").mkdir()
    frames, boxes = take_columns(take)
    wanted = {int(frames[c]): int(c) for c in columns}
    diffs = np.diff(frames[columns]) if len(columns) > 1 else np.array([1])
    regular = bool(len(diffs) and np.all(diffs == diffs[0]))
    grays, masks = [], []
    with open_source(source_path, fps=float(take.fps)) as source:
        scale = scale_for((source.info.height, source.info.width), settings.long_side)
        last = int(frames[columns[-1]]) + 1
        step = int(diffs[0]) if regular else 1
        for index, rgb in source.frames(int(frames[columns[0]]), last, step):
            check()
            column = wanted.get(index)
            if column is None:
                continue
            image = resize(rgb, scale)
            mask = background_mask(image.shape[:2], None if boxes is None else boxes[:, column], scale)
            name = _image_name(column, settings)
            cv2.imwrite(str(work / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(work / "masks" / f"{name}.png"), mask)  # a missing mask drops the image
            grays.append(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
            masks.append(mask)
            report("reading frames", len(grays), len(columns))
    if len(grays) != len(columns):
        raise CameraSolveError(f"only {len(grays)} of the take's {len(columns)} sampled frames could be read from "
                               f"`{Path(os.fspath(source_path)).name}`: check that it is the take's video")
    return grays, masks, scale


def _reload(work: Path, columns, settings: SolveSettings) -> list[np.ndarray]:
    import cv2

    return [cv2.imread(str(work / "images" / _image_name(int(c), settings)), cv2.IMREAD_GRAYSCALE) for c in columns]


def _spread_ratio(result: dict) -> float | None:
    """The spread of the placed camera centres relative to the median depth of the points, or None."""
    centers = result["centers"]
    if len(centers) < 3 or len(result["points"]) < 10:
        return None
    spread = float(np.linalg.norm(centers.max(axis=0) - centers.min(axis=0)))
    depth = float(np.median(np.linalg.norm(result["points"] - np.median(centers, axis=0), axis=1)))
    return spread / depth if depth > 0 else None


def _path_jumps(rotation: np.ndarray, center: np.ndarray, registered: np.ndarray, factor: float = 3.0) -> np.ndarray:
    """Columns whose placed pose jumps away from both placed neighbours (a frame the mapper placed wrongly with a
    consistent-looking but wrong pose): the centre (or viewing direction) further than `factor` times the
    median step from its neighbours' midpoint."""
    placed = np.flatnonzero(registered)
    if len(placed) < 5:
        return np.zeros(0, int)
    steps = np.linalg.norm(np.diff(center[placed], axis=0), axis=1)
    axes = rotation[placed][:, :, 2]  # viewing directions
    turns = np.linalg.norm(np.diff(axes, axis=0), axis=1)
    middle_c = (center[placed[:-2]] + center[placed[2:]]) / 2
    middle_a = (axes[:-2] + axes[2:]) / 2
    off_c = np.linalg.norm(center[placed[1:-1]] - middle_c, axis=1)
    off_a = np.linalg.norm(axes[1:-1] - middle_a, axis=1)
    bad = (off_c > factor * max(np.median(steps), 1e-12)) | (off_a > factor * np.median(turns) + np.radians(0.5))
    return placed[1:-1][bad]


def _colmap_path(result: dict, columns: np.ndarray, take, settings: SolveSettings):
    from .path import CameraPath, fill_unregistered

    count = take.num_frames
    rotation = np.tile(np.eye(3), (count, 1, 1))
    center = np.zeros((count, 3))
    registered = np.zeros(count, bool)
    column_of = {_image_name(int(c), settings): int(c) for c in columns}
    for name, cam_rotation, cam_translation in zip(result["names"], result["rotations"], result["translations"]):
        column = column_of[name]
        rotation[column] = cam_rotation.T  # world-from-camera
        center[column] = -cam_rotation.T @ cam_translation
        registered[column] = True
    jumps = _path_jumps(rotation, center, registered)
    registered[jumps] = False
    rotation, center = fill_unregistered(rotation, center, registered, take.frames)
    method = "colmap-global" if result["method"] == "global" else "colmap-incremental"
    return CameraPath(rotation=rotation, center=center, registered=registered, points=result["points"],
                      method=method)  # fmt: skip


# ---------------------------------------------------------------- the parent's side of the child process


def _run_child(work: Path, intrinsics: np.ndarray, settings: SolveSettings, report, cancel, name: str) -> dict:
    request = {"work": str(work), "intrinsics": intrinsics.tolist(), "settings": asdict(settings),
               "threads": settings.thread_count(), "sys_path": [p for p in sys.path if p]}  # fmt: skip
    (work / "request.json").write_text(json.dumps(request))
    loader = ("import importlib.util, json, sys; r = json.load(open(sys.argv[2])); "
              "sys.path += [p for p in r['sys_path'] if p not in sys.path]; "
              "s = importlib.util.spec_from_file_location('instanthmr_colmap_child', sys.argv[1]); "
              "m = sys.modules[s.name] = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
              "sys.exit(m._child_main(r))")
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_PYTHON_VARIABLES}
    log = tempfile.TemporaryFile()
    try:
        process = subprocess.Popen([sys.executable, "-E", "-c", loader, __file__, str(work / "request.json")],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env)
    except OSError as error:
        log.close()
        raise CameraSolveError(f"could not start COLMAP's process with `{sys.executable}` ({error})") from None
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, name="instanthmr-colmap-reader", daemon=True).start()
    done = None
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise CameraSolveCancelled(f"the camera solve of `{name}` was cancelled")
            try:
                line = lines.get(timeout=0.05)
            except queue.Empty:
                continue
            if line is None:
                break
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("op") == "progress":
                report(message["stage"], int(message["done"]), int(message["total"]))
            elif message.get("op") in ("done", "error"):
                done = message
        status = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        tail = _log_tail(log)
        log.close()
    if done is None or done["op"] == "error":
        why = done["message"] if done else f"it stopped with exit status {status}; its last output: {tail!r}"
        raise CameraSolveError(f"COLMAP failed on `{name}`: {why}")
    with np.load(work / "result.npz", allow_pickle=False) as data:
        result = {key: data[key] for key in data.files}
    result["names"] = [str(n) for n in result["names"]]
    result.update(done["figures"])
    return result


def _log_tail(log) -> str:
    try:
        log.seek(0)
        lines = [line.strip() for line in log.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except (OSError, ValueError):
        return ""
    return lines[-1][-300:] if lines else ""


# ---------------------------------------------------------------- the child process (pycolmap)


def _child_main(request: dict) -> int:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")  # stdout now carries only our JSON lines
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def send(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    try:
        figures, arrays = _child_solve(request, lambda stage, done, total: send(
            {"op": "progress", "stage": stage, "done": done, "total": total}))
    except Exception as error:  # reported to the parent as one line
        send({"op": "error", "message": f"{type(error).__name__}: {error}".splitlines()[0]})
        return 1
    np.savez(Path(request["work"]) / "result.npz", **arrays)
    send({"op": "done", "figures": figures})
    return 0


def _child_solve(request: dict, report) -> tuple[dict, dict]:
    import pycolmap

    pycolmap.logging.minloglevel = 2
    settings = request["settings"]
    threads = int(request["threads"])
    work = Path(request["work"])
    images, masks, database = work / "images", work / "masks", work / "database.db"
    if database.exists():
        database.unlink()
    (fx, _, cx), (_, fy, cy), _ = request["intrinsics"]
    names = sorted(os.listdir(images))
    times = {}

    start = time.perf_counter()
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    reader.camera_params = f"{fx}, {fy}, {cx}, {cy}"
    reader.mask_path = str(masks)
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = int(settings["max_features"])
    extraction.max_image_size = int(settings["long_side"])
    extraction.num_threads = threads
    chunk = max(4, threads * 2)
    for first in range(0, len(names), chunk):  # in chunks, for progress; one camera for all images
        pycolmap.extract_features(database, images, image_names=names[first:first + chunk],
                                  camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                                  extraction_options=extraction, device=pycolmap.Device.cpu)  # fmt: skip
        if first == 0:
            db = pycolmap.Database.open(str(database))
            try:
                reader.existing_camera_id = next(iter(db.read_all_cameras())).camera_id
            finally:
                db.close()
        report("finding features", min(len(names), first + chunk), len(names))
    times["features"] = time.perf_counter() - start

    start = time.perf_counter()
    report("matching", 0, 1)
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = threads
    pairing = pycolmap.SequentialPairingOptions()
    pairing.overlap = int(settings["overlap"])
    pairing.quadratic_overlap = True
    pairing.num_threads = threads
    pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing,
                              device=pycolmap.Device.cpu)
    report("matching", 1, 1)
    times["matching"] = time.perf_counter() - start
    db = pycolmap.Database.open(str(database))
    try:
        features, pairs, cameras = int(db.num_keypoints()), int(db.num_verified_image_pairs()), db.num_cameras()
    finally:
        db.close()

    attempts = []
    reconstruction, method = None, None
    wanted = float(settings["min_registered"]) * len(names)
    order = {"auto": ("incremental", "global"), "incremental": ("incremental",), "global": ("global",)}
    for mapper in order[settings["mapper"]]:
        start = time.perf_counter()
        output = work / f"sparse_{mapper}"
        shutil.rmtree(output, ignore_errors=True)
        output.mkdir()
        report("placing frames", 0, len(names))
        if mapper == "incremental":
            options = pycolmap.IncrementalPipelineOptions()
            options.ba_refine_focal_length = False
            options.ba_refine_principal_point = False
            options.ba_refine_extra_params = False
            options.mapper.abs_pose_refine_focal_length = False
            options.mapper.abs_pose_refine_extra_params = False
            options.mapper.init_min_tri_angle = float(settings["init_min_tri_angle"])
            options.multiple_models = False
            options.min_model_size = 3
            options.init_num_trials = 50
            options.max_runtime_seconds = int(settings["max_map_seconds"])
            options.num_threads = threads
            placed = [0]

            def next_image(placed=placed) -> None:
                placed[0] += 1
                report("placing frames", min(placed[0], len(names)), len(names))

            models = pycolmap.incremental_mapping(database, images, output, options, next_image_callback=next_image)
        else:
            options = pycolmap.GlobalPipelineOptions()
            options.multiple_models = False
            options.num_threads = threads
            adjustment = options.mapper.bundle_adjustment
            adjustment.refine_focal_length = False
            adjustment.refine_principal_point = False
            adjustment.refine_extra_params = False
            models = pycolmap.global_mapping(database, images, output, options)
        times[f"placing ({mapper})"] = time.perf_counter() - start
        best = max(models.values(), key=lambda model: model.num_reg_images()) if models else None
        attempts.append({"mapper": mapper, "registered": best.num_reg_images() if best else 0})
        if best is not None and (reconstruction is None or best.num_reg_images() > reconstruction.num_reg_images()):
            reconstruction, method = best, mapper
        if reconstruction is not None and reconstruction.num_reg_images() >= wanted:
            break
        report("placing frames", 0, len(names))

    arrays = {"names": np.array([], dtype=str), "rotations": np.zeros((0, 3, 3)), "translations": np.zeros((0, 3)),
              "centers": np.zeros((0, 3)), "points": np.zeros((0, 3)), "obs_counts": np.zeros(0, np.int64),
              "obs_xy": np.zeros((0, 2), np.float32), "obs_xyz": np.zeros((0, 3)),
              "obs_ids": np.zeros(0, np.int64)}  # fmt: skip
    error = None
    if reconstruction is not None:
        placed_images = sorted((image for image in reconstruction.images.values() if image.has_pose),
                               key=lambda image: image.name)
        poses = [image.cam_from_world() for image in placed_images]
        rotations = np.array([pose.rotation.matrix() for pose in poses]).reshape(-1, 3, 3)
        translations = np.array([np.asarray(pose.translation) for pose in poses]).reshape(-1, 3)
        arrays.update(names=np.array([image.name for image in placed_images]), rotations=rotations,
                      translations=translations, centers=-np.einsum("nji,nj->ni", rotations, translations))
        arrays["points"] = _good_points(reconstruction, int(settings["max_points"]))
        arrays.update(_observations(reconstruction, placed_images, int(settings["max_observations"])))
        error = float(reconstruction.compute_mean_reprojection_error())
    figures = {"method": method, "features": features, "pairs": pairs, "cameras": cameras,
               "pycolmap": pycolmap.__version__,
               "mean_reprojection_px": None if error is None else round(error, 4), "mapper_attempts": attempts,
               "times": times}  # fmt: skip
    return figures, arrays


def _good_points(reconstruction, limit: int) -> np.ndarray:
    """The reconstruction's points seen in at least 3 images with a reprojection error under 2 px, at most
    `limit` of them (the longest tracks first)."""
    rows = [(point.track.length(), point.error, point.xyz) for point in reconstruction.points3D.values()]
    rows = [row for row in rows if row[0] >= 3 and row[1] < 2.0]
    rows.sort(key=lambda row: (-row[0], row[1]))
    return np.array([row[2] for row in rows[:limit]], dtype=np.float64).reshape(-1, 3)


def _observations(reconstruction, placed_images, limit: int) -> dict[str, np.ndarray]:
    """Per placed image (in `placed_images`' order), its 2D observations that have a 3D point seen in at least
    3 images with an error under 2 px, at most `limit` (the longest tracks, then the lowest errors, first):
    obs_counts (images,), obs_xy (N, 2) in the image's pixels (COLMAP's convention), obs_xyz (N, 3) and
    obs_ids (N,) of their points, image after image."""
    quality = {}
    for point_id, point in reconstruction.points3D.items():
        length, error = point.track.length(), point.error
        if length >= 3 and error < 2.0:
            quality[point_id] = (length, error, point.xyz)
    counts, xys, xyzs, ids = [], [], [], []
    for image in placed_images:
        rows = []
        for point2d in image.get_observation_points2D():
            found = quality.get(point2d.point3D_id)
            if found is not None:
                rows.append((-found[0], found[1], point2d.point3D_id, point2d.xy, found[2]))
        rows.sort(key=lambda row: (row[0], row[1]))
        rows = rows[:limit]
        counts.append(len(rows))
        ids.extend(row[2] for row in rows)
        xys.extend(row[3] for row in rows)
        xyzs.extend(row[4] for row in rows)
    return {"obs_counts": np.array(counts, np.int64), "obs_xy": np.array(xys, np.float32).reshape(-1, 2),
            "obs_xyz": np.array(xyzs, np.float64).reshape(-1, 3), "obs_ids": np.array(ids, np.int64)}
