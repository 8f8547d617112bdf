"""The camera's motion over a take, between the take and the solve: whether the camera moved (motion.py,
from the background's motion with the people masked out), its path solved from the video's background with
COLMAP (colmap_solve.py; a pan from a fixed point as rotation only: pan.py), or read from a camera the user
already has; the result is a `CameraPath` (path.py) saved in the take."""

from .path import CameraPath, CameraPathError, fill_unregistered

__all__ = ["CameraPath", "CameraPathError", "fill_unregistered"]
