"""A rendered test clip with a known camera and a known person: CMU 01_01 as capsules in a textured scene (test helper).

`rendered_case(kind)` gives three files, rendered once and cached under `<repo>/.test-cache/handheld/`:
- `clip.mp4`: 640x360, 30 fps, 150 frames (OpenCV `mp4v`), rendered by real Blender (bpy, Cycles on the CPU,
  seeded, few samples, no denoiser): a large textured ground (z = 0, Z up, metres), textured boxes and walls
  2-15 m away for parallax, a plain sky, and the CMU mocap person (hops forward) drawn as magenta capsules;
- `take.npz`: the take InstantHMR would give for the clip, made from the mocap through the true camera, with
  seeded noise: a smooth depth error of the whole body along the camera ray (plus per-frame jitter), per-keypoint
  3D noise, pixel noise on the 2D keypoints;
- `truth.npz`: `camera_world` (F, 4, 4) world-from-camera with OpenCV camera axes (x right, y down, z forward),
  `joints_world` (F, 70, 3), `joints_cam_true` (F, 70, 3), `head_world` (F, 3) (the head sphere's centre: CMU has
  no MHR head keypoint), `focal_length`, `principal_point`, `fps`, `kind`, `image_size` (H, W), `depth_error` (F,)
  (the relative depth error put into the take), `bvh_frames` (F,).

Kinds of camera: "handheld" (the operator walks ~3 m alongside the person, aiming at them, with hand shake and
walking bob), "pan" (a tripod: fixed centre, yaw and slight pitch follow the person), "still" (no motion).

Pinhole intrinsics are exact in OpenCV's pixel convention (pixel centres at whole numbers): f = 0.8 W px,
principal point (W/2, H/2). Blender puts the optical axis at the middle of the image area, which is (W-1)/2 in
that convention, so the camera is shifted by half a pixel (see `_camera_shift`).

The render runs in a subprocess (`python -m testkit.handheld_clip render --kind K --out DIR`) so the caller never
imports bpy. That subprocess may be any Python with bpy (4.2 .. 5.2); without OpenCV it leaves PNG frames that the
caller encodes.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
KINDS = ("handheld", "pan", "still")
DEFAULT_CACHE = REPO_ROOT / ".test-cache" / "handheld"
_FILES = ("clip.mp4", "take.npz", "truth.npz")
_DONE = "done.json"

# The person: CMU 01_01 (120 fps), frame 0 is the T-pose, every 4th frame after it = 30 fps.
BVH_START = 1
BVH_STEP = 4
SEED = 20240611
AMBIENT = 0.3  # the sky's light on every surface, as a share of its colour
PERSON_COLOUR = (0.85, 0.03, 0.55)  # magenta: no background colour is near it (hue ~ 160 on OpenCV's 0..180)
TAKE_SCORE = 0.9
CAM_TRANS_OFFSET = (0.0, 0.906, 0.0)  # MHR rig origin below the pelvis, camera axes (as testkit/realnet_take)


@dataclass(frozen=True)
class ClipParams:
    """Everything that decides the files (part of the cache key)."""

    kind: str = "handheld"
    frames: int = 150
    width: int = 640
    height: int = 360
    fps: float = 30.0
    samples: int = 4
    seed: int = SEED
    depth_error_std: float = 0.03  # smooth relative depth error of the whole body
    depth_error_seconds: float = 0.7  # its correlation time
    depth_jitter_std: float = 0.01  # per-frame relative depth jitter on top
    keypoint_noise_m: float = 0.015  # per-axis 3D noise of each keypoint
    pixel_noise_px: float = 1.5  # per-axis 2D noise of each keypoint

    @property
    def focal_length(self) -> float:
        return 0.8 * self.width

    @property
    def principal_point(self) -> tuple[float, float]:
        return (self.width / 2.0, self.height / 2.0)


@dataclass(frozen=True)
class HandheldCase:
    kind: str
    clip: Path
    take: Path
    truth: Path


# ---------------------------------------------------------------------------------------------------------------
# The person


def fixtures_dir() -> Path:
    return Path(os.environ.get("INSTANTHMR_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))


# World from BVH: BVH is Y up, the subject faces +Z (its left +X); the world is Z up: (x, y, z) -> (-x, z, y).
_WORLD_FROM_BVH = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


@dataclass
class Person:
    joints: np.ndarray  # (F, 70, 3) world metres, NaN where CMU has no joint
    head: np.ndarray  # (F, 3) head sphere centre
    bvh_frames: np.ndarray  # (F,)

    @property
    def pelvis(self) -> np.ndarray:
        from instanthmr_blender.solve.skeleton import MHR70_INDEX

        return 0.5 * (self.joints[:, MHR70_INDEX["left_hip"]] + self.joints[:, MHR70_INDEX["right_hip"]])


def person_world(frames: int) -> Person:
    """The mocap person in the world: floor (BVH y = 0) at z = 0, the first pelvis above the origin."""
    from testkit.bvh import keypoints_from_bvh
    from testkit.cmu_take import CMU_TO_MHR70, CMU_UNIT_METRES, load_cmu

    bvh = load_cmu(fixtures_dir())
    bvh_frames = BVH_START + BVH_STEP * np.arange(frames)
    if bvh_frames[-1] >= bvh.num_frames:
        raise ValueError(f"{frames} frames at step {BVH_STEP} run past the mocap's {bvh.num_frames} frames")
    keypoints = keypoints_from_bvh(bvh, CMU_TO_MHR70, scale=CMU_UNIT_METRES, frames=bvh_frames)
    positions = bvh.world_positions(bvh_frames) * CMU_UNIT_METRES
    head_base, head_top = positions[:, bvh.joint_index("Head")], positions[:, bvh.joint_index("Head_end")]
    head = head_base + 0.6 * (head_top - head_base)
    joints = keypoints @ _WORLD_FROM_BVH.T
    head = head @ _WORLD_FROM_BVH.T
    _add_heels(joints)
    origin = np.nanmean(joints[0], axis=0) * np.array([1.0, 1.0, 0.0])
    return Person(joints - origin, head - origin, bvh_frames)


#: MHR70's heel keypoint sits on the skin under the heel, ~1.2 cm over the floor of a standing foot (measured on
#: the SAM 3D Body fixtures: lowest foot keypoint against lowest mesh vertex); CMU has no heel and its lowest foot
#: joints (ankle ~10 cm, ball ~6.5 cm) stand far higher. The heel is placed below and behind the ankle so the take's
#: feet touch the floor as a real network's do (it is not drawn: the render shows the CMU joints' capsules).
HEEL_BELOW_ANKLE = 0.09
HEEL_BEHIND_ANKLE = 0.03


def _add_heels(joints: np.ndarray) -> None:
    from instanthmr_blender.solve.skeleton import MHR70_INDEX

    for side in ("left", "right"):
        ankle, toe = joints[:, MHR70_INDEX[f"{side}_ankle"]], joints[:, MHR70_INDEX[f"{side}_big_toe_tip"]]
        forward = (toe - ankle) * np.array([1.0, 1.0, 0.0])
        forward /= np.linalg.norm(forward, axis=1, keepdims=True)
        joints[:, MHR70_INDEX[f"{side}_heel"]] = (ankle - HEEL_BEHIND_ANKLE * forward
                                                  - np.array([0.0, 0.0, HEEL_BELOW_ANKLE]))  # fmt: skip


def person_shapes() -> tuple[list[tuple[str, str, float]], list[tuple[str, float]]]:
    """(bones as (keypoint a, keypoint b, radius), joint spheres as (keypoint, radius)); "pelvis" = hip midpoint,
    "head" = the head centre."""
    bones = [("left_hip", "right_hip", 0.07), ("pelvis", "neck", 0.11), ("neck", "head", 0.05),
             ("neck", "left_shoulder", 0.06), ("neck", "right_shoulder", 0.06)]  # fmt: skip
    for side in ("left", "right"):
        bones += [(f"{side}_hip", f"{side}_knee", 0.07), (f"{side}_knee", f"{side}_ankle", 0.06),
                  (f"{side}_ankle", f"{side}_big_toe_tip", 0.05), (f"{side}_shoulder", f"{side}_elbow", 0.055),
                  (f"{side}_elbow", f"{side}_wrist", 0.05)]  # fmt: skip
    spheres: dict[str, float] = {}
    for a, b, radius in bones:
        for name in (a, b):
            spheres[name] = max(spheres.get(name, 0.0), radius)
    spheres["head"] = 0.11
    return bones, sorted(spheres.items())


def _named_point(person: Person, name: str) -> np.ndarray:
    from instanthmr_blender.solve.skeleton import MHR70_INDEX

    if name == "pelvis":
        return person.pelvis
    if name == "head":
        return person.head
    return person.joints[:, MHR70_INDEX[name]]


# ---------------------------------------------------------------------------------------------------------------
# The camera


def _smooth(values: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing along axis 0, edges padded with the end values."""
    if sigma_frames <= 0:
        return values.copy()
    radius = int(math.ceil(3 * sigma_frames))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([np.repeat(values[:1], radius, 0), values, np.repeat(values[-1:], radius, 0)])
    out = np.empty_like(values, dtype=np.float64)
    flat_in = padded.reshape(padded.shape[0], -1)
    flat_out = out.reshape(out.shape[0], -1)
    for column in range(flat_in.shape[1]):
        flat_out[:, column] = np.convolve(flat_in[:, column], kernel, mode="valid")
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_frames: float) -> np.ndarray:
    """Smooth Gaussian noise with unit standard deviation (white noise through a Gaussian kernel)."""
    radius = int(math.ceil(3 * sigma_frames))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= math.sqrt(float(np.sum(kernel**2)))
    white = rng.standard_normal((shape[0] + 2 * radius, *shape[1:])).reshape(shape[0] + 2 * radius, -1)
    out = np.stack([np.convolve(white[:, c], kernel, mode="valid") for c in range(white.shape[1])], axis=1)
    return out.reshape(shape)


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(3, 3) world-from-camera rotation, OpenCV camera axes, looking from `centre` at `target`, world Z up."""
    forward = target - centre
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def _rotation(axis_angles: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (Rodrigues)."""
    angle = float(np.linalg.norm(axis_angles))
    if angle < 1e-12:
        return np.eye(3)
    k = axis_angles / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def camera_path(kind: str, person: Person, params: ClipParams) -> np.ndarray:
    """(F, 4, 4) world-from-camera (OpenCV axes) for `kind`, aimed to keep the person centred."""
    frames, fps = len(person.bvh_frames), params.fps
    pelvis = person.pelvis
    # Aim at a smoothed point of the body (no one follows every hop), a little below the pelvis.
    target = _smooth(pelvis, 0.4 * fps)
    target[:, 2] = 0.85 + 0.4 * (target[:, 2] - np.mean(target[:, 2]))
    middle = np.mean(target, axis=0)
    rng = np.random.default_rng(params.seed + 1 + KINDS.index(kind))
    centres = np.empty((frames, 3))
    rotations = np.empty((frames, 3, 3))
    if kind == "still":
        centre = middle + np.array([4.6, -1.0, 0.0])
        centre[2] = 1.5
        centres[:] = centre
        rotations[:] = look_at(centre, middle)
    elif kind == "pan":
        centre = middle + np.array([3.9, 0.0, 0.0])
        centre[2] = 1.45
        centres[:] = centre
        for i in range(frames):
            rotations[i] = look_at(centre, target[i])
    elif kind == "handheld":
        t = np.arange(frames) / fps
        duration = max(t[-1], 1e-9)
        start = np.array([4.2, -1.6, 1.5]) + middle * np.array([1.0, 1.0, 0.0])
        end = np.array([3.8, 1.4, 1.5]) + middle * np.array([1.0, 1.0, 0.0])
        # Slightly uneven walking speed (s stays monotonic), bob at the step rate, sway at half of it.
        progress = t / duration + 0.015 * np.sin(2 * math.pi * t / duration)
        centres = start + (end - start) * progress[:, None]
        step_hz = 1.8
        walk_dir = (end - start) / np.linalg.norm(end - start)
        side = np.cross([0.0, 0.0, 1.0], walk_dir)
        centres[:, 2] += 0.02 * np.sin(2 * math.pi * step_hz * t)
        centres += 0.012 * np.sin(math.pi * step_hz * t)[:, None] * side
        centres += 0.015 * _smooth_noise(rng, (frames, 3), 0.15 * fps)  # hand shake, ~1.5 cm
        shake = np.radians(0.8) * _smooth_noise(rng, (frames, 3), 0.1 * fps)  # ~0.8 deg per axis
        shake[:, 2] += np.radians(0.6) * np.sin(math.pi * step_hz * t)  # roll with the steps
        shake[:, 0] += np.radians(0.4) * np.sin(2 * math.pi * step_hz * t + 0.5)  # pitch with the bob
        for i in range(frames):
            rotations[i] = look_at(centres[i], target[i]) @ _rotation(shake[i])
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    out = np.tile(np.eye(4), (frames, 1, 1))
    out[:, :3, :3], out[:, :3, 3] = rotations, centres
    return out


