"""CMU mocap 01_01 as a one-person take: ground-truth MHR70 keypoints in front of a camera (test helper).

Shared by the engine tests and the Blender tier. The BVH is Y up, the subject faces +Z with its left on
+X, 1 unit = 5.644 cm. The subject is placed facing the camera; only the keypoints a CMU joint maps onto
are filled (fingers, face, heels, small toes and acromions stay NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instanthmr_blender.solve.skeleton import MHR70_INDEX
from testkit.bvh import Bvh, keypoints_from_bvh, read_bvh

CMU_UNIT_METRES = 0.05644
CMU_RELATIVE_PATH = Path("mocap") / "cmu_01_01.bvh"

# CMU joint -> MHR70 keypoint. CMU's "Neck" (zero-length, at the top of Spine1) is the joint the clavicles
# hang from, so it stands in for MHR's neck keypoint; "Neck1" swings with the head and would make the
# clavicles change length. The toe base (ball of the foot) stands in for the big-toe tip.
CMU_TO_MHR70 = {
    "LeftUpLeg": MHR70_INDEX["left_hip"], "RightUpLeg": MHR70_INDEX["right_hip"],
    "LeftLeg": MHR70_INDEX["left_knee"], "RightLeg": MHR70_INDEX["right_knee"],
    "LeftFoot": MHR70_INDEX["left_ankle"], "RightFoot": MHR70_INDEX["right_ankle"],
    "LeftToeBase": MHR70_INDEX["left_big_toe_tip"], "RightToeBase": MHR70_INDEX["right_big_toe_tip"],
    "LeftArm": MHR70_INDEX["left_shoulder"], "RightArm": MHR70_INDEX["right_shoulder"],
    "LeftForeArm": MHR70_INDEX["left_elbow"], "RightForeArm": MHR70_INDEX["right_elbow"],
    "LeftHand": MHR70_INDEX["left_wrist"], "RightHand": MHR70_INDEX["right_wrist"],
    "Neck": MHR70_INDEX["neck"],
}  # fmt: skip


@dataclass
class CmuTake:
    """Take-shaped arrays (the fields solve_take reads), one track.

    joints_cam: (1, F, 70, 3) metres, OpenCV camera axes; frames: (F,) BVH frame indices; fps: the source
    rate (as in a take: 120 for CMU), row_fps: the rate of the rows (fps / step); camera_from_bvh: (4, 4) the
    rigid map used (metres, BVH axes -> camera axes); floor_normal_cam
    (3,) and floor_offset: the true floor (BVH y = 0) in camera space, normal up.
    """

    joints_cam: np.ndarray
    frames: np.ndarray
    fps: float
    camera_from_bvh: np.ndarray
    floor_normal_cam: np.ndarray
    floor_offset: float
    image_size: tuple[int, int] = (1080, 1920)
    source: str = "cmu_01_01.bvh"
    track_ids: np.ndarray = field(default_factory=lambda: np.array([0], dtype=np.int64))

    @property
    def valid(self) -> np.ndarray:
        return np.all(np.isfinite(self.joints_cam[..., MHR70_INDEX["left_hip"], :]), axis=-1)

    @property
    def row_fps(self) -> float:
        return self.fps / (int(self.frames[1] - self.frames[0]) if len(self.frames) > 1 else 1)

    @property
    def focal_length(self) -> float:
        return math.hypot(*self.image_size)

    @property
    def principal_point(self) -> tuple[float, float]:
        return (self.image_size[1] / 2.0, self.image_size[0] / 2.0)

    def to_take(self):
        """A real `instanthmr_blender.take.Take` with these keypoints (other per-person fields stay NaN)."""
        from instanthmr_blender.take import Take

        take = Take.empty(
            1, self.frames, fps=self.fps, image_size=self.image_size, focal_length=self.focal_length,
            principal_point=self.principal_point, track_ids=self.track_ids, source=self.source,
        )  # fmt: skip
        take.joints_cam[:] = self.joints_cam
        take.valid[:] = self.valid
        return take


_BVH_CACHE: dict[Path, Bvh] = {}


def load_cmu(fixtures_dir: Path) -> Bvh:
    path = Path(fixtures_dir) / CMU_RELATIVE_PATH
    if path not in _BVH_CACHE:
        _BVH_CACHE[path] = read_bvh(path)
    return _BVH_CACHE[path]


def cmu_take(
    fixtures_dir: Path,
    *,
    step: int = 4,
    start: int = 0,
    stop: int | None = None,
    distance: float = 4.5,
    camera_height: float = 1.2,
    pitch_degrees: float = 8.0,
) -> CmuTake:
    """CMU 01_01 every `step`-th frame (step 4 = 30 fps), the subject starting `distance` metres in front of
    a camera `camera_height` metres above the floor, pitched down by `pitch_degrees`."""
    bvh = load_cmu(fixtures_dir)
    frames = np.arange(start, bvh.num_frames if stop is None else stop, step)
    keypoints = keypoints_from_bvh(bvh, CMU_TO_MHR70, scale=CMU_UNIT_METRES, frames=frames)
    # Camera-level frame first: subject faces the camera, its left on the image right, floor (y=0) below.
    to_camera = np.diag([1.0, -1.0, -1.0])
    hips = 0.5 * (keypoints[0, MHR70_INDEX["left_hip"]] + keypoints[0, MHR70_INDEX["right_hip"]])
    shift = np.array([-hips[0], camera_height, 0.0]) + np.array([0.0, 0.0, distance]) - to_camera @ [0, 0, hips[2]]
    pitch = math.radians(pitch_degrees)
    # Pitching the camera down by `pitch` rotates the world up about the camera x axis.
    tilt = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    rotation = tilt @ to_camera
    translation = tilt @ shift
    joints = keypoints @ rotation.T + translation
    camera_from_bvh = np.eye(4)
    camera_from_bvh[:3, :3], camera_from_bvh[:3, 3] = rotation, translation
    normal = rotation @ np.array([0.0, 1.0, 0.0])
    offset = float(normal @ translation)
    return CmuTake(
        joints_cam=joints[None].astype(np.float32),
        frames=frames.astype(np.int64),
        fps=bvh.fps,
        camera_from_bvh=camera_from_bvh,
        floor_normal_cam=normal,
        floor_offset=offset,
    )
