"""Add-on preferences: which InstantHMR model (size and fit level, with its licence and accuracy), where the model
files live (a folder, or one path per model), downloads, default device, threads."""

import bpy

from ..settings.preferences import (
    ADDON_PACKAGE,
    chosen_hmr_model,
    detector_model_path,
    hmr_model_path,
    mesh_available,
    model_folder,
    registry,
    sam3d_problem,
)
from .properties import device_items


def _size_items(self, context):
    items = []
    for size, about in registry().sizes.items():
        parameters = f", {about['parameters_m']:g} M parameters" if about["parameters_m"] else ""
        licence = registry().choose(size, 0).licence.text
        items.append((size, about["label"], f"{about['backbone']}{parameters}. {licence}"))
    _size_items.cache = items  # Blender needs the strings kept alive while the enum is shown
    return items


FIT_ITEMS = [
    ("0", "No fit", "The network's own pose (v1.0 / v1.0.1 files)"),
    ("1", "Fit, 1 crop", "v1.1: a kinematic fit inside the graph against the network's 2D keypoints, 1 crop "
     "per person"),
    ("2", "Fit, 2 crops", "v1.1: the same fit on 2 crops per person (refused at load if its graph needs two crop "
     "inputs)"),
]


class INSTANTHMR_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    hmr_size: bpy.props.EnumProperty(
        name="InstantHMR size", items=_size_items,
        description="Which published InstantHMR model the capture uses (the first release is instanthmr.onnx)")
    hmr_fit: bpy.props.EnumProperty(
        name="Fit level", items=FIT_ITEMS, default="0",
        description="v1.1 graphs refine each pose with a kinematic fit inside the graph (the HGNetV2 sizes only)")
    model_folder: bpy.props.StringProperty(
        name="Model folder",
        description="Folder holding the model files. Empty: the extension's own user folder "
        "(kept across updates of the extension)",
        subtype="DIR_PATH",
        default="",
    )
    instanthmr_path: bpy.props.StringProperty(
        name="InstantHMR model",
        description="Path of an InstantHMR .onnx file (overrides the size and fit level). Empty: the chosen "
        "model's file in the model folder",
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
        name="Default device", items=device_items("Automatic"),
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
    pose_backend: bpy.props.EnumProperty(
        name="Model", default="instanthmr",
        items=(("instanthmr", "InstantHMR", "The fast ONNX model, bundled runtime, any machine"),
               ("sam3d", "SAM 3D Body", "Meta's SAM 3D Body, more accurate and much slower (an NVIDIA GPU is "
                "recommended), run in a Python environment of your own")),
        description="The model that estimates each person's pose")
    sam3d_python: bpy.props.StringProperty(
        name="SAM 3D Body Python", subtype="FILE_PATH", default="",
        description="The python executable of an environment with torch and facebookresearch/sam-3d-body")
    sam3d_checkpoint: bpy.props.StringProperty(
        name="Checkpoint folder", subtype="DIR_PATH", default="",
        description="SAM 3D Body's checkpoint folder: model.ckpt, model_config.yaml and assets/mhr_model.pt")
    sam3d_code: bpy.props.StringProperty(
        name="Code folder", subtype="DIR_PATH", default="",
        description="A checkout of facebookresearch/sam-3d-body, when it is not installed in that Python")
    sam3d_backbone: bpy.props.StringProperty(
        name="INT8 backbone", subtype="FILE_PATH", default="",
        description="Optional Embedl INT8 backbone (embedl_sam3dbody_int8 .pt2, .onnx or a TensorRT .engine); "
        "empty: the checkpoint's FP32 backbone")

    def draw(self, context):
        layout = self.layout
        draw_model_choice(self, layout.box())
        layout.prop(self, "model_folder")
        layout.label(text=f"In use: {model_folder(self)}", icon="FILE_FOLDER")
        layout.prop(self, "instanthmr_path")
        layout.prop(self, "detector_path")
        column = layout.column(align=True)
        for name, path in (("InstantHMR", hmr_model_path(self)),
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
        draw_sam3d_preferences(layout.box(), self)
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
    from ..instanthmr_blender.models.int8 import int8_state

    found, problem = int8_state(hmr_model_path(prefs))
    box = layout.box()
    if found is None:
        box.label(text=problem or "No INT8 InstantHMR: tools/quantize_hmr.py makes one from your clip, fidelity "
                  "measured", icon="ERROR" if problem else "INFO")
        return
    int8, report = found
    box.label(text=f"{int8.name}: {report.speed_up:.2f}x faster than fp32 on the CPU "
              f"({report.int8_ms:.0f} vs {report.fp32_ms:.0f} ms per person)", icon="CHECKMARK")
    box.label(text=f"Off from fp32 by {report.mm_3d_mean:.1f} mm 3D (p95 {report.mm_3d_p95:.1f}, aligned "
              f"{report.mm_3d_aligned_mean:.1f}), {report.px_2d_mean:.1f} px 2D; jitter {report.jitter_fp32_mm:.1f}"
              f" -> {report.jitter_int8_mm:.1f} mm/frame^2 ({report.held_out_crops} crops of {report.clip})")
    box.prop(prefs, "hmr_precision", expand=True)


def draw_model_choice(prefs, layout) -> None:
    """Size and fit level, with the chosen file's licence (and its link), accuracy and source next to them."""
    row = layout.row()
    row.prop(prefs, "hmr_size")
    if prefs.hmr_size != "first_release":
        row.prop(prefs, "hmr_fit")
    model = chosen_hmr_model(prefs)
    column = layout.column(align=True)
    column.label(text=f"{model.file}: {model.backbone}"
                 + (f", {model.parameters_m:g} M parameters" if model.parameters_m else ""), icon="FILE")
    column.label(text=f"Accuracy: {model.accuracy_text()}", icon="SORTTIME")
    icon = {True: "CHECKMARK", False: "LOCKED", None: "QUESTION"}[model.licence.commercial_use]
    column.label(text=f"Licence: {model.licence.text}", icon=icon)
    row = column.row()
    row.operator("wm.url_open", text="Read the licence (model card)", icon="URL").url = model.licence.url
    column.label(text=f"Source: {model.source}; SHA-256 "
                 + ("pinned" if model.sha256 else "recorded on first download"))
    if prefs.instanthmr_path:
        column.label(text="The InstantHMR model path below overrides this choice", icon="INFO")


def draw_sam3d_preferences(box, prefs: INSTANTHMR_AP_preferences) -> None:
    box.label(text="Model: InstantHMR or SAM 3D Body")
    box.row().prop(prefs, "pose_backend", expand=True)
    for name in ("sam3d_python", "sam3d_checkpoint", "sam3d_code", "sam3d_backbone"):
        box.prop(prefs, name)
    problem = sam3d_problem(prefs)
    if problem:
        box.label(text=f"SAM 3D Body: {problem}", icon="INFO")


classes = (INSTANTHMR_AP_preferences,)
register, unregister = bpy.utils.register_classes_factory(classes)
