"""Helpers for real-Blender tests of captures: the add-on's own modules, takes from fixtures, evaluation."""

from importlib import import_module
from pathlib import Path

import bpy
import numpy as np

from testkit.model_folder import make_models  # noqa: F401  (the tests import it from here)

SAM3D_FOCAL = 2535.27
SAM3D_SIZE = (890, 1920)
SAM3D_PRINCIPAL = (960.0, 445.0)
# The round-trip checks: no smoothing, no foot locking, and each side's own bone lengths (the CMU subject's
# left and right limbs differ by millimetres, which symmetric lengths would average away).
EXACT = dict(smoothing="off", foot_lock=False, symmetric_lengths=False)


class AddonApi:
    """The add-on's own modules (the installed copy, as users run it), by short name."""

    def __init__(self, addon_module):
        base = addon_module.__name__
        self.take = import_module(base + ".instanthmr_blender.take")
        self.solve = import_module(base + ".instanthmr_blender.solve")
        self.build = import_module(base + ".scene.build")
        self.actions = import_module(base + ".scene.actions")
        self.naming = import_module(base + ".scene.naming")
        self.export = import_module(base + ".scene.export")
        self.workflow = import_module(base + ".scene.workflow")
        self.quality = import_module(base + ".scene.quality")


def fresh_scene():
    bpy.ops.wm.read_homefile(use_empty=True)
    return bpy.context.scene


def take_from_cmu(api, cmu, tmp_path: Path):
    """The CMU keypoints as a real take, saved and loaded back (the contract between engine and Blender)."""
    take = api.take.Take.empty(1, cmu.frames, fps=cmu.fps, image_size=cmu.image_size,
                               focal_length=cmu.focal_length, principal_point=cmu.principal_point,
                               track_ids=np.array([0]))
    take.joints_cam[:] = cmu.joints_cam
    take.valid[:] = cmu.valid
    path = api.take.save_take(take, tmp_path / "cmu.npz")
    return api.take.load_take(path)


def camera_to_world(camera, points_cam: np.ndarray) -> np.ndarray:
    """The world contract: camera.matrix_world @ (x, -y, -z) for each camera-space point (..., 3)."""
    matrix = np.array(camera.matrix_world)
    flipped = points_cam * np.array([1.0, -1.0, -1.0])
    return flipped @ matrix[:3, :3].T + matrix[:3, 3]


def evaluated_joints(rig, scene, scene_frame: int):
    """World heads and tails of every pose bone at a frame, as Blender evaluates them. (B, 3) each."""
    scene.frame_set(scene_frame)
    world = np.array(rig.matrix_world)
    heads = np.array([tuple(pb.head) for pb in rig.pose.bones])
    tails = np.array([tuple(pb.tail) for pb in rig.pose.bones])
    return heads @ world[:3, :3].T + world[:3, 3], tails @ world[:3, :3].T + world[:3, 3]


def bone_keypoints(rig, api):
    heads = np.array([b[api.naming.PROP_MHR70_HEAD] for b in rig.data.bones])
    tails = np.array([b[api.naming.PROP_MHR70_TAIL] for b in rig.data.bones])
    return heads, tails


def rig_errors(rig, camera, scene, take, api, rows):
    """Position errors (m) of every bone end that is a keypoint, and direction errors (degrees) of every bone
    whose two ends are keypoints, over the given take rows."""
    kp_heads, kp_tails = bone_keypoints(rig, api)
    positions, directions = [], []
    for row in rows:
        target = camera_to_world(camera, take.joints_cam[0, row].astype(float))
        heads, tails = evaluated_joints(rig, scene, int(take.frames[row]) + 1)
        for ends, kps in ((heads, kp_heads), (tails, kp_tails)):
            use = (kps >= 0) & np.isfinite(target[np.maximum(kps, 0)]).all(axis=1)
            positions.extend(np.linalg.norm(ends[use] - target[kps[use]], axis=1))
        both = (kp_heads >= 0) & (kp_tails >= 0)
        known = np.isfinite(target).all(axis=1)
        both &= known[np.maximum(kp_heads, 0)] & known[np.maximum(kp_tails, 0)]
        want = target[kp_tails[both]] - target[kp_heads[both]]
        got = tails[both] - heads[both]
        cos = np.sum(want * got, 1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1))
        directions.extend(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return np.array(positions), np.array(directions)


def sam3d_take(api, fixtures_dir):
    files = sorted((fixtures_dir / "sam3d").glob("img_subj*.npz"))
    take = api.take.Take.empty(len(files), np.array([0]), fps=30.0, image_size=SAM3D_SIZE,
                               focal_length=SAM3D_FOCAL, principal_point=SAM3D_PRINCIPAL,
                               track_ids=np.arange(len(files)))
    for track, path in enumerate(files):
        data = np.load(path)
        take.joints_cam[track, 0] = data["pred_keypoints_3d"] + data["pred_cam_t"]
        take.cam_trans[track, 0] = data["pred_cam_t"]
        take.joints_2d[track, 0] = data["pred_keypoints_2d"]
        take.mhr_params[track, 0] = data["mhr_model_params"]
        take.shape_params[track, 0] = data["shape_params"]
        take.bbox[track, 0] = data["bbox"]
        take.valid[track, 0] = True
    return take