def to_camera(camera_world: np.ndarray, points_world: np.ndarray) -> np.ndarray:
    """(F, N, 3) world points -> camera space (OpenCV axes) with the per-frame (F, 4, 4) world-from-camera."""
    rotation, centre = camera_world[:, :3, :3], camera_world[:, :3, 3]
    return np.einsum("fji,fnj->fni", rotation, points_world - centre[:, None])


def project(points_cam: np.ndarray, focal: float, principal: tuple[float, float]) -> np.ndarray:
    return focal * points_cam[..., :2] / points_cam[..., 2:3] + np.asarray(principal)


# ---------------------------------------------------------------------------------------------------------------
# Truth and take


def make_truth(params: ClipParams) -> dict[str, np.ndarray]:
    person = person_world(params.frames)
    camera_world = camera_path(params.kind, person, params)
    joints_cam = to_camera(camera_world, person.joints)
    centre_px = project(to_camera(camera_world, person.pelvis[:, None]), params.focal_length, params.principal_point)
    off_centre = np.abs(centre_px[:, 0] - np.asarray(params.principal_point)) / np.array([params.width, params.height])
    if np.any(off_centre > 0.3):
        raise AssertionError(f"{params.kind}: the person leaves the middle of the frame ({off_centre.max():.2f})")
    return {
        "camera_world": camera_world,
        "joints_world": person.joints,
        "joints_cam_true": joints_cam,
        "head_world": person.head,
        "bvh_frames": person.bvh_frames.astype(np.int64),
        "focal_length": np.array(params.focal_length),
        "principal_point": np.array(params.principal_point),
        "image_size": np.array([params.height, params.width], dtype=np.int64),
        "fps": np.array(params.fps),
        "kind": np.array(params.kind),
    }


