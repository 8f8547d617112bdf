"""Rebuild the scene from a saved take with other smoothing, feet or output settings: no models are run."""

from pathlib import Path

import bpy

from ..instanthmr_blender.solve import SolveError, solve_take
from ..instanthmr_blender.take import TakeError, load_take, locate_source
from ..scene import naming, workflow
from ..scene.build import take_name_from_path
from ..settings.capture import mesh_options, solve_options
from ..settings.preferences import get_preferences, model_folder


def rebuild_from_take(context, path: str | None = None):
    """Load the scene's take (or `path`), solve it with the scene's settings and rebuild the capture, keeping
    only the people ticked in the list. Returns (the built objects, warnings: a clip that cannot be found, people
    the solve left out). Raises TakeError / SolveError / ValueError with a readable message."""
    settings = context.scene.instanthmr
    take_path = Path(bpy.path.abspath(path or settings.take_path)) if (path or settings.take_path) else None
    if take_path is None:
        raise TakeError("No take to rebuild from: capture a clip first or pick a take file")
    take = load_take(take_path)
    keep = workflow.kept_track_ids(settings)
    known = {item.track_id for item in settings.people}
    if not known or known != {int(t) for t in take.track_ids}:
        # A different take than the list shows: list its people, everyone kept.
        workflow.fill_people(settings, take)
        keep = None
    source = take.source or str(take_path)
    warnings = []
    background = locate_source(take.source, take_path) if settings.camera_background else None
    if settings.camera_background and background is None:
        warnings.append(f"the take's clip {take.source or '(none recorded)'} was not found (nor next to the take): "
                        "the camera has no background")
    name = take_name_from_path(source)
    mesh = None
    if settings.build_mesh:
        prefs = get_preferences(context)
        mesh = mesh_options(prefs, model_folder(prefs))
    solution = solve_take(take, solve_options(settings))
    warnings += [f"{naming.armature_name(name, track_id)} left out: {why}" for track_id, why in solution.skipped]
    built = workflow.build_solution(context, take, solution, name, background=background, track_ids=keep,
                                    take_file=str(take_path), mesh=mesh)
    return built, warnings


class INSTANTHMR_OT_rebuild_from_take(bpy.types.Operator):
    """Rebuild the capture rigs from the saved take with the current smoothing, feet and output settings
    (no models are run)"""

    bl_idname = "instanthmr.rebuild_from_take"
    bl_label = "Rebuild from Take"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"},
                                       description="Take file (.npz); empty: the scene's take")

    def execute(self, context):
        try:
            built, warnings = rebuild_from_take(context, self.filepath or None)
        except (TakeError, SolveError, ValueError, OSError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if self.filepath:
            context.scene.instanthmr.take_path = self.filepath
        summary = f"Rebuilt {len(built.rigs)} people from the take"
        if warnings:
            self.report({"WARNING"}, summary + "".join(f". Warning: {line}" for line in warnings))
        else:
            self.report({"INFO"}, summary)
        return {"FINISHED"}


classes = (INSTANTHMR_OT_rebuild_from_take,)
register, unregister = bpy.utils.register_classes_factory(classes)
