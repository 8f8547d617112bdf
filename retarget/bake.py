"""Retarget a capture rig onto another armature (Rigify, Mixamo, metarig names) and bake it into a new action.

Direction-based: each mapped target bone is turned so its head -> tail direction follows its source bone, with
the source's twist, through a per-bone rest offset computed from both rigs' rest poses (T-pose and A-pose targets
give the same motion). Nothing on the target's rest data changes; no constraint or helper object is created.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix, Quaternion, Vector

from ..scene import actions, naming
from . import bone_maps, rigify

ROOT_MOTION_MODES = ("full", "in_place", "ground")
ROOT_MOTION_ITEMS = (
    ("full", "Full", "The target travels and rises like the capture (scaled)"),
    ("in_place", "In place", "No horizontal travel: the hips keep their rest position on the floor plane, "
     "vertical motion (jumps, crouches) stays"),
    ("ground", "Ground", "Root motion projected onto the floor: horizontal travel only, the hips keep their "
     "rest height"),
)
ROLE_RETARGET_ACTION = "retarget_action"  # naming.PROP_ROLE of the actions this module writes
PROP_RETARGET_TARGET = "instanthmr_retarget_target"  # on such an action: the name of the object it was baked for
ROLE_CAPTURE_RIG = "capture_rig"
# Source bones whose world positions give the pelvis point and the leg length (the capture rig's names).
SOURCE_THIGHS = ("thigh.L", "thigh.R")
SOURCE_FEET = ("foot.L", "foot.R")
SOURCE_PELVIS = "pelvis"

Progress = Callable[[float], None]


class RetargetError(ValueError):
    """A retarget that cannot run as asked; the message names the object or setting and what to do."""


@dataclass
class RetargetResult:
    """What a retarget did.

    action: the new action on the target; frames: (N,) scene frames baked (the source's keyed frames);
    pairs: the (source, target, mode) pairs driven (target names as in the armature); skipped: pairs left out and
    why; scale: target / source leg length used for root motion; switches: IK/FK properties keyed to FK;
    ik_controls: Rigify IK controls keyed to match the FK pose (bake_ik), empty otherwise.
    """

    action: bpy.types.Action
    bone_map: bone_maps.BoneMap
    frames: np.ndarray
    pairs: list[bone_maps.BonePair] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    scale: float = 1.0
    root_bone: str = ""
    switches: list[rigify.SwitchProperty] = field(default_factory=list)
    removed_actions: list[str] = field(default_factory=list)
    ik_controls: list[str] = field(default_factory=list)


@dataclass
class _DrivenBone:
    """One target bone and how it follows its source. offset: (3x3) world rest offset C with
    target_world(f) = source_world(f) @ C (rotation parts); level: bones of a level are solved together, after
    every bone they hang from (by parenting in the target or in the source)."""

    source: str
    target: str
    mode: str
    offset: Matrix
    level: int = 0


def _rotation(matrix: Matrix) -> Matrix:
    """The orthonormal 3x3 part of a bone or object matrix (scale removed)."""
    return matrix.to_3x3().normalized()


def _swing(from_direction: Vector, to_direction: Vector) -> Matrix:
    """The smallest rotation taking one direction onto another (3x3)."""
    return from_direction.normalized().rotation_difference(to_direction.normalized()).to_matrix()


def _check_armature(obj, role: str) -> None:
    if obj is None:
        raise RetargetError(f"no {role} armature given: pick one")
    if obj.type != "ARMATURE":
        raise RetargetError(f"{role} `{obj.name}` is a {obj.type.lower()}, not an armature: pick an armature")
    if obj.mode == "EDIT":
        raise RetargetError(f"{role} `{obj.name}` is in Edit Mode: switch to Object or Pose Mode first")


def _resolve_pairs(bone_map: bone_maps.BoneMap, source, target, animated: set[str]):
    pairs, skipped = [], []
    target_names = target.data.bones.keys()
    seen_targets = set()
    for pair in bone_map.pairs:
        resolved = bone_maps.resolve_name(pair.target, target_names)
        if pair.source not in source.data.bones:
            skipped.append(f"{pair.source} -> {pair.target}: no bone {pair.source!r} in `{source.name}`")
        elif resolved is None:
            skipped.append(f"{pair.source} -> {pair.target}: no bone {pair.target!r} in `{target.name}`")
        elif resolved in seen_targets:
            skipped.append(f"{pair.source} -> {pair.target}: {resolved!r} is already driven by an earlier pair")
        elif pair.source not in animated:
            # A capture bone that never moved (the fingers of a body-only take) would flatten the target's own
            # rest (e.g. curled fingers): leave those target bones alone.
            skipped.append(f"{pair.source} -> {pair.target}: {pair.source!r} has no keys in the capture")
        else:
            seen_targets.add(resolved)
            pairs.append(bone_maps.BonePair(pair.source, resolved, pair.mode))
    return pairs, skipped


def _animated_bones(obj) -> tuple[set[str], np.ndarray]:
    """Bones with rotation keys, and the sorted scene frames holding any key (the frames to bake)."""
    bones, frames = set(), set()
    for fcurve in actions.action_fcurves(obj):
        path = fcurve.data_path
        if path.startswith('pose.bones["') and ".rotation" in path:
            bones.add(path.split('"')[1])
        values = np.empty(2 * len(fcurve.keyframe_points), np.float32)
        fcurve.keyframe_points.foreach_get("co", values)
        frames.update(np.round(values[0::2]).astype(np.int64).tolist())
    return bones, np.array(sorted(frames), np.int64)


def _pose_dependencies(target) -> Callable[[str], set[str]]:
    """For a bone name, every bone of the same armature its evaluated pose depends on: its parents and, through
    them, the bones their constraints read (Rigify's controls follow each other through mechanism bones)."""
    bones = target.pose.bones
    memo: dict[str, set[str]] = {}

    def direct(name: str) -> set[str]:
        pose_bone = bones[name]
        found = {pose_bone.parent.name} if pose_bone.parent is not None else set()
        for constraint in pose_bone.constraints:
            for attribute in ("subtarget", "pole_subtarget"):
                if getattr(constraint, attribute.replace("sub", ""), None) == target and getattr(constraint, attribute):
                    found.add(getattr(constraint, attribute))
        return {other for other in found if other in bones}

    def closure(name: str) -> set[str]:
        if name in memo:
            return memo[name]
        memo[name] = set()  # a dependency loop (Blender reports those itself) ends here instead of recursing
        found = set()
        for other in direct(name):
            found.add(other)
            found |= closure(other)
        memo[name] = found
        return found

    return closure


def _levels(driven: dict[str, _DrivenBone], target) -> None:
    """Give each driven bone the length of the longest chain of driven bones its pose depends on: bones of one
    level can be posed together once the levels before them are evaluated."""
    closure = _pose_dependencies(target)
    dependencies = {name: (closure(name) & driven.keys()) - {name} for name in driven}
    memo: dict[str, int] = {}

    def level(name: str, visiting: frozenset) -> int:
        if name not in memo:
            parents = [other for other in dependencies[name] if other not in visiting]
            memo[name] = 1 + max((level(other, visiting | {name}) for other in parents), default=-1)
        return memo[name]

    for name, bone in driven.items():
        bone.level = level(name, frozenset())


def _rest_world(obj, bone_name: str) -> tuple[Matrix, Vector, Vector]:
    """World rest orientation (3x3), head and tail of a bone."""
    bone = obj.data.bones[bone_name]
    world = obj.matrix_world
    return _rotation(world @ bone.matrix_local), world @ bone.head_local, world @ bone.tail_local


def _mean(vectors: list[Vector]) -> Vector | None:
    return sum(vectors, Vector()) / len(vectors) if vectors else None


@dataclass
class _RootPlan:
    """How the root bone moves. Points are world, metres.

    pelvis_source / pelvis_target: the bones whose heads' mean is the pelvis point (thighs, else the root);
    ankle_*: rest ankle heights that anchor the vertical mapping (a planted source ankle lands the target's ankle
    at its own rest height); rest_*: rest pelvis points; first_source: the source pelvis point at the first frame.
    """

    bone: str
    pelvis_source: list[str]
    pelvis_target: list[str]
    rest_source: Vector
    rest_target: Vector
    ankle_source: float
    ankle_target: float
    scale: float
    mode: str
    first_source: Vector | None = None

    def target_point(self, source_point: Vector) -> Vector:
        if self.first_source is None:
            self.first_source = source_point.copy()
        travel = (source_point - self.first_source) * self.scale
        x, y = self.rest_target.x + travel.x, self.rest_target.y + travel.y
        z = self.ankle_target + (source_point.z - self.ankle_source) * self.scale
        if self.mode == "in_place":
            x, y = self.rest_target.x, self.rest_target.y
        elif self.mode == "ground":
            z = self.rest_target.z
        return Vector((x, y, z))


def _plan_root(bone_map, pairs, source, target, root_motion: str, scale: float | None, skipped: list[str]):
    by_source: dict[str, str] = {}
    for pair in pairs:
        by_source.setdefault(pair.source, pair.target)  # the first target of a source is its main one
    root = bone_maps.resolve_name(bone_map.root, target.data.bones.keys()) if bone_map.root else None
    if root is None or root not in {pair.target for pair in pairs}:
        root = by_source.get(SOURCE_PELVIS)
    if root is None:
        skipped.append("root motion: the map drives no root bone (set its 'root', or map the pelvis)")
        return None, 1.0 if scale is None else scale

    legs = [(thigh, foot) for thigh, foot in zip(SOURCE_THIGHS, SOURCE_FEET, strict=True)
            if thigh in by_source and foot in by_source]
    source_lengths = [(_rest_world(source, foot)[1] - _rest_world(source, thigh)[1]).length for thigh, foot in legs]
    target_lengths = [(_rest_world(target, by_source[foot])[1] - _rest_world(target, by_source[thigh])[1]).length
                      for thigh, foot in legs]
    if scale is None:
        if legs and min(source_lengths) > 1e-6:
            scale = float(np.mean(target_lengths) / np.mean(source_lengths))
        else:
            scale = 1.0
            skipped.append("scale: no leg (thigh and foot) mapped to measure; using 1.0")
    if scale <= 0 or not math.isfinite(scale):
        raise RetargetError(f"scale {scale} is not a positive number: leave it automatic or give e.g. 1.0")

    thighs = [name for name in SOURCE_THIGHS if name in by_source]
    pelvis_source = thighs or [SOURCE_PELVIS if SOURCE_PELVIS in by_source else next(iter(by_source))]
    pelvis_target = [by_source[name] for name in thighs] or [root]
    rest_source = _mean([_rest_world(source, name)[1] for name in pelvis_source])
    rest_target = _mean([_rest_world(target, name)[1] for name in pelvis_target])
    feet = [name for name in SOURCE_FEET if name in by_source]
    if feet:
        ankle_source = _mean([_rest_world(source, name)[1] for name in feet]).z
        ankle_target = _mean([_rest_world(target, by_source[name])[1] for name in feet]).z
    else:
        ankle_source, ankle_target = rest_source.z, rest_target.z
    plan = _RootPlan(root, pelvis_source, pelvis_target, rest_source, rest_target, ankle_source, ankle_target,
                     scale, root_motion)
    return plan, scale


def _remove_previous(target, keep: bpy.types.Action, previous: bpy.types.Action | None) -> list[str]:
    """Delete earlier retarget actions of this target that nothing uses any more; keep a user's own action
    (given a fake user so it survives saving)."""
    removed = []
    if previous is not None and previous != keep and previous.get(naming.PROP_ROLE) != ROLE_RETARGET_ACTION:
        previous.use_fake_user = True
    for action in list(bpy.data.actions):
        if action == keep or action.get(naming.PROP_ROLE) != ROLE_RETARGET_ACTION:
            continue
        if action.get(PROP_RETARGET_TARGET) == target.name and action.users == 0:
            removed.append(action.name)
            bpy.data.actions.remove(action)
    return removed


def _write_rotation(writer, pose_bone, frames: np.ndarray, quats: np.ndarray) -> None:
    """Key (N, 4) w-first quaternions in the bone's own rotation mode (Euler kept continuous)."""
    path = f'pose.bones["{pose_bone.name}"]'
    mode = pose_bone.rotation_mode
    if mode == "QUATERNION":
        writer.write(f"{path}.rotation_quaternion", pose_bone.name, frames, quats)
    elif mode == "AXIS_ANGLE":
        values = []
        for quat in quats:
            axis, angle = Quaternion(quat).to_axis_angle()
            values.append((angle, *axis))
        writer.write(f"{path}.rotation_axis_angle", pose_bone.name, frames, np.array(values))
    else:
        values, previous = [], None
        for quat in quats:
            euler = Quaternion(quat).to_euler(mode, previous) if previous else Quaternion(quat).to_euler(mode)
            values.append(tuple(euler))
            previous = euler
        writer.write(f"{path}.rotation_euler", pose_bone.name, frames, np.array(values))


def retarget_capture(context, source_rig, target_rig, *, bone_map: bone_maps.BoneMap | None = None,
                     root_motion: str = "full", scale: float | None = None, bake_ik: bool = False,
                     progress: Progress | None = None) -> RetargetResult:
    """Bake the capture rig's motion onto target_rig as a new action (replacing an earlier retarget of it).

    source_rig: a capture rig (or any armature with the capture rig's bone names) with an action; target_rig:
    a generated Rigify rig, a Mixamo skeleton or an armature with metarig names (bone_map None: the best
    matching preset). root_motion: one of ROOT_MOTION_MODES; scale: target / source size for root motion
    (None: from the legs' rest lengths). bake_ik: also key a generated Rigify rig's IK controls (hand / foot,
    pole, IK base) so that switching a limb to IK gives the baked FK pose, with either pole setting; the IK/FK
    switches stay keyed to FK. progress: called with the fraction done (0..1) after each frame.
    """
    # A capture rig is hidden while its person is absent (and Blender does not evaluate a hidden rig): show it
    # for the bake, so every frame reads its own pose.
    with actions.all_shown([source_rig]):
        return _retarget_capture(context, source_rig, target_rig, bone_map=bone_map, root_motion=root_motion,
                                 scale=scale, bake_ik=bake_ik, progress=progress)


def _retarget_capture(context, source_rig, target_rig, *, bone_map, root_motion, scale, bake_ik,
                      progress) -> RetargetResult:
    _check_armature(source_rig, "source")
    _check_armature(target_rig, "target")
    if source_rig == target_rig:
        raise RetargetError(f"source and target are the same armature `{source_rig.name}`: pick another target")
    try:
        rigify.check_target(target_rig)
    except rigify.RigifyTargetError as error:
        raise RetargetError(str(error)) from error
    if root_motion not in ROOT_MOTION_MODES:
        raise RetargetError(f"root motion {root_motion!r} is unknown: use one of {', '.join(ROOT_MOTION_MODES)}")
    view_layer = context.view_layer
    for obj, role in ((source_rig, "source"), (target_rig, "target")):
        if view_layer.objects.get(obj.name) != obj:
            raise RetargetError(f"{role} `{obj.name}` is not in the view layer: link it to the scene")

    if bone_map is None:
        bone_map = bone_maps.auto_detect(target_rig.data.bones.keys())
        if bone_map is None:
            names = ", ".join(bone_maps.load_presets())
            raise RetargetError(f"no bone map preset ({names}) matches the bones of `{target_rig.name}`: "
                                "fill the mapping list by hand or load a saved map")
    animated, frames = _animated_bones(source_rig)
    if not len(frames):
        raise RetargetError(f"source `{source_rig.name}` has no keyframes: build or rebuild the capture first")
    pairs, skipped = _resolve_pairs(bone_map, source_rig, target_rig, animated)
    if not pairs:
        raise RetargetError(f"none of the bone map's target bones exist in `{target_rig.name}` (map "
                            f"{bone_map.name!r}): pick the matching preset or edit the mapping")

    driven: dict[str, _DrivenBone] = {}
    for pair in pairs:
        source_rest, source_head, source_tail = _rest_world(source_rig, pair.source)
        target_rest, target_head, target_tail = _rest_world(target_rig, pair.target)
        align = Matrix.Identity(3)
        if pair.mode == "direction":
            align = _swing(target_tail - target_head, source_tail - source_head)
        driven[pair.target] = _DrivenBone(pair.source, pair.target, pair.mode,
                                          source_rest.transposed() @ align @ target_rest)
    _levels(driven, target_rig)
    levels = [[bone for bone in driven.values() if bone.level == level]
              for level in range(max(bone.level for bone in driven.values()) + 1)]
    root_plan, scale = _plan_root(bone_map, pairs, source_rig, target_rig, root_motion, scale, skipped)
    switches = rigify.ik_fk_switches(target_rig) if rigify.is_generated_rig(target_rig) else []
    limbs = _ik_limbs(target_rig, skipped) if bake_ik else []

    scene = context.scene
    frame_before = scene.frame_current, scene.frame_subframe
    animation = target_rig.animation_data_create()
    previous_action = animation.action
    previous_slot = animation.action_slot if actions.has_slotted_actions() else None
    previous_use_nla = animation.use_nla
    target_pose = target_rig.pose.bones
    saved_pose = {pb.name: (pb.location.copy(), pb.rotation_quaternion.copy(), pb.rotation_euler.copy(),
                            tuple(pb.rotation_axis_angle), pb.scale.copy()) for pb in target_pose}
    rotations = {name: np.zeros((len(frames), 4)) for name in driven}
    root_locations = np.zeros((len(frames), 3))
    ik_controls = [name for limb in limbs for name in limb.controls]
    ik_bases = {name: np.zeros((len(frames), 4, 4)) for name in ik_controls}
    # The IK base is matched with the pole off; the pole's own placement does not depend on it. The user's
    # setting comes back afterwards (it is not keyed).
    saved_poles = {limb.switch_bone: target_pose[limb.switch_bone].get(rigify.POLE_SWITCH) for limb in limbs}
    try:
        # The bake poses the target by hand, frame after frame: its own action or NLA would overwrite that.
        animation.action = None
        animation.use_nla = False
        for pb in target_pose:
            pb.location, pb.scale = (0, 0, 0), (1, 1, 1)
            pb.rotation_quaternion, pb.rotation_euler = (1, 0, 0, 0), (0, 0, 0)
            pb.rotation_axis_angle = (0, 0, 1, 0)
        for switch in switches:
            target_pose[switch.bone][switch.name] = switch.fk_value
        for bone_name, value in saved_poles.items():
            if value is not None:
                target_pose[bone_name][rigify.POLE_SWITCH] = type(value)(0)
        target_rig.update_tag()  # custom properties set from Python do not re-run the drivers reading them
        world_rotation = _rotation(target_rig.matrix_world)
        world_inverse = target_rig.matrix_world.inverted()
        source_world = source_rig.matrix_world
        for row, frame in enumerate(frames):
            scene.frame_set(int(frame))
            source_pose = {name: source_world @ source_rig.pose.bones[name].matrix
                           for name in {bone.source for bone in driven.values()}}
            for level_index, level in enumerate(levels):
                for bone in level:
                    pose_bone = target_pose[bone.target]
                    orientation = world_rotation.transposed() @ _rotation(source_pose[bone.source]) @ bone.offset
                    matrix = orientation.to_4x4()
                    matrix.translation = pose_bone.matrix.translation
                    if root_plan is not None and bone.target == root_plan.bone:
                        matrix.translation = _root_head(root_plan, source_rig, target_rig, orientation, world_inverse)
                    basis = target_rig.convert_space(pose_bone=pose_bone, matrix=matrix, from_space="POSE",
                                                     to_space="LOCAL")
                    location, quat, _ = basis.decompose()
                    if row and np.dot(rotations[bone.target][row - 1], quat) < 0:
                        quat.negate()  # the same rotation, kept on the previous frame's side: no flips
                    rotations[bone.target][row] = quat
                    rigify.set_rotation(pose_bone, quat)
                    if root_plan is not None and bone.target == root_plan.bone:
                        pose_bone.location = location
                        root_locations[row] = location
                if level_index + 1 < len(levels) or limbs:
                    view_layer.update()
            if limbs:
                for name, basis in rigify.match_ik_to_fk(target_rig, limbs, view_layer).items():
                    ik_bases[name][row] = basis
            if progress is not None:
                progress((row + 1) / len(frames))
    except BaseException:
        animation.action = previous_action
        if previous_slot is not None:
            animation.action_slot = previous_slot
        raise
    finally:
        animation.use_nla = previous_use_nla
        for bone_name, value in saved_poles.items():
            if value is not None:
                target_pose[bone_name][rigify.POLE_SWITCH] = value
        target_rig.update_tag()
        for pb in target_pose:
            location, quaternion, euler, axis_angle, bone_scale = saved_pose[pb.name]
            pb.location, pb.rotation_quaternion, pb.rotation_euler = location, quaternion, euler
            pb.rotation_axis_angle, pb.scale = axis_angle, bone_scale

    take = source_rig.get(naming.PROP_TAKE, source_rig.name)
    writer = actions.new_action(target_rig, f"{take} -> {target_rig.name}")
    action = writer.action
    action[naming.PROP_ROLE] = ROLE_RETARGET_ACTION
    action[PROP_RETARGET_TARGET] = target_rig.name
    for name, values in rotations.items():
        _write_rotation(writer, target_pose[name], frames, values)
    if root_plan is not None:
        writer.write(f'pose.bones["{root_plan.bone}"].location', root_plan.bone, frames, root_locations)
    for name in ik_controls:
        _write_transform(writer, target_pose[name], frames, ik_bases[name])
    for switch in switches:
        ends = frames[[0, -1]] if len(frames) > 1 else frames[:1]
        writer.write(switch.data_path, switch.bone, ends, np.full((len(ends), 1), switch.fk_value), "CONSTANT")
    removed = _remove_previous(target_rig, action, previous_action)
    action.name = f"{take} -> {target_rig.name}"  # the replaced action's name is free again
    scene.frame_set(frame_before[0], subframe=frame_before[1])
    return RetargetResult(action, bone_map, frames, pairs, skipped, scale,
                          root_plan.bone if root_plan is not None else "", switches, removed, ik_controls)


def _ik_limbs(target, skipped: list[str]) -> list[rigify.IkLimb]:
    """The limbs whose IK controls a bake_ik retarget keys; refuses a target that has none."""
    if not rigify.is_generated_rig(target):
        raise RetargetError(f"`{target.name}` is not a generated Rigify rig, so it has no IK controls to bake: "
                            "retarget without Bake IK")
    limbs, missing = rigify.ik_limbs(target)
    skipped.extend(missing)
    if not limbs:
        raise RetargetError(f"no Rigify arm or leg of `{target.name}` has the IK controls Bake IK keys "
                            f"({'; '.join(missing) or 'no limb switch bones'}): retarget without Bake IK")
    return limbs


def _write_transform(writer, pose_bone, frames: np.ndarray, bases: np.ndarray) -> None:
    """Key (N, 4, 4) basis matrices: location (unless locked), rotation in the bone's own mode with no
    quaternion flips, and scale where it differs from 1 (the IK base)."""
    path = f'pose.bones["{pose_bone.name}"]'
    locations, quats, scales = [], [], []
    for basis in bases:
        location, quat, scale = Matrix(basis.tolist()).decompose()
        if quats and np.dot(quats[-1], quat) < 0:
            quat.negate()
        locations.append(location)
        quats.append(quat)
        scales.append(scale)
    if not all(pose_bone.lock_location):
        writer.write(f"{path}.location", pose_bone.name, frames, np.array(locations))
    _write_rotation(writer, pose_bone, frames, np.array(quats))
    scales = np.array(scales)
    if np.abs(scales - 1.0).max() > 1e-6:
        writer.write(f"{path}.scale", pose_bone.name, frames, scales)


def _root_head(plan: _RootPlan, source, target, orientation: Matrix, world_inverse: Matrix) -> Vector:
    """Armature-space head of the root bone that puts the target's pelvis point where the plan maps the source's.
    orientation: the root bone's armature-space rotation this frame (the pelvis point turns with it)."""
    source_point = _mean([source.matrix_world @ source.pose.bones[name].head for name in plan.pelvis_source])
    wanted = world_inverse @ plan.target_point(source_point)
    root_rest = target.data.bones[plan.bone]
    rest_point = _mean([target.data.bones[name].head_local for name in plan.pelvis_target])
    turn = orientation @ root_rest.matrix_local.to_3x3().normalized().transposed()
    return wanted - turn @ (rest_point - root_rest.head_local)


BLEND_SUFFIX = ".blend"


def _split_spec(spec: str) -> tuple[Path, str | None]:
    """`PATH.blend[:OBJECT]` -> (path, object name or None); a drive letter's colon is not a separator."""
    lowered = spec.lower()
    cut = lowered.rfind(BLEND_SUFFIX + ":")
    if cut >= 0:
        end = cut + len(BLEND_SUFFIX)
        return Path(spec[:end]), spec[end + 1:] or None
    return Path(spec), None


def append_target(spec: str, context=None) -> bpy.types.Object:
    """Append an armature (and the objects parented to it, e.g. its meshes) from a .blend into the scene.

    spec: `PATH.blend:OBJECT`, or `PATH.blend` when the file holds exactly one armature object. Returns the
    appended armature object, linked to the scene's collection.
    """
    context = context or bpy.context
    path, wanted = _split_spec(spec)
    path = path.expanduser().resolve()
    if not path.is_file():
        raise RetargetError(f"`{path}` does not exist: give the target as PATH.blend or PATH.blend:OBJECT")
    # Link first to read object types and parents without appending anything; the library is dropped again.
    known_libraries = {bpy.path.abspath(library.filepath) for library in bpy.data.libraries}
    try:
        with bpy.data.libraries.load(str(path), link=True) as (data_from, data_to):
            data_to.objects = list(data_from.objects)
    except OSError as error:
        raise RetargetError(f"`{path}` is not a readable .blend file ({error})") from error
    linked = [obj for obj in data_to.objects if obj is not None]
    armatures = sorted(obj.name for obj in linked if obj.type == "ARMATURE")
    children = {obj.name: [child.name for child in linked if child.parent == obj] for obj in linked}
    library = linked[0].library if linked else None
    if library is not None and bpy.path.abspath(library.filepath) not in known_libraries:
        bpy.data.libraries.remove(library)
    listing = ", ".join(armatures) if armatures else "none"
    if wanted is None:
        if len(armatures) != 1:
            raise RetargetError(f"`{path.name}` holds {len(armatures)} armatures ({listing}): name one as "
                                f"{path.name}:OBJECT")
        wanted = armatures[0]
    elif wanted not in armatures:
        raise RetargetError(f"`{path.name}` has no armature object {wanted!r}; its armatures: {listing}")
    names, queue = [], [wanted]
    while queue:
        name = queue.pop()
        names.append(name)
        queue.extend(children.get(name, []))
    with bpy.data.libraries.load(str(path), link=False) as (data_from, data_to):
        data_to.objects = names
    appended = [obj for obj in data_to.objects if obj is not None]
    if not appended or appended[0].type != "ARMATURE":
        raise RetargetError(f"`{path.name}`: appending {wanted!r} failed: open the file to check it")
    for obj in appended:
        context.scene.collection.objects.link(obj)
    # The view layer syncs its object list lazily; a fresh headless session has nothing that triggers it.
    context.view_layer.update()
    return appended[0]  # loaded in the order asked: the armature first (renamed if the name was taken)