def make_take(truth: dict[str, np.ndarray], params: ClipParams, source: str):
    """The noisy InstantHMR-like take for the truth (returns the Take and the relative depth error (F,))."""
    from instanthmr_blender.solve.skeleton import MHR70_INDEX
    from instanthmr_blender.take import Take

    rng = np.random.default_rng(params.seed + 100 + KINDS.index(params.kind))
    joints = truth["joints_cam_true"]
    frames = joints.shape[0]
    focal, principal = params.focal_length, params.principal_point
    root = 0.5 * (joints[:, MHR70_INDEX["left_hip"]] + joints[:, MHR70_INDEX["right_hip"]])
    # (a) the whole body slides along the ray through the root: root -> (1 + e) root.
    smooth = _smooth_noise(rng, (frames,), params.depth_error_seconds * params.fps / 2.0)
    smooth = params.depth_error_std * (smooth - smooth.mean()) / smooth.std()  # exactly the asked spread
    depth_error = smooth + params.depth_jitter_std * rng.standard_normal(frames)
    noisy = joints + depth_error[:, None, None] * root[:, None]
    # (b) per-keypoint 3D noise.
    noisy = noisy + params.keypoint_noise_m * rng.standard_normal(joints.shape)
    image = project(joints, focal, principal) + params.pixel_noise_px * rng.standard_normal((*joints.shape[:2], 2))

    clean_px = project(joints, focal, principal)
    low, high = np.nanmin(clean_px, axis=1), np.nanmax(clean_px, axis=1)
    grow = 0.05 * (high - low)
    head_margin = focal * 0.3 / root[:, 2]  # CMU has no head keypoint: the head is ~0.3 m above the neck
    bbox = np.concatenate([low - grow, high + grow], axis=1)
    bbox[:, 1] -= head_margin
    bbox[:, [0, 2]] = np.clip(bbox[:, [0, 2]], 0, params.width)
    bbox[:, [1, 3]] = np.clip(bbox[:, [1, 3]], 0, params.height)

    noisy_root = 0.5 * (noisy[:, MHR70_INDEX["left_hip"]] + noisy[:, MHR70_INDEX["right_hip"]])
    take = Take.empty(
        1, np.arange(frames), fps=params.fps, image_size=(params.height, params.width), focal_length=focal,
        principal_point=principal, track_ids=[0], source=source,
    )  # fmt: skip
    take.valid[:] = True
    take.score[:] = TAKE_SCORE
    take.bbox[0] = bbox
    take.joints_cam[0] = noisy
    take.joints_2d[0] = image
    take.cam_trans[0] = noisy_root + np.asarray(CAM_TRANS_OFFSET)
    take.mhr_params[:] = 0.0
    take.shape_params[:] = 0.0
    take.validate()
    return take, depth_error


