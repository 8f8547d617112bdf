"""Retargeting in real Blender: the CMU round-trip capture baked onto generated Rigify rigs (T-ish and A-pose
metarigs, the first with its IK controls baked too), a Mixamo-named armature and through the panel's operator;
re-runs replace, metarigs are refused."""

import json
from importlib import import_module
from pathlib import Path

import addon_utils
import bpy
import numpy as np
import pytest
from capture_helpers import EXACT, AddonApi, fresh_scene, take_from_cmu
from mathutils import Matrix, Vector

from testkit.cmu_take import cmu_take

# DEF chain of the generated Rigify rig -> the capture bone whose direction it must follow. Neck and head are
# left out: the CMU take has no face keypoints, so the capture never keys them.
RIGIFY_CHAINS = {
    "DEF-spine": "pelvis", "DEF-spine.001": "spine.01", "DEF-spine.002": "spine.01", "DEF-spine.003": "spine.02",
    "DEF-shoulder.L": "clavicle.L", "DEF-shoulder.R": "clavicle.R",
    "DEF-upper_arm.L": "upper_arm.L", "DEF-upper_arm.R": "upper_arm.R",
    "DEF-forearm.L": "forearm.L", "DEF-forearm.R": "forearm.R",
    "DEF-thigh.L": "thigh.L", "DEF-thigh.R": "thigh.R", "DEF-shin.L": "shin.L", "DEF-shin.R": "shin.R",
    "DEF-foot.L": "foot.L", "DEF-foot.R": "foot.R",
}  # fmt: skip
# The limb chains that switching Rigify's limbs to IK must leave where the FK bake put them.
IK_CHAINS = [f"DEF-{bone}{side}" for side in (".L", ".R")
             for bone in ("upper_arm", "forearm", "hand", "thigh", "shin", "foot")]
MIXAMO_REST = {  # name: (head, tail, parent), metres, T-pose facing -Y
    "Hips": ((0, 0, 0.95), (0, 0, 1.05), None), "Spine": ((0, 0, 1.05), (0, 0, 1.17), "Hips"),
    "Spine1": ((0, 0, 1.17), (0, 0, 1.3), "Spine"), "Spine2": ((0, 0, 1.3), (0, 0, 1.45), "Spine1"),
    "Neck": ((0, 0, 1.45), (0, 0, 1.55), "Spine2"), "Head": ((0, 0, 1.55), (0, 0, 1.75), "Neck"),
}
for _side, _x in (("Left", 1.0), ("Right", -1.0)):
    MIXAMO_REST.update({
        f"{_side}Shoulder": ((0.03 * _x, 0, 1.42), (0.17 * _x, 0, 1.42), "Spine2"),
        f"{_side}Arm": ((0.17 * _x, 0, 1.42), (0.45 * _x, 0, 1.42), f"{_side}Shoulder"),
        f"{_side}ForeArm": ((0.45 * _x, 0, 1.42), (0.7 * _x, 0, 1.42), f"{_side}Arm"),
        f"{_side}Hand": ((0.7 * _x, 0, 1.42), (0.8 * _x, 0, 1.42), f"{_side}ForeArm"),
        f"{_side}UpLeg": ((0.09 * _x, 0, 0.92), (0.09 * _x, 0, 0.5), "Hips"),
        f"{_side}Leg": ((0.09 * _x, 0, 0.5), (0.09 * _x, 0, 0.09), f"{_side}UpLeg"),
        f"{_side}Foot": ((0.09 * _x, 0, 0.09), (0.09 * _x, -0.12, 0.02), f"{_side}Leg"),
        f"{_side}ToeBase": ((0.09 * _x, -0.12, 0.02), (0.09 * _x, -0.18, 0.02), f"{_side}Foot"),
    })
MIXAMO_CHAINS = {"LeftArm": "upper_arm.L", "RightForeArm": "forearm.R", "LeftUpLeg": "thigh.L", "RightLeg": "shin.R",
                 "Spine2": "spine.02", "LeftShoulder": "clavicle.L"}


