"""The real-network take (MediaPipe Pose on the lab clip) and the figures the solve must reach on it (issue 10),
plus the CMU exactness measures; shared by the engine tests and tools/solve_figures.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from instanthmr_blender.solve import SolveOptions, forward_kinematics, solve_take
from instanthmr_blender.solve.quality import Figures, figures
from instanthmr_blender.solve.skeleton import MHR70_INDEX
from instanthmr_blender.take import Take, load_take

REALNET_RELATIVE_PATH = Path("realnet") / "one_person_lab.mediapipe.take.npz"
_PER_FRAME = ("valid", "score", "bbox", "joints_cam", "cam_trans", "joints_2d", "mhr_params", "shape_params")
_LOWER_BODY = {"left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_big_toe_tip",
               "left_small_toe_tip", "left_heel", "right_big_toe_tip", "right_small_toe_tip", "right_heel"}  # fmt: skip


def frame_columns(take: Take, columns) -> Take:
    """The take with only the given frame columns (indices or a slice), in order."""
    out = copy.copy(take)
    out.frames = take.frames[columns]
    for name in _PER_FRAME:
        setattr(out, name, getattr(take, name)[:, columns])
    return out


def every_nth(take: Take, step: int) -> Take:
    """The take with every `step`-th frame column (a 60 fps take at step 2 is a 30 fps take)."""
    return frame_columns(take, slice(None, None, step))


def realnet_take(fixtures_dir: Path, step: int = 1) -> Take:
    """The 60 fps real-network take, every `step`-th frame."""
    return every_nth(load_take(Path(fixtures_dir) / REALNET_RELATIVE_PATH), step)


def realnet_figures(take: Take, solution, track: int = 0) -> Figures:
    """The issue's figures for one track of a solved take (quality.figures against the take's own input)."""
    person = next(p for p in solution.persons if p.track_id == int(take.track_ids[track]))
    joints = np.where(take.valid[track][:, None, None], take.joints_cam[track].astype(np.float64), np.nan)
    image = np.where(take.valid[track][:, None, None], take.joints_2d[track].astype(np.float64), np.nan)
    fps = take.fps / max(1.0, float(np.median(np.diff(take.frames)))) if take.num_frames > 1 else take.fps
    return figures(person, joints, image, solution.camera_matrix_world, fps, take.focal_length, take.principal_point)


def compress_spine(joints_cam: np.ndarray, metres: float) -> np.ndarray:
    """(F, 70, 3) with everything above the hips moved towards them along the hips-to-neck line by a ramp from
    0 (first frame) to `metres` (last frame): a spine compressing as on a ladder climb."""
    joints = np.array(joints_cam, dtype=np.float64, copy=True)
    hips = 0.5 * (joints[:, MHR70_INDEX["left_hip"]] + joints[:, MHR70_INDEX["right_hip"]])
    spine = joints[:, MHR70_INDEX["neck"]] - hips
    spine /= np.linalg.norm(spine, axis=-1, keepdims=True)
    ramp = np.linspace(0.0, metres, len(joints))[:, None]
    upper = [index for name, index in MHR70_INDEX.items() if name not in _LOWER_BODY]
    joints[:, upper] -= (ramp * spine)[:, None]
    return joints


def cmu_exactness(cmu, spine_compression: float = 0.0) -> float:
    """Mean distance (metres) of the rig's mapped bone ends from their keypoints, CMU take solved with
    smoothing, foot lock and symmetric lengths off (the clean stage on, as by default)."""
    take = copy.copy(cmu)
    take.joints_cam = compress_spine(cmu.joints_cam[0], spine_compression)[None].astype(np.float32)
    options = SolveOptions(smoothing="off", foot_lock=False, symmetric_lengths=False)
    person = solve_take(take, options).persons[0]
    heads, tails = forward_kinematics(person.rest, person.quats, person.root_location)
    distances = []
    for b in range(person.rest.num_bones):
        for ends, kp in ((heads, person.rest.mhr70_head[b]), (tails, person.rest.mhr70_tail[b])):
            if kp >= 0 and np.isfinite(person.keypoints_world[:, kp]).all():
                distances.append(np.linalg.norm(ends[:, b] - person.keypoints_world[:, kp], axis=1))
    return float(np.concatenate(distances).mean())
