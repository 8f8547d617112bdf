"""The "Capture from video" panel in the 3D viewport's sidebar (N-panel), tab "InstantHMR"."""

import bpy

from .preferences import MODEL_PATH_PROPERTIES, get_preferences, model_path


class VIEW3D_PT_instanthmr_capture(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "InstantHMR"
    bl_label = "Capture from video"

    def draw(self, context):
        layout = self.layout
        prefs = get_preferences(context)
        missing = [name for name in MODEL_PATH_PROPERTIES if not model_path(prefs, name).is_file()]
        if missing:
            box = layout.box()
            box.label(text="Model files missing: " + ", ".join(missing), icon="ERROR")
            box.label(text="Set them in the add-on preferences")
        layout.operator("instanthmr.check_models", icon="VIEWZOOM")


classes = (VIEW3D_PT_instanthmr_capture,)
register, unregister = bpy.utils.register_classes_factory(classes)
