"""From a take to a built scene, shared by the capture operator, "Rebuild from take" and the command line:
solve options, where takes are saved, solve + build, and the list of tracked people."""

from pathlib import Path

import bpy
import numpy as np

from ..instanthmr_blender.solve import SolveOptions, solve_take
from . import build


def solve_options(settings) -> SolveOptions:
    """SolveOptions from anything with the capture settings' names (the scene's settings, CLI arguments)."""
    return SolveOptions(
        smoothing=settings.smoothing,
        smoothing_method=settings.smoothing_method,
        foot_lock=bool(settings.foot_lock),
        symmetric_lengths=bool(settings.symmetric_lengths),
        clean=bool(getattr(settings, "clean", True)),
    )


def default_take_path(clip: str, addon_package: str) -> Path:
    """Beside the .blend when it is saved, else in the extension's user folder; named after the clip."""
    stem = Path(clip.replace("%", "_")).stem or "take"
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//")) / f"{stem}.take.npz"
    return Path(bpy.utils.extension_path_user(addon_package, path="takes", create=True)) / f"{stem}.take.npz"


def build_from_take(context, take, take_name: str, options: SolveOptions, **build_options) -> build.CaptureObjects:
    """Solve the take and write it into the scene (replacing an earlier build of the same name); build_options
    as for build_solution."""
    return build_solution(context, take, solve(take, take_name, options), take_name, **build_options)


def solve(take, take_name: str, options: SolveOptions):
    """The engine's solve (no Blender data touched: safe in a worker thread)."""
    solution = solve_take(take, options)
    if not solution.persons:
        raise ValueError(
            f"take {take_name!r} has nobody to build: no tracked person shows both hips and the shoulders or neck"
        )
    return solution


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


def mesh_options(prefs, model_dir: Path, *, module_path: str | None = None, python: str | None = None,
                 allow_download: bool = False) -> dict:
    """Keyword arguments of scene.mesh.build_body_meshes: the MHR module (given, the preference, or extracted
    from the release archive in the model folder, downloaded only when allowed) and the Python to run it in."""
    from ..instanthmr_blender.mesh import ensure_mhr_module

    module = module_path or (bpy.path.abspath(prefs.mhr_model_path) if prefs.mhr_model_path else None)
    if not module:
        module = ensure_mhr_module(model_dir, allow_network=allow_download)
    python = python or (bpy.path.abspath(prefs.mesh_python) if prefs.mesh_python else None)
    return {"module_path": Path(module), "python": python}


def kept_track_ids(settings) -> list[int] | None:
    """Track ids ticked in the people list (None when the list is empty: keep everyone)."""
    if len(settings.people) == 0:
        return None
    return [item.track_id for item in settings.people if item.keep]