@pytest.fixture(scope="module")
def api(installed_addon):
    return AddonApi(installed_addon)


@pytest.fixture(scope="module")
def retarget(installed_addon):
    base = installed_addon.__name__
    return {name: import_module(f"{base}.retarget.{name}") for name in ("bake", "bone_maps", "rigify")}


@pytest.fixture(scope="module")
def solved(api, fixtures_dir, tmp_path_factory):
    """The CMU take (every 8th frame of its first 1600) solved once for the module."""
    take = take_from_cmu(api, cmu_take(fixtures_dir, step=8, stop=1600), tmp_path_factory.mktemp("take"))
    return take, api.solve.solve_take(take, api.solve.SolveOptions(**EXACT))


def _generate(metarig_edit=None) -> bpy.types.Object:
    bpy.ops.object.armature_human_metarig_add()
    metarig = bpy.context.object
    if metarig_edit is not None:
        bpy.ops.object.mode_set(mode="EDIT")
        metarig_edit(metarig.data.edit_bones)
        bpy.ops.object.mode_set(mode="OBJECT")
    bpy.ops.pose.rigify_generate()
    return metarig, bpy.context.object


def _lower_arms(edit_bones, degrees=45.0):
    """An A-pose metarig: each arm (with its hand and fingers) turned down about the shoulder joint."""
    for side, sign in ((".L", 1.0), (".R", -1.0)):
        upper = edit_bones["upper_arm" + side]
        pivot = upper.head.copy()
        turn = (Matrix.Translation(pivot) @ Matrix.Rotation(np.radians(degrees) * sign, 4, "Y")
                @ Matrix.Translation(-pivot))
        for bone in [upper, *upper.children_recursive]:
            bone.transform(turn)


@pytest.fixture(scope="module")
def rigs_blend(installed_addon, tmp_path_factory):
    """Rigify rigs generated once (about 4 s each) and written to a .blend that tests append from."""
    addon_utils.enable("rigify", default_set=True)
    fresh_scene()
    metarig, rig_t = _generate()
    metarig.name, rig_t.name = "test_metarig", "rigify_default"
    metarig_a, rig_a = _generate(_lower_arms)
    rig_a.name = "rigify_a_pose"
    bpy.data.objects.remove(metarig_a)
    path = tmp_path_factory.mktemp("rigs") / "rigify_rigs.blend"
    bpy.data.libraries.write(str(path), {metarig, rig_t, rig_a}, fake_user=True)
    return path


def _capture(api, solved):
    take, solution = solved
    return api.build.build_capture(bpy.context, take, solution, "cmu").rigs[0]


def _direction(obj, pose_bone) -> Vector:
    return (obj.matrix_world @ pose_bone.tail - obj.matrix_world @ pose_bone.head).normalized()


def _angle(a: Vector, b: Vector) -> float:
    return float(np.degrees(a.angle(b, 0.0)))


def _direction_errors(target, source, chains, frames):
    """Angles (degrees) between each target chain bone and its capture bone, per frame. (F, C)."""
    scene = bpy.context.scene
    errors = []
    for frame in frames:
        scene.frame_set(int(frame))
        errors.append([_angle(_direction(target, target.pose.bones[name]),
                              _direction(source, source.pose.bones[capture_bone]))
                       for name, capture_bone in chains.items()])
    return np.array(errors)


def _snapshot(obj):
    return ([b.matrix_local.copy() for b in obj.data.bones], obj.matrix_world.copy(),
            sum(len(pb.constraints) for pb in obj.pose.bones))


@pytest.fixture(scope="module")
def rigify_bakes(api, retarget, solved, rigs_blend):
    """One scene: the capture and both generated rigs appended, each retargeted once (the slow part, shared);
    the default rig with its IK controls baked, the A-pose rig without."""
    fresh_scene()
    source = _capture(api, solved)
    names = ("rigify_default", "rigify_a_pose")
    rigs = {name: retarget["bake"].append_target(f"{rigs_blend}:{name}") for name in names}
    objects_before = set(bpy.data.objects)
    bakes = {}
    for name, rig in rigs.items():
        before = _snapshot(rig)
        progress = []
        result = retarget["bake"].retarget_capture(bpy.context, source, rig, progress=progress.append,
                                                   bake_ik=name == "rigify_default")
        bakes[name] = (rig, result, before, progress, objects_before)
    return source, bakes


