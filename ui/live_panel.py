"""The "Live" sub-panel of "Capture from video": source, Start / Stop, Record, the person to follow, mirror preview,
and the live status (fps, latency, per-stage milliseconds). Its settings and status are in `properties.py`."""

import bpy

from .panel import CapturePanel


class VIEW3D_PT_instanthmr_live(CapturePanel, bpy.types.Panel):
    bl_label = "Live"
    bl_parent_id = "VIEW3D_PT_instanthmr_capture"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        props = context.scene.instanthmr_live
        status = context.window_manager.instanthmr_live_status
        column = layout.column()
        column.enabled = not status.running
        column.prop(props, "source")
        row = column.row(align=True)
        row.prop(props, "width")
        row.prop(props, "height")
        row.prop(props, "fps")
        column.prop(props, "timeout")
        row = layout.row(align=True)
        row.prop(props, "follow")
        row.prop(props, "mirror", toggle=True)
        row = layout.row(align=True)
        if status.running:
            row.operator("instanthmr.live_stop", icon="PAUSE")
            if status.recording:
                row.operator("instanthmr.live_stop_recording", icon="SNAP_FACE")
            else:
                row.operator("instanthmr.live_record", icon="REC")
        else:
            row.operator("instanthmr.live_start", icon="PLAY")
        if status.status:
            layout.label(text=status.status, icon="REC" if status.recording else "NONE")
        if status.last_take:
            layout.label(text=status.last_take)


classes = (VIEW3D_PT_instanthmr_live,)
register, unregister = bpy.utils.register_classes_factory(classes)
