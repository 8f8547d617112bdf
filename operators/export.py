"""Export the capture rigs of the scene's take (BVH, FBX, glTF) through Blender's exporters."""

import bpy

from ..scene import naming
from ..scene.export import ExportError, export_capture


def capture_rigs(context, take_name: str | None = None) -> list:
    """Capture rigs in the scene (of one take when named), in track order."""
    rigs = [obj for obj in context.scene.objects
            if obj.get(naming.PROP_ROLE) == "capture_rig"
            and (take_name is None or obj.get(naming.PROP_TAKE) == take_name)]
    return sorted(rigs, key=lambda obj: (obj.get(naming.PROP_TAKE, ""), obj.get(naming.PROP_TRACK_ID, 0)))


class INSTANTHMR_OT_export(bpy.types.Operator):
    """Export the capture rigs with their motion (root motion included)"""

    bl_idname = "instanthmr.export"
    bl_label = "Export Capture"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"},
                                       description="Output file (.bvh, .fbx, .glb, .gltf); empty: the scene's")

    @classmethod
    def poll(cls, context):
        return bool(capture_rigs(context))

    def execute(self, context):
        settings = context.scene.instanthmr
        path = self.filepath or settings.export_path
        if not path:
            self.report({"ERROR"}, "Choose a file to export to (.bvh, .fbx, .glb)")
            return {"CANCELLED"}
        try:
            written = export_capture(context, capture_rigs(context), path, per_person=settings.export_per_person)
        except (ExportError, OSError, RuntimeError) as exc:  # reported, never a traceback in the console
            self.report({"ERROR"}, " ".join(str(exc).split()))
            return {"CANCELLED"}
        self.report({"INFO"}, "Exported " + ", ".join(str(p) for p in written))
        return {"FINISHED"}


classes = (INSTANTHMR_OT_export,)
register, unregister = bpy.utils.register_classes_factory(classes)
