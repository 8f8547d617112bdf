"""The "Live" sub-panel of "Capture from video": source, Start / Stop, Record, the person to follow, mirror preview,
and the live status (fps, latency, per-stage milliseconds); its scene settings and runtime status."""

import bpy

from .panel import CapturePanel


class INSTANTHMR_PG_live(bpy.types.PropertyGroup):
    """Live capture settings of a scene (saved with the .blend)."""

    source: bpy.props.StringProperty(
        name="Source", default="0",
        description="A camera number (0 = the first camera) or a stream URL: a phone camera app's address, e.g. "
        "http://192.168.1.20:8080/video (MJPEG) or rtsp://192.168.1.20:8554/live")
    width: bpy.props.IntProperty(name="Width", default=0, min=0, max=7680,
                                 description="Requested camera width in pixels (0 = the camera's default)")
    height: bpy.props.IntProperty(name="Height", default=0, min=0, max=4320,
                                  description="Requested camera height in pixels (0 = the camera's default)")
    fps: bpy.props.FloatProperty(name="FPS", default=0.0, min=0.0, max=240.0,
                                 description="Requested camera frame rate (0 = the camera's default)")
    timeout: bpy.props.FloatProperty(name="Timeout", default=5.0, min=0.5, max=60.0, subtype="TIME_ABSOLUTE",
                                     description="Seconds to wait for the source to open and for each frame")
    follow: bpy.props.IntProperty(name="Follow person", default=-1, min=-1, max=999,
                                  description="Track number of the person the live rig follows (-1 = the most "
                                  "prominent: the largest in the picture)")
    mirror: bpy.props.BoolProperty(name="Mirror preview", default=False,
                                   description="Show the live rig mirrored, like a webcam preview (the recording is "
                                   "never mirrored)")


class INSTANTHMR_PG_live_status(bpy.types.PropertyGroup):
    """Runtime state of live capture (on the window manager: never saved)."""

    running: bpy.props.BoolProperty()
    recording: bpy.props.BoolProperty()
    status: bpy.props.StringProperty()
    last_take: bpy.props.StringProperty()


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


classes = (INSTANTHMR_PG_live, INSTANTHMR_PG_live_status, VIEW3D_PT_instanthmr_live)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.instanthmr_live = bpy.props.PointerProperty(type=INSTANTHMR_PG_live)
    bpy.types.WindowManager.instanthmr_live_status = bpy.props.PointerProperty(type=INSTANTHMR_PG_live_status)


def unregister() -> None:
    del bpy.types.WindowManager.instanthmr_live_status
    del bpy.types.Scene.instanthmr_live
    _unregister_classes()
