"""Import SAM 3D Body results saved from its demo as a take and build the scene from it (no model runs)."""

from pathlib import Path

import bpy

from ..instanthmr_blender.solve import SolveError
from ..instanthmr_blender.take import TakeError, save_take
from ..instanthmr_blender.video.frames import FrameSourceError
from ..scene import workflow
from ..scene.build import take_name_from_path
from ..settings.capture import default_take_path, solve_options


def import_sam3d(context, folder: str):
    """Read the results folder into a take (the scene's clip, when set, gives the frame size, rate and background),
    save it beside the .blend or in the user folder, and build the rigs. Returns (built objects, take path)."""
    from ..instanthmr_blender.capture.sam3d_import import import_sam3d_results
    from ..instanthmr_blender.video.frames import open_source

    settings = context.scene.instanthmr
    folder = str(Path(bpy.path.abspath(folder)).resolve())
    clip = bpy.path.abspath(settings.clip) if settings.clip else ""
    size, fps = None, context.scene.render.fps / context.scene.render.fps_base
    if clip:
        with open_source(clip, fps=fps) as source:
            size, fps = (source.info.height, source.info.width), source.info.fps
    take = import_sam3d_results(folder, image_size=size, fps=fps, source=str(Path(clip).resolve()) if clip else "",
                                min_track_length=settings.min_track_length)
    name = take_name_from_path(clip or folder)
    take_path = save_take(take, default_take_path(clip or folder))
    settings.take_path = str(take_path)
    workflow.fill_people(settings, take)
    background = clip if (clip and settings.camera_background) else None
    built = workflow.build_from_take(context, take, name, solve_options(settings), background=background,
                                     take_file=str(take_path))
    return built, take_path


class INSTANTHMR_OT_import_sam3d(bpy.types.Operator):
    """Import results you already ran with SAM 3D Body's demo (a folder of .npz/.pkl files, one per frame and
    person) as a take, tracked across frames, and build one rig per person. The clip above, when set, gives the
    frame size and rate"""

    bl_idname = "instanthmr.import_sam3d"
    bl_label = "Import SAM 3D Body Results"
    bl_options = {"REGISTER", "UNDO"}

    directory: bpy.props.StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE"},
                                        description="Folder of SAM 3D Body results for one clip")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        if not self.directory:
            self.report({"ERROR"}, "Pick the folder of SAM 3D Body results first")
            return {"CANCELLED"}
        try:
            built, take_path = import_sam3d(context, self.directory)
        except (TakeError, FrameSourceError, SolveError, ValueError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Imported {len(built.rigs)} people from SAM 3D Body results; take saved to {take_path}")
        return {"FINISHED"}


classes = (INSTANTHMR_OT_import_sam3d,)
register, unregister = bpy.utils.register_classes_factory(classes)
