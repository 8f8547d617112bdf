"""The "Capture from video" panel in the 3D viewport's sidebar (N-panel), tab "InstantHMR", and its sub-panels."""

import bpy

from ..settings.preferences import (
    chosen_hmr_model,
    detector_model_path,
    get_preferences,
    mesh_available,
    model_path,
    sam3d_problem,
)

GPU_HINT = "No GPU provider in this ONNX Runtime: models run on the CPU"


class CapturePanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "InstantHMR"


class VIEW3D_PT_instanthmr_capture(CapturePanel, bpy.types.Panel):
    bl_label = "Capture from video"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.instanthmr
        progress = context.window_manager.instanthmr_progress
        prefs = get_preferences(context)
        sam3d = prefs.pose_backend == "sam3d"
        row = layout.row()
        row.label(text="Model")
        row.prop(prefs, "pose_backend", expand=True)
        problem = sam3d_problem(prefs) if sam3d else ""
        if problem:
            box = layout.box()
            box.label(text=f"SAM 3D Body: {problem}", icon="ERROR")
            box.operator("preferences.addon_show", text="Open Preferences").module = prefs.bl_idname
        missing = [p.name for p, needed in ((model_path(prefs, "instanthmr"), not sam3d),
                                            (detector_model_path(prefs, settings.detector_variant),
                                             settings.detector_backend == "onnx"))
                   if needed and not p.is_file()]
        if missing:
            box = layout.box()
            box.label(text="Model files missing: " + ", ".join(missing), icon="ERROR")
            box.operator("preferences.addon_show", text="Open Preferences").module = prefs.bl_idname
        row = layout.row(align=True)
        row.prop(settings, "clip")
        row.operator("instanthmr.choose_clip", text="", icon="FILEBROWSER")
        row = layout.row(align=True)
        row.prop(settings, "frame_start")
        row.prop(settings, "frame_end")
        row.prop(settings, "frame_step")
        if progress.running:
            layout.progress(factor=progress.factor, type="BAR", text=progress.status)
            layout.operator("instanthmr.cancel_capture", icon="CANCEL")
        else:
            layout.operator("instanthmr.capture", icon="REC")
            if progress.status:
                layout.label(text=progress.status)
        layout.operator("instanthmr.import_sam3d", icon="IMPORT")


class VIEW3D_PT_instanthmr_people(CapturePanel, bpy.types.Panel):
    bl_label = "People"
    bl_parent_id = "VIEW3D_PT_instanthmr_capture"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.instanthmr
        row = layout.row(align=True)
        row.prop(settings, "max_persons")
        row.prop(settings, "min_track_length")
        if len(settings.people):
            layout.template_list("INSTANTHMR_UL_people", "", settings, "people", settings, "people_index", rows=3)
            if 0 <= settings.people_index < len(settings.people) and settings.people[settings.people_index].quality:
                _draw_quality(layout, settings.people[settings.people_index])
            layout.operator("instanthmr.rebuild_from_take", text="Keep ticked people", icon="FILE_REFRESH")


def _draw_quality(layout, person) -> None:
    """The selected person's quality report (one label per comma-separated figure: labels do not wrap)."""
    box = layout.box()
    box.label(text=f"Person {person.track_id} quality", icon="INFO")
    for part in person.quality.split(", "):
        box.label(text=part)


class INSTANTHMR_UL_people(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.prop(item, "keep", text="")
        row.label(text=f"Person {item.track_id}", icon="ARMATURE_DATA")
        row.label(text=f"frames {item.first_frame}-{item.last_frame} ({item.frame_count})")


class VIEW3D_PT_instanthmr_detector(CapturePanel, bpy.types.Panel):
    bl_label = "Detector and device"
    bl_parent_id = "VIEW3D_PT_instanthmr_capture"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        from ..instanthmr_blender.models.runtime import available_devices

        layout = self.layout
        settings = context.scene.instanthmr
        layout.prop(settings, "detector_backend")
        if settings.detector_backend == "torch":
            layout.prop(settings, "detector_variant")
        layout.prop(settings, "det_confidence")
        layout.prop(settings, "detector_stride")
        layout.prop(settings, "device")
        if not set(available_devices()) - {"auto", "cpu"}:
            layout.label(text=GPU_HINT, icon="INFO")
        prefs = get_preferences(context)
        if not prefs.instanthmr_path:  # the model chosen in the preferences, with its licence
            model = chosen_hmr_model(prefs)
            layout.label(text=f"InstantHMR: {model.label} ({model.file})", icon="ARMATURE_DATA")
            layout.label(text=f"Licence: {model.licence.text}")


class VIEW3D_PT_instanthmr_lens(CapturePanel, bpy.types.Panel):
    bl_label = "Camera lens"
    bl_parent_id = "VIEW3D_PT_instanthmr_capture"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        settings = context.scene.instanthmr
        layout.prop(settings, "lens_mode")
        if settings.lens_mode == "mm":
            layout.prop(settings, "lens_mm")
            layout.prop(settings, "sensor_width_mm")
        elif settings.lens_mode == "px":
            layout.prop(settings, "focal_px")
        else:
            layout.label(text="The model's own camera: no lens is assumed known", icon="INFO")
        layout.separator()
        layout.prop(settings, "camera_motion")
        if settings.camera_motion != "static":
            layout.prop(settings, "camera_object")


class VIEW3D_PT_instanthmr_motion(CapturePanel, bpy.types.Panel):
    bl_label = "Smoothing and feet"
    bl_parent_id = "VIEW3D_PT_instanthmr_capture"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.instanthmr
        layout.prop(settings, "clean")
        layout.prop(settings, "smoothing")
        if settings.smoothing != "off":
            layout.prop(settings, "smoothing_method")
        layout.prop(settings, "foot_lock")
        layout.prop(settings, "symmetric_lengths")


class VIEW3D_PT_instanthmr_output(CapturePanel, bpy.types.Panel):
    bl_label = "Output"
    bl_parent_id = "VIEW3D_PT_instanthmr_capture"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.instanthmr
        layout.prop(settings, "camera_background")
        row = layout.row()
        row.enabled = mesh_available(get_preferences(context))
        row.prop(settings, "build_mesh")
        if not row.enabled:
            layout.label(text="Body mesh: set a Python with PyTorch in the preferences", icon="INFO")
        layout.operator("instanthmr.build_mesh", icon="OUTLINER_OB_MESH")
        layout.prop(settings, "take_path")
        layout.operator("instanthmr.rebuild_from_take", icon="FILE_REFRESH")
        layout.separator()
        layout.prop(settings, "export_path")
        layout.prop(settings, "export_per_person")
        layout.operator("instanthmr.export", icon="EXPORT")


classes = (
    VIEW3D_PT_instanthmr_capture,
    INSTANTHMR_UL_people,
    VIEW3D_PT_instanthmr_people,
    VIEW3D_PT_instanthmr_detector,
    VIEW3D_PT_instanthmr_lens,
    VIEW3D_PT_instanthmr_motion,
    VIEW3D_PT_instanthmr_output,
)
register, unregister = bpy.utils.register_classes_factory(classes)
