"""Retarget operators: bake the capture onto the target, auto-detect the bone map, edit it, save and load it."""

import bpy
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import bake, bone_maps, rigify
from .panel import get_settings

_USER_ERRORS = (bake.RetargetError, rigify.RigifyTargetError, bone_maps.BoneMapError)


class INSTANTHMR_OT_retarget(bpy.types.Operator):
    """Bake the capture rig's motion onto the target armature as a new action (replaces an earlier retarget)"""

    bl_idname = "instanthmr.retarget"
    bl_label = "Retarget"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        settings = get_settings(context)
        return settings.source_rig is not None and settings.target_rig is not None

    def execute(self, context):
        settings = get_settings(context)
        bone_map = settings.to_bone_map() if len(settings.pairs) else None
        window_manager = context.window_manager
        window_manager.progress_begin(0, 100)
        try:
            result = bake.retarget_capture(
                context, settings.source_rig, settings.target_rig, bone_map=bone_map,
                root_motion=settings.root_motion, scale=None if settings.auto_scale else settings.scale,
                bake_ik=settings.bake_ik,
                progress=lambda fraction: window_manager.progress_update(int(fraction * 100)),
            )  # fmt: skip
        except _USER_ERRORS as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        finally:
            window_manager.progress_end()
        if not len(settings.pairs):
            settings.fill(result.bone_map)
        if settings.auto_scale:
            settings.scale = result.scale
        ik_note = f" and {len(result.ik_controls)} IK controls" if result.ik_controls else ""
        self.report({"INFO"}, f"Baked {len(result.frames)} frames onto {len(result.pairs)} bones{ik_note} of "
                              f"`{settings.target_rig.name}` (action `{result.action.name}`)")
        return {"FINISHED"}


class INSTANTHMR_OT_retarget_auto_detect(bpy.types.Operator):
    """Fill the bone map with the preset that matches most bones of the target armature"""

    bl_idname = "instanthmr.retarget_auto_detect"
    bl_label = "Auto-detect Bone Map"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return get_settings(context).target_rig is not None

    def execute(self, context):
        settings = get_settings(context)
        target = settings.target_rig
        try:
            rigify.check_target(target)
        except rigify.RigifyTargetError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        bone_map = bone_maps.auto_detect(target.data.bones.keys())
        if bone_map is None:
            self.report({"ERROR"}, f"no preset matches the bones of `{target.name}`: add the pairs by hand or "
                                   "load a saved map")
            return {"CANCELLED"}
        settings.fill(bone_map)
        found = bone_maps.matched_targets(bone_map, target.data.bones.keys())
        self.report({"INFO"}, f"Preset `{bone_map.label or bone_map.name}`: {found} bones found")
        return {"FINISHED"}


class INSTANTHMR_OT_retarget_pair_add(bpy.types.Operator):
    """Add a source -> target pair to the bone map"""

    bl_idname = "instanthmr.retarget_pair_add"
    bl_label = "Add Bone Pair"
    bl_options = {"REGISTER", "UNDO"}

    source: bpy.props.StringProperty(name="Source bone")
    target: bpy.props.StringProperty(name="Target bone")

    def execute(self, context):
        settings = get_settings(context)
        item = settings.pairs.add()
        item.source, item.target = self.source, self.target
        settings.active_pair = len(settings.pairs) - 1
        return {"FINISHED"}


class INSTANTHMR_OT_retarget_pair_remove(bpy.types.Operator):
    """Remove the selected pair from the bone map"""

    bl_idname = "instanthmr.retarget_pair_remove"
    bl_label = "Remove Bone Pair"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        settings = get_settings(context)
        return 0 <= settings.active_pair < len(settings.pairs)

    def execute(self, context):
        settings = get_settings(context)
        settings.pairs.remove(settings.active_pair)
        settings.active_pair = min(settings.active_pair, len(settings.pairs) - 1)
        return {"FINISHED"}


class _BoneMapFile:
    """A bone-map JSON file: the remembered map path when there is one, else the file browser."""

    filename_ext = ".json"
    filter_glob: bpy.props.StringProperty(default="*.json", options={"HIDDEN"})

    def invoke(self, context, event):
        path = get_settings(context).map_path
        if path:
            self.filepath = bpy.path.abspath(path)
            return self.execute(context)
        return super().invoke(context, event)


class INSTANTHMR_OT_retarget_map_save(_BoneMapFile, bpy.types.Operator, ExportHelper):
    """Save the bone map as JSON (the presets' format)"""

    bl_idname = "instanthmr.retarget_map_save"
    bl_label = "Save Bone Map"

    def execute(self, context):
        settings = get_settings(context)
        if not len(settings.pairs):
            self.report({"ERROR"}, "the bone map is empty: Auto-detect or add pairs first")
            return {"CANCELLED"}
        try:
            path = bone_maps.save_map(settings.to_bone_map(), bpy.path.abspath(self.filepath))
        except OSError as error:
            self.report({"ERROR"}, f"could not write `{self.filepath}` ({error}): pick a writable folder")
            return {"CANCELLED"}
        settings.map_path = str(path)
        self.report({"INFO"}, f"Saved {len(settings.pairs)} pairs to {path}")
        return {"FINISHED"}


class INSTANTHMR_OT_retarget_map_load(_BoneMapFile, bpy.types.Operator, ImportHelper):
    """Load a bone map saved as JSON"""

    bl_idname = "instanthmr.retarget_map_load"
    bl_label = "Load Bone Map"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        settings = get_settings(context)
        try:
            bone_map = bone_maps.load_map(bpy.path.abspath(self.filepath))
        except bone_maps.BoneMapError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        settings.fill(bone_map)
        settings.map_path = self.filepath
        self.report({"INFO"}, f"Loaded {len(bone_map.pairs)} pairs from {self.filepath}")
        return {"FINISHED"}


classes = (
    INSTANTHMR_OT_retarget,
    INSTANTHMR_OT_retarget_auto_detect,
    INSTANTHMR_OT_retarget_pair_add,
    INSTANTHMR_OT_retarget_pair_remove,
    INSTANTHMR_OT_retarget_map_save,
    INSTANTHMR_OT_retarget_map_load,
)
register, unregister = bpy.utils.register_classes_factory(classes)