# ---------------------------------------------------------------------------------------------------------------
# The scene (numbers only; bpy builds it in _render_frames)


Box = tuple[np.ndarray, np.ndarray, float]  # centre xyz, size xyz, yaw radians


def scene_boxes(paths: list[np.ndarray], person: Person, seed: int = SEED) -> list[Box]:
    """Boxes (centre xyz, size xyz, yaw radians) 2-15 m from the cameras, none between a camera and the person."""
    rng = np.random.default_rng(seed)
    middle = np.mean(person.pelvis, axis=0) * np.array([1.0, 1.0, 0.0])
    segments = [(p[:, :2, 3], person.pelvis[:, :2]) for p in paths]
    cameras = np.concatenate([p[:, :2, 3] for p in paths])
    boxes: list[Box] = []
    # Two long walls far behind the person and one at the side, then free-standing boxes.
    walls = [((-14.0, -3.0), (0.4, 12.0, 3.0), 0.1), ((-12.0, 9.0), (0.4, 9.0, 2.2), 0.9),
             ((2.0, -11.0), (10.0, 0.4, 2.6), 0.05)]  # fmt: skip
    for (x, y), size, yaw in walls:
        boxes.append((np.array([x + middle[0], y + middle[1], size[2] / 2]), np.array(size), yaw))
    tries = 0
    while len(boxes) < 17 and tries < 5000:
        tries += 1
        x, y = rng.uniform(-11.0, 3.5), rng.uniform(-9.0, 11.0)
        size = np.array([rng.uniform(0.5, 2.2), rng.uniform(0.5, 2.2), rng.uniform(0.4, 2.8)])
        centre = np.array([x, y]) + middle[:2]
        reach = 0.5 * math.hypot(size[0], size[1]) + 0.4
        distance = np.linalg.norm(cameras - centre, axis=1)
        if distance.min() < 2.0 or distance.min() > 15.0:
            continue
        if np.min(np.linalg.norm(person.pelvis[:, :2] - centre, axis=1)) < reach + 0.8:
            continue
        if any(_segment_distance(centre, a, b).min() < reach for a, b in segments):
            continue
        if any(np.linalg.norm(centre - other[0][:2]) < reach + 0.5 * np.linalg.norm(other[1][:2]) for other in boxes):
            continue
        boxes.append((np.array([centre[0], centre[1], size[2] / 2]), size, rng.uniform(0, math.pi)))
    return boxes