def test_rigify_deform_chains_follow_the_capture(rigify_bakes, api):
    source, bakes = rigify_bakes
    rig, result, before, progress, objects_before = bakes["rigify_default"]
    assert result.bone_map.name == "rigify"
    assert {"torso", "spine_fk", "upper_arm_fk.L", "forearm_fk.R", "thigh_fk.L", "shin_fk.R", "foot_fk.L"} <= {
        pair.target for pair in result.pairs}
    assert progress and progress[-1] == pytest.approx(1.0) and np.all(np.diff(progress) > 0)
    errors = _direction_errors(rig, source, RIGIFY_CHAINS, result.frames)
    assert np.median(errors) <= 2.0 and errors.max() <= 10.0, dict(zip(RIGIFY_CHAINS, errors.max(0)))
    # Nothing destructive and nothing left behind: rest data, object transform and constraints as before.
    rest, world, constraints = before
    after_rest, after_world, after_constraints = _snapshot(rig)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(rest, after_rest))
    assert np.allclose(world, after_world) and constraints == after_constraints
    assert set(bpy.data.objects) == objects_before


def test_rigify_switches_are_keyed_to_fk_and_keys_do_not_flip(rigify_bakes, api):
    source, bakes = rigify_bakes
    rig, result, *_ = bakes["rigify_default"]
    switch_bones = {switch.bone for switch in result.switches}
    assert {"upper_arm_parent.L", "upper_arm_parent.R", "thigh_parent.L", "thigh_parent.R"} <= switch_bones
    curves = api.actions.action_fcurves(rig)
    by_path = {}
    for curve in curves:
        by_path.setdefault(curve.data_path, []).append(curve)
    for switch in result.switches:
        (curve,) = by_path[switch.data_path]
        assert all(point.co[1] == 1.0 for point in curve.keyframe_points)  # Rigify: 1 = FK
        assert rig.pose.bones[switch.bone][switch.name] == 1.0
    if bpy.app.version >= (4, 4, 0):
        assert rig.animation_data.action_slot is not None
    rotation_paths = [path for path in by_path if path.endswith("rotation_quaternion")]
    assert len(rotation_paths) >= 14
    for path in rotation_paths:
        quats = np.stack([_keys(curve) for curve in sorted(by_path[path], key=lambda c: c.array_index)], axis=1)
        assert len(quats) == len(result.frames)
        dots = np.sum(quats[1:] * quats[:-1], axis=1)
        assert dots.min() >= 0.0, f"{path} flips between frames"
    # No sudden jumps: frame to frame, each driven bone turns (in the world) no more than its capture bone.
    scene = bpy.context.scene
    previous = None
    for frame in result.frames:
        scene.frame_set(int(frame))
        current = {pair.target: ((rig.matrix_world @ rig.pose.bones[pair.target].matrix).to_quaternion(),
                                 (source.matrix_world @ source.pose.bones[pair.source].matrix).to_quaternion())
                   for pair in result.pairs}
        if previous is not None:
            for name, (target_turn, source_turn) in current.items():
                target_step = _turn_degrees(target_turn, previous[name][0])
                source_step = _turn_degrees(source_turn, previous[name][1])
                assert target_step <= source_step + 2.0, (frame, name, target_step, source_step)
        previous = current


def _turn_degrees(a, b) -> float:
    return float(np.degrees(2 * np.arccos(min(1.0, abs(a.dot(b))))))


def _keys(curve) -> np.ndarray:
    values = np.empty(2 * len(curve.keyframe_points), np.float32)
    curve.keyframe_points.foreach_get("co", values)
    return values[1::2]


