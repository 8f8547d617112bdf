"""The "Retarget" sub-panel of the capture panel: source capture rig, target armature, the editable bone map,
root motion and scale, and the Retarget button. Its settings live on the scene (saved with the file)."""

import bpy

from ..scene import naming
from . import bake, bone_maps


def _is_capture_rig(self, obj) -> bool:
    return obj.type == "ARMATURE" and obj.get(naming.PROP_ROLE) == bake.ROLE_CAPTURE_RIG


def _is_target_armature(self, obj) -> bool:
    return obj.type == "ARMATURE" and obj.get(naming.PROP_ROLE) != bake.ROLE_CAPTURE_RIG


class INSTANTHMR_PG_bone_pair(bpy.types.PropertyGroup):
    source: bpy.props.StringProperty(name="Source", description="Bone of the capture rig")
    target: bpy.props.StringProperty(name="Target", description="Bone of the target armature it drives")
    mode: bpy.props.EnumProperty(
        name="Mode",
        items=(("direction", "Direction", "Turn the bone so it points where the source bone points, with its twist"),
               ("rotation", "Rotation", "Copy the source bone's change of orientation (for control bones)")),
        default="direction",
    )


class INSTANTHMR_PG_retarget(bpy.types.PropertyGroup):
    source_rig: bpy.props.PointerProperty(
        name="Capture", type=bpy.types.Object, poll=_is_capture_rig,
        description="The capture rig whose motion is retargeted")
    target_rig: bpy.props.PointerProperty(
        name="Target", type=bpy.types.Object, poll=_is_target_armature,
        description="The armature that receives the motion (a generated Rigify rig, a Mixamo skeleton, ...)")
    pairs: bpy.props.CollectionProperty(type=INSTANTHMR_PG_bone_pair)
    active_pair: bpy.props.IntProperty(name="Active pair", default=0)
    map_name: bpy.props.StringProperty(name="Map", description="The preset or file the mapping came from")
    root_bone: bpy.props.StringProperty(name="Root bone", description="Target bone that carries the root motion")
    root_motion: bpy.props.EnumProperty(name="Root motion", items=bake.ROOT_MOTION_ITEMS, default="full")
    auto_scale: bpy.props.BoolProperty(
        name="Automatic scale", default=True,
        description="Scale the root motion by the ratio of the target's leg length to the capture's")
    scale: bpy.props.FloatProperty(name="Scale", default=1.0, min=0.001, soft_max=10.0,
                                   description="Target size / capture size, used for the root motion")
    bake_ik: bpy.props.BoolProperty(
        name="Bake IK controls", default=False,
        description="Rigify targets: also key the hand / foot IK controls, poles and IK bases so that switching a "
                    "limb to IK gives the same pose (the IK/FK switches stay at FK)")
    map_path: bpy.props.StringProperty(name="Map file", subtype="FILE_PATH",
                                       description="JSON file for Save Map / Load Map")

    def to_bone_map(self) -> bone_maps.BoneMap:
        pairs = [bone_maps.BonePair(pair.source, pair.target, pair.mode) for pair in self.pairs
                 if pair.source and pair.target]
        return bone_maps.BoneMap(self.map_name or "custom", pairs, root=self.root_bone)

    def fill(self, bone_map: bone_maps.BoneMap) -> None:
        self.pairs.clear()
        for pair in bone_map.pairs:
            item = self.pairs.add()
            item.source, item.target, item.mode = pair.source, pair.target, pair.mode
        self.map_name, self.root_bone = bone_map.name, bone_map.root
        self.active_pair = 0


def get_settings(context) -> INSTANTHMR_PG_retarget:
    return context.scene.instanthmr_retarget


class INSTANTHMR_UL_bone_pairs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0, flt_flag=0):
        settings = data
        row = layout.row(align=True)
        row.label(text=item.source or "(source)")
        target = settings.target_rig
        if target is not None and target.type == "ARMATURE":
            found = bone_maps.resolve_name(item.target, target.data.bones.keys()) if item.target else None
            row.prop_search(item, "target", target.data, "bones", text="",
                            icon="BONE_DATA" if found else "ERROR")
        else:
            row.prop(item, "target", text="")


class VIEW3D_PT_instanthmr_retarget(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "InstantHMR"
    bl_label = "Retarget"
    bl_parent_id = "VIEW3D_PT_instanthmr_capture"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        settings = get_settings(context)
        layout.prop(settings, "source_rig")
        layout.prop(settings, "target_rig")

        row = layout.row(align=True)
        row.label(text=f"Map: {settings.map_name or 'none'}")
        row.operator("instanthmr.retarget_auto_detect", text="Auto-detect", icon="VIEWZOOM")
        row = layout.row()
        row.template_list("INSTANTHMR_UL_bone_pairs", "", settings, "pairs", settings, "active_pair", rows=6)
        column = row.column(align=True)
        column.operator("instanthmr.retarget_pair_add", text="", icon="ADD")
        column.operator("instanthmr.retarget_pair_remove", text="", icon="REMOVE")
        if settings.target_rig is not None:
            layout.prop_search(settings, "root_bone", settings.target_rig.data, "bones")

        box = layout.box()
        box.prop(settings, "map_path")
        row = box.row(align=True)
        row.operator("instanthmr.retarget_map_save", text="Save Map", icon="EXPORT")
        row.operator("instanthmr.retarget_map_load", text="Load Map", icon="IMPORT")

        layout.prop(settings, "root_motion")
        row = layout.row(align=True)
        row.prop(settings, "auto_scale")
        sub = row.row(align=True)
        sub.enabled = not settings.auto_scale
        sub.prop(settings, "scale")
        layout.prop(settings, "bake_ik")
        layout.operator("instanthmr.retarget", icon="ARMATURE_DATA")


classes = (INSTANTHMR_PG_bone_pair, INSTANTHMR_PG_retarget, INSTANTHMR_UL_bone_pairs, VIEW3D_PT_instanthmr_retarget)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.instanthmr_retarget = bpy.props.PointerProperty(type=INSTANTHMR_PG_retarget)


def unregister() -> None:
    del bpy.types.Scene.instanthmr_retarget
    _unregister_classes()
