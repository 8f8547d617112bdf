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
    return writer.action
