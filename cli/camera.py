"""The command line's camera-motion stage, between the take and the solve: the choice checked before any model
runs, then the camera's path from the user's scene camera (--camera-path), the take itself (a rebuild), or the
video's background (--camera-motion auto|solve), with its progress printed and Ctrl-C stopping it."""

import tempfile
import threading
import time

from ..instanthmr_blender.camera.choice import camera_for_take, check_mode
from ..instanthmr_blender.camera.colmap_solve import CameraSolveCancelled, CameraSolveError
from ..instanthmr_blender.camera.path import CameraPathError
from ..scene.build import scene_frames
from ..scene.camera_path import check_blend_camera, path_from_blend
from .blender_io import Interrupted, say

#: Bad camera input: exit status 2.
INPUT_ERRORS = (CameraSolveError, CameraPathError)


def check_arguments(args) -> None:
    """Before any model runs: the mode can work here, and a --camera-path file holds its object."""
    if args.camera_path:
        if args.camera_motion == "static":
            raise CameraPathError("--camera-path gives a moving camera: leave out --camera-motion static")
        check_blend_camera(args.camera_path)
    else:
        check_mode(args.camera_motion)


class _Progress:
    """The solve's stage and count, at most once a second."""

    def __init__(self) -> None:
        self.last, self.stage = 0.0, ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage == self.stage and now - self.last < 1.0 and done < total:
            return
        self.last, self.stage = now, stage
        say(f"camera: {stage} {done}/{total}" if total else f"camera: {stage}")


def add_camera_path(args, take, clip: str | None) -> bool:
    """Give the take its camera path as the options ask; True when the take gained one (to be saved again).
    Ctrl-C during the solve stops it (the child process is killed) and raises Interrupted."""
    if args.camera_path:
        take.camera_path = path_from_blend(args.camera_path, scene_frames(take.frames))
        say(f"camera: the path of {args.camera_path} ({take.num_frames} frames)")
        return True
    had = take.camera_path is not None
    if args.camera_motion == "static":
        if had:
            say("camera: the take's camera path is left unused (--camera-motion static)")
        return False
    cancel = threading.Event()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="instanthmr-camera-") as work:
        try:
            path = camera_for_take(args.camera_motion, clip, take, work_dir=work, log=say, progress=_Progress(),
                                   cancel=cancel)  # fmt: skip
        except KeyboardInterrupt:
            cancel.set()
            raise Interrupted("stopped during the camera solve") from None
        except CameraSolveCancelled:
            raise Interrupted("stopped during the camera solve") from None
    take.camera_path = path
    if path is not None and not had:
        say(f"camera: solved in {time.monotonic() - started:.1f} s")
    return path is not None and not had
