"""The camera's motion over a take, between the take and the solve: whether the camera moved (motion.py,
from the background's motion with the people masked out), its path solved from the video's background with
COLMAP (colmap_solve.py; a pan from a fixed point as rotation only: pan.py), or read from a camera the user
already has; the result is a `CameraPath` (path.py) saved in the take. pycolmap is imported only inside the
solve (in a child process), so this package imports without it."""

from .colmap_solve import CameraSolveCancelled, CameraSolveError, SolveSettings, pycolmap_problem, solve_camera
from .motion import MotionDecision, decide_motion
from .pan import PanTest, pan_rotations, pan_test
from .path import CameraPath, CameraPathError, fill_unregistered

__all__ = [
    "CameraPath",
    "CameraPathError",
    "CameraSolveCancelled",
    "CameraSolveError",
    "MotionDecision",
    "PanTest",
    "SolveSettings",
    "decide_motion",
    "fill_unregistered",
    "pan_rotations",
    "pan_test",
    "pycolmap_problem",
    "solve_camera",
]
