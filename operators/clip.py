"""Pick the clip to capture in a file browser that lists only videos and images."""

import bpy
from bpy_extras.io_utils import ImportHelper

from ..instanthmr_blender.video.formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

CLIP_FILTER = ";".join(f"*{ext}" for ext in sorted({*VIDEO_EXTENSIONS, *IMAGE_EXTENSIONS}))


class INSTANTHMR_OT_choose_clip(bpy.types.Operator, ImportHelper):
    """Choose the video, image sequence (pick any of its images) or image to capture"""

    bl_idname = "instanthmr.choose_clip"
    bl_label = "Choose Clip"
    bl_options = {"REGISTER"}

    filter_glob: bpy.props.StringProperty(default=CLIP_FILTER, options={"HIDDEN"})
    sequence: bpy.props.BoolProperty(
        name="Image sequence", default=False,
        description="Capture the whole folder of the chosen image as an image sequence")

    def execute(self, context):
        from pathlib import Path

        path = Path(self.filepath)
        if not path.is_file():
            self.report({"ERROR"}, f"{path}: no such file")
            return {"CANCELLED"}
        is_image = path.suffix.lower() in IMAGE_EXTENSIONS
        context.scene.instanthmr.clip = str(path.parent if (is_image and self.sequence) else path)
        return {"FINISHED"}


classes = (INSTANTHMR_OT_choose_clip,)
register, unregister = bpy.utils.register_classes_factory(classes)
