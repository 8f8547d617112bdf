"""A small BVH reader: joint hierarchy, offsets, channels and motion, and world joint positions per frame.

Used by the tests (CMU ground truth for the solve) and by users who want to turn a mocap file into
keypoints for a take. Positions stay in the file's units and axes; the caller scales and re-axes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instanthmr_blender.solve.rotations import axis_rotation

_ROTATION_CHANNELS = {"Xrotation": "X", "Yrotation": "Y", "Zrotation": "Z"}
_POSITION_CHANNELS = {"Xposition": 0, "Yposition": 1, "Zposition": 2}


class BvhError(ValueError):
    """A BVH file that cannot be read; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class BvhJoint:
    """One joint (or End Site) of the hierarchy.

    offset: (3,) float64, file units, relative to the parent in the parent's rest frame.
    channels: channel names in file order, e.g. ("Zrotation", "Yrotation", "Xrotation").
    channel_start: column of the first channel in `Bvh.motion`.
    """

    name: str
    parent: int
    offset: np.ndarray
    channels: tuple[str, ...]
    channel_start: int
    is_end_site: bool = False


@dataclass
class Bvh:
    """A parsed BVH file. motion: (F, C) float64, one row per frame, channels in file order, degrees for
    rotations and file units for positions."""

    joints: list[BvhJoint]
    frame_time: float
    motion: np.ndarray
    path: str = ""
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {joint.name: index for index, joint in enumerate(self.joints)}

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def joint_names(self) -> list[str]:
        return [joint.name for joint in self.joints]

    def joint_index(self, name: str) -> int:
        """Index of a joint by name; End Sites are named `<parent>_end`."""
        if name not in self._index:
            raise BvhError(f"`{self.path or 'BVH'}` has no joint named {name!r}; it has {self.joint_names}")
        return self._index[name]

    def local_rotations(self, frames: np.ndarray | slice | None = None) -> np.ndarray:
        """Per-joint local rotation matrices (F, J, 3, 3): the product of the rotation channels in file order
        (channels "Z Y X" give Rz @ Ry @ Rx, the BVH convention)."""
        motion = self.motion if frames is None else self.motion[frames]
        rotations = np.broadcast_to(np.eye(3), (motion.shape[0], len(self.joints), 3, 3)).copy()
        for index, joint in enumerate(self.joints):
            for offset, channel in enumerate(joint.channels):
                if channel in _ROTATION_CHANNELS:
                    angles = np.radians(motion[:, joint.channel_start + offset])
                    rotations[:, index] = rotations[:, index] @ axis_rotation(_ROTATION_CHANNELS[channel], angles)
        return rotations

    def world_positions(self, frames: np.ndarray | slice | None = None) -> np.ndarray:
        """World joint positions (F, J, 3) float64, file units and axes, by forward kinematics.

        A joint sits at `parent_position + parent_world_rotation @ offset`; position channels are added to
        the offset (for the usual root they are the whole position, the root offset being zero).
        """
        motion = self.motion if frames is None else self.motion[frames]
        local = self.local_rotations(frames)
        count = motion.shape[0]
        positions = np.zeros((count, len(self.joints), 3))
        world_rotations = np.zeros((count, len(self.joints), 3, 3))
        for index, joint in enumerate(self.joints):
            translation = np.broadcast_to(joint.offset, (count, 3)).copy()
            for offset, channel in enumerate(joint.channels):
                if channel in _POSITION_CHANNELS:
                    translation[:, _POSITION_CHANNELS[channel]] += motion[:, joint.channel_start + offset]
            if joint.parent < 0:
                positions[:, index] = translation
                world_rotations[:, index] = local[:, index]
            else:
                parent_rotation = world_rotations[:, joint.parent]
                positions[:, index] = positions[:, joint.parent] + np.einsum(
                    "fij,fj->fi", parent_rotation, translation
                )
                world_rotations[:, index] = parent_rotation @ local[:, index]
        return positions


