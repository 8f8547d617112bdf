"""Add-on preferences: where the model files live (a folder, or one path per model), downloads, default device,
threads."""

import functools
from pathlib import Path

import bpy

# The extension's own package (`bl_ext.<repo>.instanthmr`): preferences are keyed by it, never by a literal.
ADDON_PACKAGE = __package__.rpartition(".")[0]

# Models the capture needs, in the engine's registry; the detector file depends on the chosen variant.
DOWNLOADABLE_MODELS = ("instanthmr", "rfdetr-nano")


def _device_items(self, context):
    from ..instanthmr_blender.runtime import available_devices

    items = [(name, name.upper() if name != "auto" else "Automatic", f"Default device: {name}")
             for name in available_devices()]
    _device_items.cache = items
    return items


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
        description="Path of an RF-DETR ONNX export. Empty: rfdetr-<variant>.onnx in the model folder",
        subtype="FILE_PATH",
        default="",
    )
    mhr_model_path: bpy.props.StringProperty(
        name="MHR module",
        description="Meta's MHR TorchScript module (mhr_model.pt) for the optional body mesh. Empty: extracted "
        "from the MHR release archive in the model folder (downloaded when online access is on)",
        subtype="FILE_PATH",
        default="",
    )
    mesh_python: bpy.props.StringProperty(
        name="Python for the body mesh",
        description="A Python executable with PyTorch installed, used for the body mesh when Blender's own Python "
        "has no PyTorch (the mesh step runs there as a separate process). Empty: Blender's own Python",
        subtype="FILE_PATH",
        default="",
    )
    default_device: bpy.props.EnumProperty(
        name="Default device", items=_device_items,
        description="Where the models run unless a capture picks another device (only those available here)")
    hmr_precision: bpy.props.EnumProperty(
        name="InstantHMR precision",
        items=(("AS_GIVEN", "As Given", "The InstantHMR file as it is (fp16 files run as fp32 on the CPU)"),
               ("INT8", "INT8", "The INT8 version made by tools/quantize_hmr.py from your clip: faster on the "
                "CPU, at the fidelity its report shows")),
        default="AS_GIVEN",
        description="Which version of InstantHMR captures use")
    threads: bpy.props.IntProperty(
        name="Threads", default=0, min=0, max=64,
        description="CPU threads per model (0: let ONNX Runtime decide); lower it to keep Blender snappy")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "model_folder")
        layout.label(text=f"In use: {model_folder(self)}", icon="FILE_FOLDER")
        layout.prop(self, "instanthmr_path")
        layout.prop(self, "detector_path")
        column = layout.column(align=True)
        for name, path in (("InstantHMR", model_path(self, "instanthmr")),
                           ("Detector", detector_model_path(self, "nano"))):
            if path.is_file():
                column.label(text=f"{name}: {path}", icon="CHECKMARK")
            else:
                column.label(text=f"{name}: missing ({path})", icon="ERROR")
        draw_int8_choice(self, layout)
        row = layout.row()
        row.operator("instanthmr.check_models", icon="VIEWZOOM")
        if bpy.app.online_access:
            row.operator("instanthmr.download_models", icon="IMPORT")
        else:
            layout.label(text="Downloads need Blender's online access (Preferences > System > Network)",
                         icon="INFO")
        progress = context.window_manager.instanthmr_download
        if progress.running:
            layout.progress(factor=progress.factor, text=progress.status)
        layout.prop(self, "default_device")
        layout.prop(self, "threads")
        box = layout.box()
        box.label(text="Optional body mesh (MHR, needs PyTorch)")
        box.prop(self, "mhr_model_path")
        box.prop(self, "mesh_python")
        if bpy.app.online_access and not self.mhr_model_path:
            box.operator("instanthmr.download_models", text="Download MHR Module", icon="IMPORT").models = "mhr-assets"
        if not mesh_available(self):
            box.label(text="No PyTorch in Blender's Python: point 'Python for the body mesh' at a Python with "
                      "torch installed", icon="INFO")


def draw_int8_choice(prefs, layout) -> None:
    """Offer the INT8 InstantHMR only when it exists, with its measured fidelity shown; the user chooses."""
    from ..instanthmr_blender.quantized import find_int8

    found = find_int8(model_path(prefs, "instanthmr"))
    box = layout.box()
    if found is None:
        box.label(text="No INT8 InstantHMR: tools/quantize_hmr.py makes one from your clip, fidelity measured",
                  icon="INFO")
        return
    int8, report = found
    box.label(text=f"{int8.name}: {report.speed_up:.2f}x faster than fp32 on the CPU "
              f"({report.int8_ms:.0f} vs {report.fp32_ms:.0f} ms per person)", icon="CHECKMARK")
    box.label(text=f"Off from fp32 by {report.mm_3d_mean:.1f} mm 3D (p95 {report.mm_3d_p95:.1f}, aligned "
              f"{report.mm_3d_aligned_mean:.1f}), {report.px_2d_mean:.1f} px 2D; jitter {report.jitter_fp32_mm:.1f}"
              f" -> {report.jitter_int8_mm:.1f} mm/frame^2 ({report.held_out_crops} crops of {report.clip})")
    box.prop(prefs, "hmr_precision", expand=True)


def mesh_available(prefs: INSTANTHMR_AP_preferences) -> bool:
    """Whether the body mesh can run: PyTorch in Blender's Python, or a separate Python set in the preferences."""
    return bool(prefs.mesh_python) or _torch_installed()


@functools.cache
def _torch_installed() -> bool:
    # Looked up once (panels redraw often) and without importing torch: the default path never loads it.
    import importlib.util

    return importlib.util.find_spec("torch") is not None


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
    """Where model `name` of the engine's registry is expected: its own preference for InstantHMR when set,
    else its file name in the model folder."""
    from ..instanthmr_blender.model_files import KNOWN_MODELS

    if name == "instanthmr" and prefs.instanthmr_path:
        return Path(bpy.path.abspath(prefs.instanthmr_path))
    return model_folder(prefs) / KNOWN_MODELS[name].filename


def detector_model_path(prefs: INSTANTHMR_AP_preferences, variant: str) -> Path:
    """The RF-DETR ONNX file: the preference when set, else `rfdetr-<variant>.onnx` in the model folder."""
    from ..instanthmr_blender.model_files import KNOWN_MODELS

    if prefs.detector_path:
        return Path(bpy.path.abspath(prefs.detector_path))
    spec = KNOWN_MODELS.get(f"rfdetr-{variant}", KNOWN_MODELS["rfdetr-nano"])
    return model_folder(prefs) / spec.filename


classes = (INSTANTHMR_AP_preferences,)
register, unregister = bpy.utils.register_classes_factory(classes)
