"""The optional body mesh in Blender: one mesh object per captured person, animated by a PC2 point cache
(written by the engine, instanthmr_blender/mesh/) through a Mesh Cache modifier, in the take's collection."""

from collections.abc import Callable
from pathlib import Path

import bpy
import numpy as np

from ..instanthmr_blender import mesh as engine_mesh
from . import actions, build, naming

# The extension's own package, for its user folder (`bl_ext.<repo>.instanthmr`).
ADDON_PACKAGE = __package__.rpartition(".")[0]
ROLE = "body_mesh"  # value of naming.PROP_ROLE on the mesh objects
# Collection property naming the take file a capture came from (the mesh operator reads it).
PROP_TAKE_FILE = naming.PROP_TAKE_FILE
MODIFIER_NAME = "InstantHMR body cache"
CACHE_FOLDER_SUFFIX = "_instanthmr_cache"


def body_mesh_name(take_name: str, track_id: int) -> str:
    return f"{naming.armature_name(take_name, track_id)}.body"


def cache_folder(cache_dir: str | None = None) -> Path:
    """Where point caches go: `cache_dir` when given; beside the saved .blend (`<name>_instanthmr_cache/`);
    for an unsaved file, the extension's user folder (kept across sessions, unlike a temp folder)."""
    if cache_dir:
        return Path(bpy.path.abspath(cache_dir))
    if bpy.data.filepath:
        blend = Path(bpy.data.filepath)
        return blend.parent / f"{blend.stem}{CACHE_FOLDER_SUFFIX}"
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="mesh_cache", create=True))


def build_body_meshes(
    context,
    take,
    solution,
    capture_objects,
    *,
    module_path,
    python=None,
    lod: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cache_dir=None,
    batch_size: int = engine_mesh.DEFAULT_BATCH_SIZE,
) -> list[bpy.types.Object]:
    """One animated body mesh per capture rig of `capture_objects` (scene/build.py CaptureObjects), linked
    into its collection, replacing meshes built earlier for the same people.

    take: the engine's Take; solution: anything with `camera_matrix_world` (4, 4) (solve.CaptureSolution);
    module_path: MHR's `mhr_model.pt`; python: a separate Python with torch (None: this one, if it has
    torch; see the engine's mesh/runner.py); lod: None (the module's own) or 1; progress(frames_done, frames_total).
    Raises engine_mesh.MeshError (and subclasses) with a message for the user.
    """
    take_name = capture_objects.collection.get(naming.PROP_TAKE) or capture_objects.collection.name
    row_of = {int(track_id): row for row, track_id in enumerate(take.track_ids)}
    people = []
    for rig in capture_objects.rigs:
        track_id = int(rig[naming.PROP_TRACK_ID])
        if track_id not in row_of:
            raise engine_mesh.MeshError(
                f"rig `{rig.name}` is track {track_id}, which the take does not have: rebuild the capture "
                "from this take first"
            )
        people.append((track_id, row_of[track_id]))
    if not people:
        raise engine_mesh.MeshError(f"the capture `{take_name}` has no rigs to build a body mesh for")
    totals = [int(np.asarray(take.valid[row]).sum()) for _, row in people]
    folder = cache_folder(cache_dir)
    frame_offset = int(build.scene_frames(np.array([0]))[0])
    camera_matrix_world = np.asarray(solution.camera_matrix_world, np.float64)

    objects = []
    with engine_mesh.open_runner(module_path, python=python) as runner:
        engine_mesh.check_lod(lod, runner.num_vertices)
        for index, (track_id, row) in enumerate(people):
            name = body_mesh_name(take_name, track_id)
            done_before = sum(totals[:index])

            def report(done, _total, done_before=done_before):
                if progress is not None:
                    progress(done_before + done, sum(totals))

            cache = engine_mesh.write_person_cache(
                runner, take, row, camera_matrix_world, folder / f"{bpy.path.clean_name(name)}.pc2",
                frame_offset=frame_offset, batch_size=batch_size, progress=report,
            )  # fmt: skip
            obj = _body_object(name, cache, capture_objects.collection)
            obj[naming.PROP_TAKE] = take_name
            obj[naming.PROP_TRACK_ID] = track_id
            objects.append(obj)
    return objects


def _body_object(name: str, cache: engine_mesh.PersonCache, collection) -> bpy.types.Object:
    _remove_body_mesh(name)
    _, samples = engine_mesh.read_point_cache(cache.path)
    data = _mesh_data(name, np.asarray(samples[0]), cache.faces)
    obj = bpy.data.objects.new(name, data)
    collection.objects.link(obj)
    obj[naming.PROP_ROLE] = ROLE
    # The cache holds world coordinates (the rig and camera share that world): keep the object at identity.
    modifier = obj.modifiers.new(MODIFIER_NAME, "MESH_CACHE")
    modifier.cache_format = "PC2"
    modifier.filepath = _blend_relative(cache.path)
    modifier.time_mode = "FRAME"
    modifier.play_mode = "SCENE"
    modifier.frame_start = float(cache.first_frame)  # scene frame of the cache's first sample
    modifier.frame_scale = 1.0
    modifier.interpolation = "LINEAR"
    modifier.deform_mode = "OVERWRITE"
    modifier.forward_axis, modifier.up_axis = "POS_Y", "POS_Z"  # no axis change: the samples are world
    _key_visibility(obj, cache)
    return obj


def _mesh_data(name: str, vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Mesh:
    """A triangle mesh from (V, 3) vertices and (Fc, 3) faces, filled in bulk (foreach_set, no Python lists)."""
    data = bpy.data.meshes.new(name)
    data.vertices.add(len(vertices))
    data.vertices.foreach_set("co", np.ascontiguousarray(vertices, np.float32).ravel())
    data.loops.add(faces.size)
    data.loops.foreach_set("vertex_index", np.ascontiguousarray(faces, np.int32).ravel())
    data.polygons.add(len(faces))
    data.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    data.polygons.foreach_set("use_smooth", np.ones(len(faces), bool))
    data.update()
    data.validate(clean_customdata=False)
    return data


def _key_visibility(obj, cache: engine_mesh.PersonCache) -> None:
    """Hidden before the person's first frame, after the last, and through absences the cache only holds."""
    frames, hidden = [cache.first_frame - 1, cache.first_frame], [1.0, 0.0]
    for first, last in cache.hidden:
        frames += [first, last + 1]
        hidden += [1.0, 0.0]
    frames.append(cache.last_frame + 1)
    hidden.append(1.0)
    actions.key_visibility(actions.new_action(obj, f"{obj.name}.visibility"), frames, hidden)


def _remove_body_mesh(name: str) -> None:
    existing = bpy.data.objects.get(name)
    if existing is None or existing.get(naming.PROP_ROLE) != ROLE:
        return
    data = existing.data
    action = existing.animation_data.action if existing.animation_data else None
    bpy.data.objects.remove(existing)
    if action is not None and action.users == 0:
        bpy.data.actions.remove(action)
    if data is not None and data.users == 0:
        bpy.data.meshes.remove(data)


def _blend_relative(path: Path) -> str:
    if not bpy.data.filepath:
        return str(path)
    try:
        return bpy.path.relpath(str(path))
    except ValueError:  # another drive (Windows): keep it absolute
        return str(path)
