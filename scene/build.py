"""Build a whole capture in the scene: one collection per take, the matched camera, one animated rig per person."""

from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import armature, camera, naming, provenance, quality


@dataclass
class CaptureObjects:
    collection: bpy.types.Collection
    camera: bpy.types.Object
    rigs: list[bpy.types.Object] = field(default_factory=list)
    meshes: list[bpy.types.Object] = field(default_factory=list)
    mesh_error: str = ""
    quality_lines: list[str] = field(default_factory=list)  # the solve's quality report, one line per person


def scene_frames(source_frames: np.ndarray) -> np.ndarray:
    """Scene frame of each source frame index: frame 0 of the video is scene frame 1 (as in Blender's clips)."""
    return np.asarray(source_frames, np.int64) + 1


def remove_capture(collection: bpy.types.Collection) -> None:
    """Delete a capture collection and everything built for it (objects, armatures, cameras, actions)."""
    for obj in list(collection.all_objects):
        data = obj.data
        action = obj.animation_data.action if obj.animation_data else None
        bpy.data.objects.remove(obj)
        if action is not None and action.users == 0:
            bpy.data.actions.remove(action)
        if isinstance(data, bpy.types.Armature) and data.users == 0:
            bpy.data.armatures.remove(data)
        elif isinstance(data, bpy.types.Camera) and data.users == 0:
            bpy.data.cameras.remove(data)
        elif isinstance(data, bpy.types.Mesh) and data.users == 0:
            bpy.data.meshes.remove(data)
    bpy.data.collections.remove(collection)


def new_capture_collection(context, take_name: str, take_file: str | None = None) -> bpy.types.Collection:
    """The collection `InstantHMR <take_name>` in the scene, new and empty (an earlier build of the same take name
    is removed first), marked with the take's name and, when given, the saved take's file."""
    name = naming.collection_name(take_name)
    existing = bpy.data.collections.get(name)
    if existing is not None:
        remove_capture(existing)
    collection = bpy.data.collections.new(name)
    collection[naming.PROP_TAKE] = take_name
    if take_file:
        collection[naming.PROP_TAKE_FILE] = str(take_file)
    context.scene.collection.children.link(collection)
    return collection


def build_capture(context, take, solution, take_name: str, *, background: str | None = None,
                  track_ids: list[int] | None = None, make_active_camera: bool = True,
                  take_file: str | None = None) -> CaptureObjects:
    """Write the solved take into context.scene, replacing an earlier build of the same take name.

    take: the engine's Take (intrinsics, fps, frames); solution: the engine's CaptureSolution; track_ids: the
    people to keep (default all); background: the source video/images shown behind the camera; take_file: the
    saved take, recorded on the collection for later steps (rebuild, body mesh).
    """
    scene = context.scene
    collection = new_capture_collection(context, take_name, take_file)

    frames = scene_frames(take.frames)
    if len(frames):
        camera.set_scene_timing(scene, take.fps, int(frames[0]), int(frames[-1]), take.image_size)
    cam = camera.build_camera(naming.camera_name(take_name), take, solution.camera_matrix_world, collection,
                              background=background)
    cam[naming.PROP_TAKE] = take_name
    quality.remove_repair_markers(scene, take_name)
    placement = getattr(solution, "placement", None)
    if placement is not None:  # a moving camera: keyed along its path, unplaced frames marked
        camera.animate_camera(cam, placement.camera_path_world, frames, placement.registered,
                              f"{naming.camera_name(take_name)}.{naming.ACTION_SUFFIX}")
        quality.add_camera_markers(scene, take_name, frames, placement.registered)
    if make_active_camera:
        scene.camera = cam
    result = CaptureObjects(collection, cam)
    wanted = None if track_ids is None else set(track_ids)
    for person in solution.persons:
        if wanted is not None and person.track_id not in wanted:
            continue
        rig = armature.build_armature(context, naming.armature_name(take_name, person.track_id), person.rest,
                                      collection)
        rig[naming.PROP_TAKE] = take_name
        rig[naming.PROP_TRACK_ID] = int(person.track_id)
        provenance.write_model_provenance(rig, take.model_info)
        armature.write_motion(rig, naming.action_name(take_name, person.track_id), person, scene_frames(person.frames))
        quality.write_quality_properties(rig, person)
        quality.add_repair_markers(scene, take_name, person, frame_offset=int(scene_frames([0])[0]))
        if person.quality is not None:
            result.quality_lines.append(f"person {person.track_id}: {person.quality.summary()}")
        result.rigs.append(rig)
    if getattr(solution, "floor", None) is not None:
        result.quality_lines += [f"take: {solution.quality_summary()}", solution.floor.describe()]
    elif placement is not None:
        result.quality_lines += [f"take: {solution.quality_summary()}", placement.describe()]
    return result


def take_name_from_path(path: str) -> str:
    return Path(path).stem or "take"