def _limb_poses(rig, frames):
    """Directions (F, C, 3) and world heads (F, C, 3) of the IK_CHAINS bones, frame by frame."""
    directions, heads = [], []
    for frame in frames:
        bpy.context.scene.frame_set(int(frame))
        bones = [rig.pose.bones[name] for name in IK_CHAINS]
        directions.append([tuple(_direction(rig, bone)) for bone in bones])
        heads.append([tuple(rig.matrix_world @ bone.head) for bone in bones])
    return np.array(directions), np.array(heads)


def _set_switch_keys(curves, value: float) -> None:
    for curve in curves:
        for point in curve.keyframe_points:
            point.co[1] = value
        curve.update()


def test_rigify_ik_controls_give_the_fk_pose(rigify_bakes, api):
    source, bakes = rigify_bakes
    rig, result, *_ = bakes["rigify_default"]
    assert {"hand_ik.L", "hand_ik.R", "upper_arm_ik_target.L", "upper_arm_ik.R", "foot_ik.L", "foot_ik.R",
            "thigh_ik_target.R", "thigh_ik.L", "toe_ik.L", "foot_heel_ik.R"} <= set(result.ik_controls)
    by_path = {}
    for curve in api.actions.action_fcurves(rig):
        by_path.setdefault(curve.data_path, []).append(curve)
    for name in ("hand_ik.L", "foot_ik.R"):
        assert len(by_path[f'pose.bones["{name}"].location']) == 3
        assert len(by_path[f'pose.bones["{name}"].rotation_quaternion']) == 4
    assert len(by_path['pose.bones["upper_arm_ik_target.L"].location']) == 3
    assert len(by_path['pose.bones["thigh_ik.R"].rotation_euler']) == 3  # the control's own mode (ZXY)
    switch_curves = [curve for switch in result.switches for curve in by_path[switch.data_path]]
    limb_switches = [switch.bone for switch in result.switches if switch.bone.startswith(("upper_arm", "thigh"))]
    assert len(limb_switches) == 4 and not any(rig.pose.bones[bone]["pole_vector"] for bone in limb_switches)

    fk_directions, fk_heads = _limb_poses(rig, result.frames)
    ends = [IK_CHAINS.index(name) for name in ("DEF-hand.L", "DEF-hand.R", "DEF-foot.L", "DEF-foot.R")]
    hand_curves = by_path['pose.bones["hand_ik.L"].location']
    try:
        _set_switch_keys(switch_curves, 0.0)  # every limb to IK, as a user flips the switches
        for use_pole in (False, True):
            for bone in limb_switches:
                rig.pose.bones[bone]["pole_vector"] = use_pole
            rig.update_tag()  # a custom property set from Python does not re-run the drivers that read it
            directions, heads = _limb_poses(rig, result.frames)
            cosines = np.clip(np.sum(directions * fk_directions, axis=2), -1.0, 1.0)
            errors = np.degrees(np.arccos(cosines))
            assert np.median(errors) <= 2.0 and errors.max() <= 10.0, (use_pole, dict(zip(IK_CHAINS, errors.max(0))))
            offsets = np.linalg.norm(heads - fk_heads, axis=2)
            assert np.median(offsets[:, ends]) < 0.01 and offsets[:, ends].max() < 0.02, (use_pole, offsets.max(0))
        # The limbs really follow the IK controls now: without the hand control's keys the left hand stays put.
        for curve in hand_curves:
            curve.mute = True
        _, unkeyed_heads = _limb_poses(rig, result.frames[::10])
        moved = np.linalg.norm(unkeyed_heads - fk_heads[::10], axis=2)[:, IK_CHAINS.index("DEF-hand.L")]
        assert np.median(moved) > 0.1
    finally:
        for curve in hand_curves:
            curve.mute = False
        for bone in limb_switches:
            rig.pose.bones[bone]["pole_vector"] = False
        rig.update_tag()
        _set_switch_keys(switch_curves, 1.0)


