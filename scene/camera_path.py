"""A camera the user already has as the take's camera path: its world matrix evaluated at every scene frame of
the take (constraints, parents and a Blender camera solve included), read from the open scene (the panel) or
from another .blend (the command line's --camera-path FILE.blend:OBJECT)."""

from pathlib import Path

import bpy
import numpy as np

from ..instanthmr_blender.camera.choice import path_from_matrices
from ..instanthmr_blender.camera.path import CameraPath, CameraPathError


def camera_matrices(scene: bpy.types.Scene, obj: bpy.types.Object, scene_frames) -> np.ndarray:
    """(F, 4, 4) obj's evaluated world matrix at each scene frame; the scene's current frame is restored."""
    current = scene.frame_current
    layer = scene.view_layers[0]
    out = np.empty((len(scene_frames), 4, 4))
    try:
        for row, frame in enumerate(scene_frames):
            scene.frame_set(int(frame))
            evaluated = obj.evaluated_get(layer.depsgraph)
            out[row] = np.array(evaluated.matrix_world)
    finally:
        scene.frame_set(current)
    return out


def check_animated(obj: bpy.types.Object, scene_frames, label: str) -> None:
    """CameraPathError (one line) when obj cannot give a path over these frames: not a camera, or keyed over a
    different frame range than the take's (a different clip, or the frame + 1 convention missed)."""
    if obj.type != "CAMERA":
        raise CameraPathError(f"{label} is a {obj.type.lower()}, not a camera: pick the camera object")
    action = obj.animation_data.action if obj.animation_data else None
    moved_by = [c.type for c in obj.constraints] + (["PARENT"] if obj.parent else [])
    if action is None and not moved_by:
        raise CameraPathError(f"{label} has no animation: solve or track the camera first, or use a still camera "
                              "(--camera-motion static)")
    if action is not None and not moved_by:
        first, last = (int(round(v)) for v in action.frame_range)
        want_first, want_last = int(scene_frames[0]), int(scene_frames[-1])
        if first > want_first + 1 or last < want_last - 1:
            raise CameraPathError(
                f"{label} is keyed over frames {first}-{last} but the take needs {want_first}-{want_last} (scene "
                "frame = source frame + 1): use the camera tracked on this clip, or shift its keys"
            )


def path_from_scene(scene: bpy.types.Scene, obj: bpy.types.Object, scene_frames) -> CameraPath:
    """The take's camera path from a camera object of an open scene (the panel's choice)."""
    label = f"the camera `{obj.name}`"
    check_animated(obj, scene_frames, label)
    return path_from_matrices(camera_matrices(scene, obj, scene_frames), source=obj.name)


def split_spec(spec: str) -> tuple[Path, str]:
    """`FILE.blend:OBJECT` -> (path, object name); CameraPathError when the object is not named."""
    index = spec.lower().rfind(".blend")
    path, rest = (spec[: index + 6], spec[index + 6:]) if index >= 0 else (spec, "")
    if not rest.startswith(":") or len(rest) < 2:
        raise CameraPathError(f"--camera-path {spec}: name the camera as FILE.blend:OBJECT")
    return Path(path).expanduser(), rest[1:]


def check_blend_camera(spec: str) -> None:
    """Before any model runs: the file exists and holds the named object (CameraPathError otherwise)."""
    path, name = split_spec(spec)
    if not path.is_file():
        raise CameraPathError(f"--camera-path {spec}: `{path}` is not a file")
    try:
        with bpy.data.libraries.load(str(path), link=True) as (data_from, _):
            names = list(data_from.objects)
    except OSError as error:
        raise CameraPathError(f"--camera-path {spec}: `{path}` is not a readable .blend file ({error})") from None
    if name not in names:
        shown = ", ".join(sorted(names)[:12]) or "none"
        raise CameraPathError(f"--camera-path {spec}: `{path.name}` has no object `{name}` (objects: {shown})")


def _appended_name(appended: str, wanted: str) -> bool:
    """An appended object keeps its name, or gets a numeric suffix when the open file has one of that name."""
    suffix = appended[len(wanted) + 1:]
    return appended == wanted or (appended.startswith(wanted + ".") and suffix.isdigit())


def path_from_blend(spec: str, scene_frames) -> CameraPath:
    """The take's camera path from a camera in another .blend: its scenes are appended for the evaluation (a
    camera solve's constraint needs its scene's clip) and removed again."""
    check_blend_camera(spec)
    path, name = split_spec(spec)
    before_scenes, before_objects = set(bpy.data.scenes), set(bpy.data.objects)
    with bpy.data.libraries.load(str(path), link=False) as (data_from, data_to):
        data_to.scenes = list(data_from.scenes)
    added_scenes = [scene for scene in bpy.data.scenes if scene not in before_scenes]
    try:
        for scene in added_scenes:
            obj = next((o for o in scene.objects if o not in before_objects and _appended_name(o.name, name)),
                       None)  # fmt: skip
            if obj is not None:
                label = f"--camera-path {spec}"
                check_animated(obj, scene_frames, label)
                return path_from_matrices(camera_matrices(scene, obj, scene_frames), source=f"{path.name}:{name}")
        raise CameraPathError(f"--camera-path {spec}: `{name}` is in no scene of `{path.name}`")
    finally:
        for scene in added_scenes:
            objects = list(scene.objects)
            bpy.data.scenes.remove(scene)
            for obj in objects:
                if obj not in before_objects and obj.users == 0:
                    bpy.data.objects.remove(obj)
