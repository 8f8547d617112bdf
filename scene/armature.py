"""The capture rig in Blender: an armature built from the solve's T-pose rest, and its motion as one action."""

import bpy
import numpy as np

from . import actions, naming

# Blender deletes zero-length bones when leaving edit mode; the solve never makes them, this guards it.
MIN_BONE_LENGTH = 1e-4


def build_armature(context, name: str, rest, collection: bpy.types.Collection) -> bpy.types.Object:
    """An armature object whose rest pose is exactly `rest` (heads, tails, bone matrices), linked to collection.

    rest: the engine's RigRest (armature space, metres, T-pose). Every bone gets the custom properties
    `mhr70_head` / `mhr70_tail` (MHR70 keypoint index at each end, -1 where none) and quaternion rotation.
    """
    lengths = np.linalg.norm(rest.tails - rest.heads, axis=1)
    if lengths.min() < MIN_BONE_LENGTH:
        short = rest.bone_names[int(lengths.argmin())]
        raise ValueError(f"bone {short!r} has length {lengths.min():.2e} m: the rest pose is degenerate")
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    collection.objects.link(obj)
    obj[naming.PROP_ROLE] = "capture_rig"

    view_layer = context.view_layer
    previous_active = view_layer.objects.active
    previous_mode = previous_active.mode if previous_active is not None else "OBJECT"
    if previous_mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        edit_bones = [data.edit_bones.new(bone_name) for bone_name in rest.bone_names]
        for index, edit_bone in enumerate(edit_bones):
            edit_bone.head = rest.heads[index]
            edit_bone.tail = rest.tails[index]
            # Blender derives X and Z from the roll: aligning Z reproduces the solve's bone matrix exactly.
            edit_bone.align_roll(rest.rest_matrices[index][:, 2])
            edit_bone.use_deform = False
        for index, parent in enumerate(rest.parents):
            if parent >= 0:
                edit_bones[index].parent = edit_bones[int(parent)]
                edit_bones[index].use_connect = False
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = previous_active

    for index, bone_name in enumerate(rest.bone_names):
        bone = data.bones[bone_name]
        bone[naming.PROP_MHR70_HEAD] = int(rest.mhr70_head[index])
        bone[naming.PROP_MHR70_TAIL] = int(rest.mhr70_tail[index])
        obj.pose.bones[bone_name].rotation_mode = "QUATERNION"
    return obj


def write_motion(obj: bpy.types.Object, action_name: str, motion, scene_frames: np.ndarray) -> bpy.types.Action:
    """Key the solved motion on obj in bulk: quaternions per bone, location on the root; frames left unkeyed
    where the solve says a bone was unknown for too long (motion.keyed / motion.root_keyed)."""
    writer = actions.new_action(obj, action_name)
    rest = motion.rest
    for index, bone_name in enumerate(rest.bone_names):
        keyed = motion.keyed[:, index]
        path = f'pose.bones["{bone_name}"]'
        writer.write(f"{path}.rotation_quaternion", bone_name, scene_frames[keyed], motion.quats[keyed, index])
        if rest.parents[index] < 0:
            root_keyed = motion.root_keyed
            writer.write(f"{path}.location", bone_name, scene_frames[root_keyed], motion.root_location[root_keyed])
    frames, hidden = presence_keys(np.asarray(motion.root_keyed, bool), scene_frames)
    actions.key_visibility(writer, frames, hidden)
    return writer.action


def presence_keys(present: np.ndarray, scene_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames, hidden) visibility keys that show a rig only over its person's rows: `present` (F,) True where the
    solve keyed the root (the person seen, or a gap short enough to bridge), at `scene_frames` (F,). Hidden from
    the scene's first frame until the person appears, and from the first row they are gone until they are back."""
    frames, hidden = [], []
    padded = np.concatenate([[False], present, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    if len(edges) == 0:
        return np.array([scene_frames[0]]), np.array([1.0])
    if edges[0] > 0:
        frames.append(scene_frames[0])
        hidden.append(1.0)
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        frames.append(scene_frames[start])
        hidden.append(0.0)
        if end < len(scene_frames):  # (present to the last row: no key past the take, its range stays the take's)
            frames.append(scene_frames[end])
            hidden.append(1.0)
    return np.array(frames, dtype=np.float64), np.array(hidden)