def test_without_bake_ik_the_ik_controls_are_not_keyed(rigify_bakes, api, retarget):
    source, bakes = rigify_bakes
    rig, result, *_ = bakes["rigify_a_pose"]
    assert result.ik_controls == []
    keyed = {curve.data_path.split('"')[1] for curve in api.actions.action_fcurves(rig)}
    limbs, missing = retarget["rigify"].ik_limbs(rig)
    assert len(limbs) == 4 and not missing
    assert keyed and not keyed & {name for limb in limbs for name in limb.controls}


def test_feet_stay_on_the_floor(rigify_bakes):
    source, bakes = rigify_bakes
    rig, result, *_ = bakes["rigify_default"]
    scene = bpy.context.scene
    rest_ankle = {side: (rig.matrix_world @ rig.data.bones["DEF-foot" + side].head_local).z for side in (".L", ".R")}
    source_rest = {side: (source.matrix_world @ source.data.bones["foot" + side].head_local).z
                   for side in (".L", ".R")}
    planted_heights = []
    for frame in result.frames:
        scene.frame_set(int(frame))
        for side in (".L", ".R"):
            source_ankle = (source.matrix_world @ source.pose.bones["foot" + side].head).z
            if abs(source_ankle - source_rest[side]) < 0.02:
                target_ankle = (rig.matrix_world @ rig.pose.bones["DEF-foot" + side].head).z
                planted_heights.append(target_ankle - rest_ankle[side])
    assert len(planted_heights) > 20, "the clip has planted feet"
    planted_heights = np.abs(planted_heights)
    # Target and capture legs differ in proportions (thigh/shin ratio, hip width), so a planted ankle lands
    # within centimetres of the target's own rest ankle height, not exactly on it.
    assert np.median(planted_heights) < 0.02 and np.percentile(planted_heights, 90) < 0.05
    assert planted_heights.max() < 0.08, planted_heights.max()
    assert 0.5 < result.scale < 2.0


def test_a_pose_target_gets_the_same_motion(rigify_bakes):
    source, bakes = rigify_bakes
    default_rig, result, *_ = bakes["rigify_default"]
    a_pose_rig, a_result, *_ = bakes["rigify_a_pose"]
    arm = a_pose_rig.data.bones["DEF-upper_arm.L"]
    assert (arm.tail_local - arm.head_local).normalized().z < -0.8, "the A-pose rig's arms point down at rest"
    errors = _direction_errors(a_pose_rig, source, RIGIFY_CHAINS, a_result.frames)
    assert np.median(errors) <= 2.0 and errors.max() <= 10.0
    scene = bpy.context.scene
    for frame in a_result.frames[::10]:
        scene.frame_set(int(frame))
        for name in ("DEF-upper_arm.L", "DEF-forearm.R", "DEF-forearm.L", "DEF-shoulder.R", "DEF-thigh.L"):
            assert _angle(_direction(default_rig, default_rig.pose.bones[name]),
                          _direction(a_pose_rig, a_pose_rig.pose.bones[name])) < 2.0, (frame, name)


def test_metarig_is_refused_with_what_to_do(retarget, api, solved, rigs_blend):
    fresh_scene()
    source = _capture(api, solved)
    metarig = retarget["bake"].append_target(f"{rigs_blend}:test_metarig")
    with pytest.raises(retarget["bake"].RetargetError, match="metarig: click Generate Rig"):
        retarget["bake"].retarget_capture(bpy.context, source, metarig)
    assert metarig.animation_data is None or metarig.animation_data.action is None


def test_append_target_names_the_armatures_when_ambiguous(retarget, rigs_blend, tmp_path):
    fresh_scene()
    bake = retarget["bake"]
    with pytest.raises(bake.RetargetError, match="rigify_a_pose.*rigify_default.*test_metarig"):
        bake.append_target(str(rigs_blend))
    with pytest.raises(bake.RetargetError, match="no armature object 'nope'"):
        bake.append_target(f"{rigs_blend}:nope")
    with pytest.raises(bake.RetargetError, match="does not exist"):
        bake.append_target(str(tmp_path / "missing.blend"))
    assert len(bpy.data.objects) == 0 and len(bpy.data.libraries) == 0


