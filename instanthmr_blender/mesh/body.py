"""One person's body from the take: the identity (shape), the module's input, and MHR vertices placed in the
camera and in Blender world space.

Units and axes. The module returns vertices in cm, MHR-native axes (Y up, body facing +Z, +X the subject's
left); OpenCV camera axes are `(x, -y, -z) / 100`. The root translation `model_params[0:3]` is set to 0, so
the module gives the body around the MHR rig origin, and `cam_trans` (metres, camera axes) is added here in
float64: that is exactly how InstantHMR's `joints_3d + cam_trans` are placed, independent of the module's
translation units. World space is the rig's: `camera_to_world` of solve/ground.py. Identity is each person's
`shape_params`, median over the take's valid frames (one body shape, no flicker); expression is 0.
"""

from __future__ import annotations

import numpy as np

from .errors import MeshError

# Camera axes (x right, y down, z forward) from MHR-native axes, with cm -> m.
_MHR_TO_CAMERA = np.array([0.01, -0.01, -0.01])


def robust_identity(shape_params: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """One body shape for a person: the per-coefficient median over valid frames with finite values.

    shape_params: (F, 45) MHR identity coefficients; valid: (F,) bool -> (45,) float32. The median ignores
    the occasional outlier frame and, being one value for the whole take, the mesh cannot flicker.
    """
    shape_params = np.asarray(shape_params, np.float64)
    use = np.asarray(valid, bool) & np.isfinite(shape_params).all(axis=1)
    if not use.any():
        raise MeshError("this person has no frame with finite shape_params: the take holds no body shape")
    return np.median(shape_params[use], axis=0).astype(np.float32)


def model_parameters(mhr_params: np.ndarray) -> np.ndarray:
    """(F, 204) take `mhr_params` -> (F, 204) float32 module input: root translation [0:3] set to 0 (the
    placement comes from `cam_trans`, see the module docstring), everything else as the model gave it."""
    params = np.array(mhr_params, dtype=np.float32, copy=True)
    params[:, 0:3] = 0.0
    return params


def mhr_to_camera(verts_cm: np.ndarray, cam_trans: np.ndarray) -> np.ndarray:
    """(B, V, 3) body-centred module vertices (cm, MHR-native axes) + (B, 3) cam_trans (m, camera axes)
    -> (B, V, 3) float64 camera-space points (metres, OpenCV axes)."""
    return np.asarray(verts_cm, np.float64) * _MHR_TO_CAMERA + np.asarray(cam_trans, np.float64)[:, None, :]


def mhr_to_world(verts_cm: np.ndarray, cam_trans: np.ndarray, camera_matrix_world: np.ndarray) -> np.ndarray:
    """(B, V, 3) module vertices (cm, MHR-native) + (B, 3) cam_trans (m, camera axes) -> (B, V, 3) float32
    Blender world points (metres): the world contract `camera_to_world` of `mhr_to_camera`, folded.

    camera_to_world(p) = (p * (1, -1, -1)) @ R.T + t and p = v * (0.01, -0.01, -0.01) + c give
    world = v @ (0.01 R).T + ((c * (1, -1, -1)) @ R.T + t): one float32 product per vertex (6x faster than
    going through float64 camera points; float32 keeps 1e-6 m at 10 m), the per-frame offset in float64.
    """
    matrix = np.asarray(camera_matrix_world, np.float64)
    rotation = matrix[:3, :3]
    offsets = (np.asarray(cam_trans, np.float64) * np.array([1.0, -1.0, -1.0])) @ rotation.T + matrix[:3, 3]
    verts = np.asarray(verts_cm, np.float32)
    world = (verts.reshape(-1, 3) @ (0.01 * rotation.T).astype(np.float32)).reshape(verts.shape)
    world += offsets[:, None, :].astype(np.float32)
    return world
