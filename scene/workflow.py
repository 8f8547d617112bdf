"""From a solved take to a built scene, shared by the capture operator, "Rebuild from take", live recordings and
the command line: build (and solve first when asked), the body meshes, and the panel's list of tracked people."""


import numpy as np

from ..instanthmr_blender.solve import SolveOptions, solve_take
from . import build


def build_from_take(context, take, take_name: str, options: SolveOptions, **build_options) -> build.CaptureObjects:
    """Solve the take and write it into the scene (replacing an earlier build of the same name); build_options
    as for build_solution."""
    return build_solution(context, take, solve_take(take, options), take_name, **build_options)


def build_solution(context, take, solution, take_name: str, *, background: str | None = None,
                   track_ids: list[int] | None = None, take_file: str | None = None,
                   mesh: dict | None = None) -> build.CaptureObjects:
    """Write a solved take into the scene (main thread only).

    mesh: when given, also build the body meshes: keyword arguments of scene.mesh.build_body_meshes
    (module_path, python, ...); a mesh failure leaves the rigs built and is recorded in `mesh_error`."""
    built = build.build_capture(context, take, solution, take_name, background=background, track_ids=track_ids,
                                take_file=take_file)
    settings = getattr(context.scene, "instanthmr", None)
    if settings is not None:
        fill_people_quality(settings, solution)
    if mesh is not None:
        from ..instanthmr_blender.mesh import MeshError
        from .mesh import build_body_meshes  # only when asked: the default path never touches torch

        try:
            built.meshes = build_body_meshes(context, take, solution, built, **mesh)
        except MeshError as exc:
            built.mesh_error = str(exc)
    return built


def fill_people(settings, take, keep: set[int] | None = None) -> None:
    """Refresh the panel's list of tracked people (frame ranges in scene frames) from a take."""
    settings.people.clear()
    scene_frames = build.scene_frames(take.frames)
    for row, track_id in enumerate(take.track_ids):
        seen = np.flatnonzero(take.valid[row])
        if len(seen) == 0:
            continue
        item = settings.people.add()
        item.track_id = int(track_id)
        item.first_frame = int(scene_frames[seen[0]])
        item.last_frame = int(scene_frames[seen[-1]])
        item.frame_count = len(seen)
        item.keep = keep is None or int(track_id) in keep


def fill_people_quality(settings, solution) -> None:
    """Show each solved person's quality report (quality.PersonQuality.summary) in the panel's people list."""
    reports = {person.track_id: person.quality.summary() for person in solution.persons if person.quality}
    reports.update({track_id: f"not solved: {why}" for track_id, why in solution.skipped})
    for item in settings.people:
        item.quality = reports.get(item.track_id, "")


def kept_track_ids(settings) -> list[int] | None:
    """Track ids ticked in the people list (None when the list is empty: keep everyone)."""
    if len(settings.people) == 0:
        return None
    return [item.track_id for item in settings.people if item.keep]