def _mixamo_armature(prefix="mixamorig:") -> bpy.types.Object:
    """A T-pose Mixamo skeleton as FBX imports bring it: centimetre bones under an object scaled by 0.01."""
    data = bpy.data.armatures.new("mixamo")
    obj = bpy.data.objects.new("mixamo", data)
    bpy.context.scene.collection.objects.link(obj)
    obj.scale = (0.01, 0.01, 0.01)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    for name, (head, tail, _) in MIXAMO_REST.items():
        bone = data.edit_bones.new(prefix + name)
        bone.head, bone.tail = Vector(head) * 100, Vector(tail) * 100
        bone.roll = 0.3  # an arbitrary roll: the retarget must not depend on it
    for name, (_, _, parent) in MIXAMO_REST.items():
        if parent:
            data.edit_bones[prefix + name].parent = data.edit_bones[prefix + parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    for pose_bone in obj.pose.bones:
        pose_bone.rotation_mode = "XYZ"  # Euler like an FBX import; keys must follow the bone's own mode
    return obj


def test_mixamo_armature_through_its_preset_and_reruns_replace(retarget, api, solved):
    fresh_scene()
    source = _capture(api, solved)
    mixamo = _mixamo_armature()
    bake = retarget["bake"]
    result = bake.retarget_capture(bpy.context, source, mixamo)
    assert result.bone_map.name == "mixamo" and result.root_bone == "mixamorig:Hips"
    with pytest.raises(bake.RetargetError, match="not a generated Rigify rig"):
        bake.retarget_capture(bpy.context, source, mixamo, bake_ik=True)
    assert mixamo.animation_data.action == result.action
    chains = {f"mixamorig:{name}": bone for name, bone in MIXAMO_CHAINS.items()}
    errors = _direction_errors(mixamo, source, chains, result.frames[::3])
    assert np.median(errors) <= 2.0 and errors.max() <= 10.0, dict(zip(chains, errors.max(0)))
    paths = {curve.data_path for curve in api.actions.action_fcurves(mixamo)}
    assert 'pose.bones["mixamorig:LeftArm"].rotation_euler' in paths
    first_name = mixamo.animation_data.action.name

    # Again, in place: the first action is replaced (not stacked), the hips no longer travel.
    again = bake.retarget_capture(bpy.context, source, mixamo, root_motion="in_place")
    assert again.action.name == first_name  # the old one is gone and the new one took its name
    ours = [a for a in bpy.data.actions if a.get(api.naming.PROP_ROLE) == bake.ROLE_RETARGET_ACTION]
    assert ours == [again.action] and mixamo.animation_data.action == again.action
    hips = []
    for frame in again.frames[::5]:
        bpy.context.scene.frame_set(int(frame))
        hips.append(tuple(mixamo.matrix_world @ mixamo.pose.bones["mixamorig:Hips"].head))
    hips = np.array(hips)
    assert np.ptp(hips[:, 0]) < 0.1 and np.ptp(hips[:, 1]) < 0.1 and np.ptp(hips[:, 2]) > 0.05
    assert sum(len(pb.constraints) for pb in mixamo.pose.bones) == 0
    assert len(bpy.data.objects) == 3  # capture camera, capture rig, target: no helpers


def test_bone_maps_auto_detect_and_round_trip(retarget, rigs_blend, tmp_path):
    fresh_scene()
    bone_maps = retarget["bone_maps"]
    presets = bone_maps.load_presets()
    assert {"rigify", "rigify_metarig_names", "mixamo"} <= set(presets)
    rig = retarget["bake"].append_target(f"{rigs_blend}:rigify_default")
    metarig = retarget["bake"].append_target(f"{rigs_blend}:test_metarig")
    assert bone_maps.auto_detect(rig.data.bones.keys()).name == "rigify"
    assert bone_maps.auto_detect(metarig.data.bones.keys()).name == "rigify_metarig_names"
    unprefixed = [name for name in MIXAMO_REST]
    assert bone_maps.auto_detect(unprefixed).name == "mixamo"
    assert bone_maps.resolve_name("LeftArm", ["mixamorig1:LeftArm"]) == "mixamorig1:LeftArm"
    assert bone_maps.auto_detect(["Bone", "Bone.001"]) is None
    path = bone_maps.save_map(presets["mixamo"], tmp_path / "maps" / "mine")
    assert path.suffix == ".json" and json.loads(path.read_text())["bones"][0]["source"] == "pelvis"
    assert bone_maps.load_map(path) == presets["mixamo"]
    (tmp_path / "broken.json").write_text('{"bones": [{"source": "pelvis"}]}')
    with pytest.raises(bone_maps.BoneMapError, match="broken.json.*'source' and 'target'"):
        bone_maps.load_map(tmp_path / "broken.json")


def test_panel_operators_fill_the_map_and_retarget(retarget, api, solved, tmp_path):
    fresh_scene()
    source = _capture(api, solved)
    mixamo = _mixamo_armature(prefix="")
    panel_class = bpy.types.VIEW3D_PT_instanthmr_retarget
    assert panel_class.bl_parent_id == "VIEW3D_PT_instanthmr_capture" and panel_class.bl_category == "InstantHMR"
    settings = bpy.context.scene.instanthmr_retarget
    settings.source_rig, settings.target_rig = source, mixamo
    assert bpy.ops.instanthmr.retarget_auto_detect() == {"FINISHED"}
    assert settings.map_name == "mixamo" and len(settings.pairs) > 20
    # Drop the legs from the map: the operator bakes exactly what the list says.
    for index in reversed(range(len(settings.pairs))):
        if settings.pairs[index].source.startswith(("thigh", "shin", "foot")):
            settings.active_pair = index
            assert bpy.ops.instanthmr.retarget_pair_remove() == {"FINISHED"}
    settings.map_path = str(tmp_path / "no_legs.json")
    assert bpy.ops.instanthmr.retarget_map_save("EXEC_DEFAULT", filepath=settings.map_path) == {"FINISHED"}
    settings.pairs.clear()
    assert bpy.ops.instanthmr.retarget_map_load("EXEC_DEFAULT", filepath=settings.map_path) == {"FINISHED"}
    settings.auto_scale, settings.scale = False, 1.0
    settings.bake_ik = True  # passed on to the bake, which has no IK controls to key on a Mixamo skeleton
    with pytest.raises(RuntimeError, match="not a generated Rigify rig"):
        bpy.ops.instanthmr.retarget()
    settings.bake_ik = False
    assert bpy.ops.instanthmr.retarget() == {"FINISHED"}
    paths = {curve.data_path.split('"')[1] for curve in api.actions.action_fcurves(mixamo)}
    assert "LeftArm" in paths and "LeftUpLeg" not in paths


def test_headless_retarget_to_a_rigify_rig(api, solved, rigs_blend, tmp_path):
    """capture.py --retarget-to PATH.blend:OBJECT appends the rig and bakes the capture onto it."""
    import os
    import subprocess
    import sys

    take, _ = solved
    take_path = api.take.save_take(take, tmp_path / "cmu.npz")
    script = Path(os.environ["BLENDER_USER_RESOURCES"]) / "extensions" / "user_default" / "instanthmr" / "capture.py"

    def run(*args):
        return subprocess.run([sys.executable, str(script), "--take", str(take_path), "--out",
                               str(tmp_path / "retarget.blend"), *args], capture_output=True, text=True, timeout=900)

    result = run("--retarget-to", f"{rigs_blend}:rigify_default", "--retarget-root-motion", "in_place",
                 "--retarget-bake-ik")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "capture: retarget" in result.stdout and "onto rigify_default" in result.stdout
    bad = run("--retarget-to", f"{rigs_blend}:no_such_rig")
    assert bad.returncode == 2 and "no_such_rig" in bad.stderr.strip().splitlines()[-1]
    missing = run("--retarget-to", str(tmp_path / "nope.blend"))
    assert missing.returncode == 2 and "nope.blend" in missing.stderr.strip().splitlines()[-1]
