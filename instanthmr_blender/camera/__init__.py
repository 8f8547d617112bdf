"""The camera's motion over a take, between the take and the solve: whether the camera moved (motion.py,
from the background's motion with the people masked out), its path solved from the video's background with
COLMAP (colmap_solve.py; a pan from a fixed point as rotation only: pan.py), or read from a camera the user
already has; the result is a `CameraPath` (path.py) saved in the take. choice.py is the one path the command
line and the panel take through these.

Only the path is imported here: the take reads and writes it, and must not pull in OpenCV or pycolmap; import
the other modules by name. pycolmap is imported only inside the solve (in a child process)."""

from .path import CameraPath, CameraPathError, fill_unregistered

__all__ = ["CameraPath", "CameraPathError", "fill_unregistered"]