def read_bvh(path: str | os.PathLike) -> Bvh:
    """Parse a BVH file (HIERARCHY and MOTION sections) into a `Bvh`.

    Raises BvhError naming the file and the problem (missing section, bad channel count, short motion rows).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise BvhError(f"`{path}` cannot be read ({error.strerror}): check the path") from error
    head, separator, motion_text = text.partition("MOTION")
    if not separator or "HIERARCHY" not in head:
        raise BvhError(f"`{path}` is not a BVH file: it needs a HIERARCHY and a MOTION section")

    tokens = head.split()
    joints: list[BvhJoint] = []
    stack: list[int] = []
    channel_count = 0
    pending_name: str | None = None
    pending_end = False
    position = tokens.index("HIERARCHY") + 1
    try:
        while position < len(tokens):
            token = tokens[position]
            if token in ("ROOT", "JOINT"):
                pending_name, pending_end = tokens[position + 1], False
                position += 2
            elif token == "End":
                parent_name = joints[stack[-1]].name if stack else "root"
                pending_name, pending_end = f"{parent_name}_end", True
                position += 2
            elif token == "{":
                if pending_name is None:
                    raise BvhError(f"`{path}`: unexpected '{{' in the hierarchy")
                joints.append(
                    BvhJoint(pending_name, stack[-1] if stack else -1, np.zeros(3), (), channel_count, pending_end)
                )
                stack.append(len(joints) - 1)
                pending_name = None
                position += 1
            elif token == "}":
                stack.pop()
                position += 1
            elif token == "OFFSET":
                offset = np.array([float(value) for value in tokens[position + 1 : position + 4]])
                joint = joints[stack[-1]]
                joints[stack[-1]] = BvhJoint(
                    joint.name, joint.parent, offset, joint.channels, joint.channel_start, joint.is_end_site
                )
                position += 4
            elif token == "CHANNELS":
                count = int(tokens[position + 1])
                names = tuple(tokens[position + 2 : position + 2 + count])
                joint = joints[stack[-1]]
                joints[stack[-1]] = BvhJoint(joint.name, joint.parent, joint.offset, names, channel_count)
                channel_count += count
                position += 2 + count
            else:
                raise BvhError(f"`{path}`: unexpected token {token!r} in the hierarchy")
    except (IndexError, ValueError) as error:
        if isinstance(error, BvhError):
            raise
        raise BvhError(f"`{path}` has a malformed HIERARCHY section near token {position}") from error
    if not joints:
        raise BvhError(f"`{path}` declares no joints")

    lines = motion_text.strip().splitlines()
    try:
        frame_count = int(lines[0].split(":")[1])
        frame_time = float(lines[1].split(":")[1])
        values = np.array(" ".join(lines[2 : 2 + frame_count]).split(), dtype=np.float64)
    except (IndexError, ValueError) as error:
        raise BvhError(f"`{path}` has a malformed MOTION header ('Frames:' and 'Frame Time:' lines)") from error
    if frame_time <= 0 or channel_count == 0 or values.size != frame_count * channel_count:
        raise BvhError(
            f"`{path}` declares {frame_count} frames x {channel_count} channels but holds {values.size} "
            "values: the file is truncated or its channel declarations are wrong"
        )
    return Bvh(joints, frame_time, values.reshape(frame_count, channel_count), str(path))


def keypoints_from_bvh(
    bvh: Bvh,
    joint_to_keypoint: dict[str, int],
    *,
    num_keypoints: int = 70,
    scale: float = 1.0,
    frames: np.ndarray | slice | None = None,
) -> np.ndarray:
    """Keypoint tracks (F, num_keypoints, 3) float64 from BVH joints: `scale * position` (file axes), NaN for
    keypoints no joint maps to. `joint_to_keypoint` maps joint names (End Sites: `<parent>_end`) to
    keypoint indices, e.g. {"LeftUpLeg": 9} for MHR70."""
    positions = bvh.world_positions(frames)
    keypoints = np.full((positions.shape[0], num_keypoints, 3), np.nan)
    for name, keypoint in joint_to_keypoint.items():
        keypoints[:, keypoint] = scale * positions[:, bvh.joint_index(name)]
    return keypoints
