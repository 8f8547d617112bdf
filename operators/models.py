"""Operators about the model files: report which are present and where the missing ones are expected."""

import bpy

from ..ui.preferences import MODEL_PATH_PROPERTIES, get_preferences, model_path


class INSTANTHMR_OT_check_models(bpy.types.Operator):
    """Report which model files are present and where missing ones are expected"""

    bl_idname = "instanthmr.check_models"
    bl_label = "Check Model Files"
    bl_options = {"REGISTER"}

    def execute(self, context):
        prefs = get_preferences(context)
        missing = []
        for name in MODEL_PATH_PROPERTIES:
            path = model_path(prefs, name)
            if path.is_file():
                self.report({"INFO"}, f"{name}: {path}")
            else:
                missing.append(f"{name} ({path})")
        if missing:
            self.report({"WARNING"}, "Missing model files: " + ", ".join(missing))
        return {"FINISHED"}


classes = (INSTANTHMR_OT_check_models,)
register, unregister = bpy.utils.register_classes_factory(classes)