def _segment_distance(point: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from a 2D point to each segment a[i]-b[i]."""
    ab = b - a
    t = np.clip(np.einsum("ij,ij->i", point - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12), 0, 1)
    return np.linalg.norm(a + t[:, None] * ab - point, axis=1)


def _camera_shift(params: ClipParams) -> tuple[float, float]:
    """Blender lens shift that puts the principal point at (W/2, H/2) in OpenCV pixels (centres at integers).

    Blender's optical axis meets the image at the middle of the pixel area, OpenCV (W-1)/2: move it half a pixel
    right and down. Shift is in units of the larger image side; +x moves the view right (the axis left), +y moves
    the view up (the axis down).
    """
    larger = float(max(params.width, params.height))
    return (-0.5 / larger, 0.5 / larger)


# ---------------------------------------------------------------------------------------------------------------
# Blender


def _node_tree(idblock):
    if getattr(idblock, "node_tree", None) is None:
        idblock.use_nodes = True
    return idblock.node_tree


DETAIL_METRES = 30.0  # the detail texture's tile (the macro texture, 240 m, breaks its repetition)
MACRO_METRES = 240.0


def _periodic_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) smooth value noise of `cells` cells a side, bilinear, periodic (tiles without seams)."""
    grid = rng.random((cells, cells))
    u = np.arange(size) * cells / size
    low = np.floor(u).astype(int)
    weight = u - low
    W = np.zeros((size, cells))
    W[np.arange(size), low % cells] += 1 - weight
    W[np.arange(size), (low + 1) % cells] += weight
    return W @ grid @ W.T


def _mosaic(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) random values constant on square cells (sharp corners), periodic."""
    index = np.arange(size) * cells // size
    return rng.random((cells, cells))[np.ix_(index, index)]


def texture_images(seed: int = SEED, size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(detail (size, size), macro (256, 256)) float32 in [0, 1]: the ground's pattern, evaluated once here (an image
    lookup is far cheaper in Cycles than procedural noise per sample). Detail: two cell mosaics (0.3 m and 1.1 m)
    plus four octaves of value noise; macro: slow value noise."""
    rng = np.random.default_rng(seed)
    detail = 0.45 * _mosaic(rng, size, int(DETAIL_METRES / 0.3)) + 0.3 * _mosaic(rng, size, int(DETAIL_METRES / 1.1))
    for cells, amplitude in ((12, 0.5), (30, 0.35), (80, 0.25), (240, 0.15)):
        detail += amplitude * _periodic_noise(rng, size, cells)
    macro = _periodic_noise(rng, 256, 24) + 0.5 * _periodic_noise(rng, 256, 60)
    scale = lambda a: ((a - a.min()) / (a.max() - a.min())).astype(np.float32)  # noqa: E731
    return scale(detail), scale(macro)


def _image(bpy, name: str, values: np.ndarray):
    image = bpy.data.images.new(name, width=values.shape[1], height=values.shape[0], alpha=False)
    rgba = np.ones((*values.shape, 4), np.float32)
    rgba[..., :3] = values[..., None]
    image.pixels.foreach_set(rgba.ravel())
    image.update()
    image.pack()  # a generated image's edited pixels reach the renderer only once packed
    with contextlib.suppress(TypeError, AttributeError):
        image.colorspace_settings.name = "Non-Color"
    return image


def _textured_material(bpy, name: str, colours, images, offset: float, box: bool):
    """A high-contrast, non-repeating material: fract(2.5 detail + 1.5 macro + offset) through a stepped ramp of
    `colours`. Coordinates are the object's, in metres; `box` projects the images onto all six sides."""
    material = bpy.data.materials.new(name)
    tree = _node_tree(material)
    nodes, links = tree.nodes, tree.links
    for node in list(nodes):
        nodes.remove(node)
    coords = nodes.new("ShaderNodeTexCoord")
    total = None
    for image, metres, weight in zip(images, (DETAIL_METRES, MACRO_METRES), (2.5, 1.5)):
        mapping = nodes.new("ShaderNodeMapping")
        mapping.inputs["Scale"].default_value = (1.0 / metres,) * 3
        mapping.inputs["Location"].default_value = (offset * 0.37, offset * 0.61, 0.0)
        links.new(coords.outputs["Object"], mapping.inputs["Vector"])
        texture = nodes.new("ShaderNodeTexImage")
        texture.image = image
        texture.interpolation = "Linear"
        texture.extension = "REPEAT"
        if box:
            texture.projection = "BOX"
            texture.projection_blend = 0.0
        links.new(mapping.outputs["Vector"], texture.inputs["Vector"])
        scaled = nodes.new("ShaderNodeMath")
        scaled.operation = "MULTIPLY"
        links.new(texture.outputs["Color"], scaled.inputs[0])
        scaled.inputs[1].default_value = weight
        if total is None:
            total = scaled.outputs[0]
        else:
            added = nodes.new("ShaderNodeMath")
            added.operation = "ADD"
            links.new(total, added.inputs[0])
            links.new(scaled.outputs[0], added.inputs[1])
            total = added.outputs[0]
    fract = nodes.new("ShaderNodeMath")
    fract.operation = "FRACT"
    links.new(total, fract.inputs[0])
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.interpolation = "CONSTANT"
    elements = ramp.color_ramp.elements
    while len(elements) < len(colours):
        elements.new(0.5)
    for index, (element, colour) in enumerate(zip(elements, colours)):
        element.position = index / len(colours)
        element.color = (*colour, 1.0)
    links.new(fract.outputs[0], ramp.inputs["Fac"])
    _lit(nodes, links, ramp.outputs["Color"], None, AMBIENT)
    return material


def _lit(nodes, links, colour_socket, colour, ambient: float) -> bool:
    """Diffuse (the sun) plus an emission of the same colour (the sky's light, without sampling the sky)."""
    diffuse = nodes.new("ShaderNodeBsdfDiffuse")
    glow = nodes.new("ShaderNodeEmission")
    glow.inputs["Strength"].default_value = ambient
    for shader in (diffuse, glow):
        if colour_socket is not None:
            links.new(colour_socket, shader.inputs["Color"])
        else:
            shader.inputs["Color"].default_value = (*colour, 1.0)
    add = nodes.new("ShaderNodeAddShader")
    links.new(diffuse.outputs[0], add.inputs[0])
    links.new(glow.outputs[0], add.inputs[1])
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(add.outputs[0], output.inputs["Surface"])
    return True


def _person_material(bpy):
    material = bpy.data.materials.new("person")
    tree = _node_tree(material)
    nodes, links = tree.nodes, tree.links
    for node in list(nodes):
        nodes.remove(node)
    _lit(nodes, links, None, PERSON_COLOUR, 0.45)  # a little brighter: saturated even in shadow
    return material


def _mesh(bpy, name: str, vertices, faces, material):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([tuple(map(float, v)) for v in vertices], [], [tuple(map(int, f)) for f in faces])
    mesh.update()
    mesh.materials.append(material)
    return mesh


def _cylinder(segments: int = 16):
    """Unit cylinder: radius 1, z from 0 to 1."""
    angles = 2 * math.pi * np.arange(segments) / segments
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    vertices = [(x, y, 0.0) for x, y in ring] + [(x, y, 1.0) for x, y in ring]
    faces = [(i, (i + 1) % segments, segments + (i + 1) % segments, segments + i) for i in range(segments)]
    return vertices, faces


def _sphere(rings: int = 8, segments: int = 16):
    """Unit sphere."""
    vertices = [(0.0, 0.0, -1.0)]
    for r in range(1, rings):
        polar = math.pi * r / rings
        for s in range(segments):
            azimuth = 2 * math.pi * s / segments
            ring = math.sin(polar)
            vertices.append((ring * math.cos(azimuth), ring * math.sin(azimuth), -math.cos(polar)))
    vertices.append((0.0, 0.0, 1.0))
    top = len(vertices) - 1
    faces = [(0, 1 + (s + 1) % segments, 1 + s) for s in range(segments)]
    for r in range(rings - 2):
        base = 1 + r * segments
        for s in range(segments):
            following = (s + 1) % segments
            faces.append((base + s, base + following, base + segments + following, base + segments + s))
    last = 1 + (rings - 2) * segments
    faces += [(last + s, last + (s + 1) % segments, top) for s in range(segments)]
    return vertices, faces


def _box(size):
    sx, sy, sz = (0.5 * float(v) for v in size)
    vertices = [(x, y, z) for z in (-sz, sz) for y in (-sy, sy) for x in (-sx, sx)]
    faces = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]
    return vertices, faces


