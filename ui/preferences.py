"""Add-on preferences: where the model files live (a folder, or one path per model)."""

from pathlib import Path

import bpy

# The extension's own package (`bl_ext.<repo>.instanthmr`): preferences are keyed by it, never by a literal.
ADDON_PACKAGE = __package__.rpartition(".")[0]

# Model name in the engine's registry -> the preference that can point at a file directly.
MODEL_PATH_PROPERTIES = {"instanthmr": "instanthmr_path", "rfdetr-nano": "detector_path"}


class INSTANTHMR_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    model_folder: bpy.props.StringProperty(
        name="Model folder",
        description="Folder holding the model files. Empty: the extension's own user folder "
        "(kept across updates of the extension)",
        subtype="DIR_PATH",
        default="",
    )
    instanthmr_path: bpy.props.StringProperty(
        name="InstantHMR model",
        description="Path of instanthmr.onnx. Empty: look for it in the model folder",
        subtype="FILE_PATH",
        default="",
    )
    detector_path: bpy.props.StringProperty(
        name="Detector model",
        description="Path of an RF-DETR ONNX export. Empty: look for it in the model folder",
        subtype="FILE_PATH",
        default="",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "model_folder")
        layout.label(text=f"In use: {model_folder(self)}", icon="FILE_FOLDER")
        layout.prop(self, "instanthmr_path")
        layout.prop(self, "detector_path")
        column = layout.column(align=True)
        for name in MODEL_PATH_PROPERTIES:
            path = model_path(self, name)
            if path.is_file():
                column.label(text=f"{name}: {path}", icon="CHECKMARK")
            else:
                column.label(text=f"{name}: missing ({path})", icon="ERROR")
        layout.operator("instanthmr.check_models", icon="VIEWZOOM")


def get_preferences(context=None) -> INSTANTHMR_AP_preferences:
    context = context or bpy.context
    return context.preferences.addons[ADDON_PACKAGE].preferences


def model_folder(prefs: INSTANTHMR_AP_preferences, *, create: bool = False) -> Path:
    """The folder models are looked for in and downloaded to."""
    if prefs.model_folder:
        folder = Path(bpy.path.abspath(prefs.model_folder))
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="models", create=create))


def model_path(prefs: INSTANTHMR_AP_preferences, name: str) -> Path:
    """Where model `name` is expected: its own preference when set, else its file name in the model folder."""
    from ..instanthmr_blender.model_files import KNOWN_MODELS

    explicit = getattr(prefs, MODEL_PATH_PROPERTIES.get(name, ""), "")
    if explicit:
        return Path(bpy.path.abspath(explicit))
    return model_folder(prefs) / KNOWN_MODELS[name].filename


classes = (INSTANTHMR_AP_preferences,)
register, unregister = bpy.utils.register_classes_factory(classes)