def _bone_matrix(a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    axis = b - a
    length = float(np.linalg.norm(axis))
    z = axis / max(length, 1e-9)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    out = np.eye(4)
    out[:3, :3] = np.stack([x * radius, y * radius, z * max(length, 1e-4)], axis=1)
    out[:3, 3] = a
    return out


def _render_frames(params: ClipParams, truth: dict[str, np.ndarray], person: Person, boxes, frame_dir: Path) -> None:
    """Render every frame to `frame_dir/00000.png` with Cycles on the CPU."""
    try:
        import bpy
        from mathutils import Matrix
    except ImportError as error:
        raise SystemExit(
            f"testkit.handheld_clip render needs Blender as a Python module (bpy); {sys.executable} has none ({error})"
        ) from None

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = params.samples
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 0  # direct light only: the sky's light is an emission term of each material
    scene.cycles.diffuse_bounces = 0
    scene.cycles.glossy_bounces = 0
    scene.cycles.transmission_bounces = 0
    scene.cycles.volume_bounces = 0
    scene.cycles.transparent_max_bounces = 0
    scene.cycles.caustics_reflective = False
    scene.cycles.caustics_refractive = False
    scene.render.use_persistent_data = True
    scene.render.resolution_x, scene.render.resolution_y = params.width, params.height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"

    world = bpy.data.worlds.new("sky")
    scene.world = world
    background = next(node for node in _node_tree(world).nodes if node.type == "BACKGROUND")
    background.inputs["Color"].default_value = (0.45, 0.62, 0.9, 1.0)
    background.inputs["Strength"].default_value = 1.0
    world.cycles.sampling_method = "NONE"  # seen, not sampled as a light (that is what makes it fast)

    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 3.2
    sun.data.angle = 0.0  # hard shadows: no sampling noise
    sun.rotation_euler = (math.radians(40.0), 0.0, math.radians(150.0))
    scene.collection.objects.link(sun)

    ground_colours = [(0.05, 0.05, 0.045), (0.75, 0.72, 0.6), (0.3, 0.28, 0.22), (0.9, 0.9, 0.88),
                      (0.12, 0.2, 0.08), (0.55, 0.45, 0.3), (0.02, 0.02, 0.02), (0.6, 0.62, 0.58)]  # fmt: skip
    detail, macro = texture_images(params.seed)
    images = (_image(bpy, "detail", detail), _image(bpy, "macro", macro))
    ground_material = _textured_material(bpy, "ground", ground_colours, images, 0.0, box=False)
    half = 120.0
    ground = bpy.data.objects.new(
        "ground", _mesh(bpy, "ground", [(-half, -half, 0), (half, -half, 0), (half, half, 0), (-half, half, 0)],
                        [(0, 1, 2, 3)], ground_material)
    )  # fmt: skip
    scene.collection.objects.link(ground)
    palettes = [
        [(0.08, 0.1, 0.2), (0.6, 0.65, 0.8), (0.25, 0.3, 0.45), (0.95, 0.95, 0.9), (0.02, 0.03, 0.05)],
        [(0.1, 0.18, 0.06), (0.7, 0.78, 0.5), (0.3, 0.4, 0.2), (0.92, 0.9, 0.8), (0.03, 0.05, 0.02)],
        [(0.35, 0.18, 0.05), (0.9, 0.7, 0.4), (0.55, 0.4, 0.25), (0.98, 0.95, 0.85), (0.06, 0.04, 0.02)],
        [(0.2, 0.2, 0.2), (0.8, 0.8, 0.75), (0.45, 0.45, 0.42), (0.04, 0.04, 0.04), (0.95, 0.95, 0.95)],
    ]
    box_materials = [
        _textured_material(bpy, f"box{i}", colours, images, 7.0 * (i + 1), box=True)
        for i, colours in enumerate(palettes)
    ]
    for index, (centre, size, yaw) in enumerate(boxes):
        vertices, faces = _box(size)
        obj = bpy.data.objects.new(f"box{index}", _mesh(bpy, f"box{index}", vertices, faces, box_materials[index % 4]))
        obj.location = tuple(map(float, centre))
        obj.rotation_euler = (0.0, 0.0, float(yaw))
        scene.collection.objects.link(obj)

    person_material = _person_material(bpy)
    bones, spheres = person_shapes()
    cylinder = _mesh(bpy, "bone", *_cylinder(), person_material)
    ball = _mesh(bpy, "ball", *_sphere(), person_material)
    bone_objects = []
    for a, b, radius in bones:
        obj = bpy.data.objects.new(f"bone_{a}_{b}", cylinder)
        scene.collection.objects.link(obj)
        bone_objects.append((obj, _named_point(person, a), _named_point(person, b), radius))
    sphere_objects = []
    for name, radius in spheres:
        obj = bpy.data.objects.new(f"ball_{name}", ball)
        scene.collection.objects.link(obj)
        sphere_objects.append((obj, _named_point(person, name), radius))

    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    camera.data.sensor_fit = "HORIZONTAL"
    camera.data.sensor_width = 36.0
    camera.data.lens = params.focal_length * 36.0 / params.width
    camera.data.shift_x, camera.data.shift_y = _camera_shift(params)
    camera.data.clip_start, camera.data.clip_end = 0.05, 400.0
    blender_from_opencv = np.diag([1.0, -1.0, -1.0, 1.0])

    frame_dir.mkdir(parents=True, exist_ok=True)
    for frame in range(params.frames):
        camera.matrix_world = Matrix((truth["camera_world"][frame] @ blender_from_opencv).tolist())
        for obj, a, b, radius in bone_objects:
            obj.matrix_world = Matrix(_bone_matrix(a[frame], b[frame], radius).tolist())
        for obj, points, radius in sphere_objects:
            matrix = np.diag([radius, radius, radius, 1.0])
            matrix[:3, 3] = points[frame]
            obj.matrix_world = Matrix(matrix.tolist())
        scene.cycles.seed = params.seed + frame
        scene.render.filepath = str(frame_dir / f"{frame:05d}.png")
        bpy.ops.render.render(write_still=True)


def encode_video(frame_dir: Path, clip: Path, fps: float, size: tuple[int, int]) -> None:
    """PNG frames -> `clip` (OpenCV mp4v); `size` is (W, H)."""
    import cv2

    paths = sorted(frame_dir.glob("*.png"))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v video to {clip}")
    try:
        for path in paths:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None or (image.shape[1], image.shape[0]) != size:
                raise RuntimeError(f"rendered frame {path} is missing or not {size[0]}x{size[1]}")
            writer.write(image)
    finally:
        writer.release()


def render_case(params: ClipParams, out: Path, source: str | None = None) -> dict:
    """Write truth.npz and the PNG frames into `out`, then `finish_case` (take.npz and clip.mp4) where this Python
    can (the take module needs OpenCV, which a Blender-only Python may lack; the caller then finishes)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth = make_truth(params)
    person = person_world(params.frames)
    all_paths = [camera_path(kind, person, params) for kind in KINDS]
    boxes = scene_boxes(all_paths, person, params.seed)
    np.savez_compressed(out / "truth.npz", **truth)
    started = time.perf_counter()
    _render_frames(params, truth, person, boxes, out / "frames")
    seconds = time.perf_counter() - started
    info = {"params": asdict(params), "render_seconds": round(seconds, 2), "boxes": len(boxes)}
    (out / "render.json").write_text(json.dumps(info, indent=1))
    if importlib.util.find_spec("cv2") is not None:
        finish_case(params, out, source)
    return info


def finish_case(params: ClipParams, out: Path, source: str | None = None) -> None:
    """Add what is missing of take.npz (from truth.npz, with its noise) and clip.mp4 (from the frames)."""
    from instanthmr_blender.take import save_take

    out = Path(out)
    if not (out / "take.npz").is_file():
        with np.load(out / "truth.npz") as archive:
            truth = {key: archive[key] for key in archive.files}
        take, depth_error = make_take(truth, params, source or str((out / "clip.mp4").absolute()))
        truth["depth_error"] = depth_error
        np.savez_compressed(out / "truth.npz", **truth)
        save_take(take, out / "take.npz")
    if not (out / "clip.mp4").is_file():
        encode_video(out / "frames", out / "clip.mp4", params.fps, (params.width, params.height))
        shutil.rmtree(out / "frames")


# ---------------------------------------------------------------------------------------------------------------
# The cache


def cache_key(params: ClipParams) -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(json.dumps(asdict(params), sort_keys=True).encode())
    return digest.hexdigest()[:12]


def _complete(folder: Path) -> bool:
    return (folder / _DONE).is_file() and all((folder / name).is_file() for name in _FILES)


def rendered_case(kind: str, cache_root: Path | None = None, params: ClipParams | None = None) -> HandheldCase:
    """The case for `kind`, from the cache when complete, else rendered (in a subprocess, under a lock)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    params = params or ClipParams(kind=kind)
    if params.kind != kind:
        raise ValueError(f"params are for {params.kind!r}, not {kind!r}")
    root = Path(cache_root) if cache_root is not None else DEFAULT_CACHE
    folder = root / f"{kind}-{cache_key(params)}"
    case = HandheldCase(kind, folder / "clip.mp4", folder / "take.npz", folder / "truth.npz")
    if _complete(folder):
        return case
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(folder):  # another process rendered it while this one waited
            return case
        if importlib.util.find_spec("bpy") is None:
            raise RuntimeError(
                f"rendering the {kind!r} test clip needs Blender as a Python module (bpy), and {sys.executable} "
                "has none: install the bpy wheel (tools/setup_venv.sh) or run with a Python that has it"
            )
        _render_into(folder, params)
    return case


def _render_into(folder: Path, params: ClipParams) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="handheld-blender-") as home:
            env = dict(os.environ)
            env.update({"BLENDER_USER_RESOURCES": str(Path(home) / "resources"),
                        "XDG_CACHE_HOME": str(Path(home) / "cache"), "PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
            command = [sys.executable, "-m", "testkit.handheld_clip", "render", "--kind", params.kind,
                       "--out", str(staging), "--frames", str(params.frames), "--width", str(params.width),
                       "--height", str(params.height), "--source", str((folder / "clip.mp4").absolute())]  # fmt: skip
            log = staging / "render.log"
            with open(log, "w") as stream:
                result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT)
            if result.returncode != 0:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"rendering the {params.kind!r} test clip failed ({result.returncode}):\n{tail}")
        finish_case(params, staging, str((folder / "clip.mp4").absolute()))  # if the renderer's Python could not
        (staging / _DONE).write_text(json.dumps({"key": cache_key(params)}))
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(staging, folder)
        for stale in folder.parent.glob(f"{params.kind}-*"):  # earlier generators' renders of this kind
            if stale != folder and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            if staging.exists():
                shutil.rmtree(staging)


# ---------------------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.handheld_clip", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="render one case into a folder")
    render.add_argument("--kind", choices=KINDS, default="handheld")
    render.add_argument("--out", type=Path, required=True)
    render.add_argument("--frames", type=int, default=ClipParams.frames)
    render.add_argument("--width", type=int, default=ClipParams.width)
    render.add_argument("--height", type=int, default=ClipParams.height)
    render.add_argument("--source", default=None, help="the clip path recorded in the take (default: OUT/clip.mp4)")
    args = parser.parse_args(argv)
    params = ClipParams(kind=args.kind, frames=args.frames, width=args.width, height=args.height)
    info = render_case(params, args.out, args.source)
    print(f"rendered {params.kind}: {params.frames} frames {params.width}x{params.height} in "
          f"{info['render_seconds']} s -> {args.out}")  # fmt: skip
    if not (args.out / "clip.mp4").is_file():
        print("this Python has no OpenCV: PNG frames in frames/, no take.npz or clip.mp4 (finish_case makes them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
