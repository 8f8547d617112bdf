"""The capture camera: the take's intrinsics and the solve's placement, with the video as its background."""

import math
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from . import actions, naming

SENSOR_WIDTH_MM = 36.0


def camera_intrinsics(image_size: tuple[int, int], focal_length: float, principal_point: tuple[float, float]):
    """(lens_mm, shift_x, shift_y) of a horizontally fitted 36 mm sensor that reproduces the pinhole camera.

    image_size (H, W) px; focal_length px; principal_point (cx, cy) px. Blender's shift is a fraction of the
    larger image dimension; +shift_x moves the frame right (the optical axis left), +shift_y moves it up.
    """
    height, width = image_size
    cx, cy = principal_point
    larger = max(width, height)
    lens = focal_length * SENSOR_WIDTH_MM / width
    return lens, (width / 2.0 - cx) / larger, (cy - height / 2.0) / larger


def set_scene_timing(scene: bpy.types.Scene, fps: float, first_frame: int, last_frame: int,
                     image_size: tuple[int, int]) -> None:
    """Scene rate, range and resolution from the take (scene frame = source frame index + 1)."""
    rounded = max(1, round(fps))
    scene.render.fps = rounded
    scene.render.fps_base = rounded / fps
    scene.frame_start = first_frame
    scene.frame_end = max(first_frame, last_frame)
    scene.render.resolution_y, scene.render.resolution_x = (int(v) for v in image_size)
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0


def build_camera(name: str, take, camera_matrix_world: np.ndarray, collection: bpy.types.Collection,
                 *, background: str | None = None) -> bpy.types.Object:
    """A camera object reproducing the take's projection, placed by the solve (the world contract:
    `matrix_world @ (x, -y, -z)` is the world position of camera-space point (x, y, z))."""
    data = bpy.data.cameras.new(name)
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = SENSOR_WIDTH_MM
    data.lens, data.shift_x, data.shift_y = camera_intrinsics(
        take.image_size, take.focal_length, take.principal_point)
    data.clip_start, data.clip_end = 0.05, 1000.0
    obj = bpy.data.objects.new(name, data)
    obj.matrix_world = Matrix(np.asarray(camera_matrix_world, float).tolist())
    obj[naming.PROP_ROLE] = "capture_camera"
    collection.objects.link(obj)
    if background:
        attach_background(data, background, image_size=take.image_size)
    return obj


def animate_camera(obj: bpy.types.Object, matrices: np.ndarray, scene_frames: np.ndarray, registered: np.ndarray,
                   action_name: str) -> bpy.types.Action:
    """Key a moving camera's path: `matrices` (F, 4, 4) its world matrix at each of `scene_frames` (F,), as
    location and quaternion (continuous: no sign flips between frames). Frames the solver interpolated
    (registered False) are keyed too and listed on the object as `instanthmr_interpolated_frames`."""
    matrices = np.asarray(matrices, dtype=np.float64)
    quats = np.array([Matrix(m[:3, :3].tolist()).to_quaternion()[:] for m in matrices])
    for row in range(1, len(quats)):
        if quats[row] @ quats[row - 1] < 0:
            quats[row] = -quats[row]
    obj.rotation_mode = "QUATERNION"
    obj.matrix_world = Matrix(matrices[0].tolist())
    writer = actions.new_action(obj, action_name)
    writer.write("location", "Camera", scene_frames, matrices[:, :3, 3])
    writer.write("rotation_quaternion", "Camera", scene_frames, quats)
    missing = [int(frame) for frame in np.asarray(scene_frames)[~np.asarray(registered, dtype=bool)]]
    obj[naming.PROP_INTERPOLATED] = missing if missing else []
    return writer.action


def attach_background(data: bpy.types.Camera, path: str, *, image_size: tuple[int, int] | None = None) -> None:
    """Show the source video (or image / image sequence) behind the camera view, frame-aligned.

    image_size (H, W): the take's (upright) frame size, used to show a phone video upright where this Blender
    does not apply the video's rotation metadata itself."""
    source = Path(path)
    data.show_background_images = True
    entry = data.background_images.new()
    entry.alpha = 1.0
    entry.frame_method = "FIT"
    if source.is_file() and source.suffix.lower() in {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}:
        clip = bpy.data.movieclips.load(str(source), check_existing=True)
        clip.frame_start = 1
        entry.source = "MOVIE_CLIP"
        entry.clip = clip
        if image_size is not None:
            rotate_background_upright(entry, tuple(clip.size), image_size, _video_rotation(source))
        return
    first = source if source.is_file() else _first_image(source)
    if first is None:
        return
    image = bpy.data.images.load(str(first), check_existing=True)
    entry.source = "IMAGE"
    entry.image = image
    if not source.is_file():
        image.source = "SEQUENCE"
        entry.image_user.frame_start = 1
        entry.image_user.frame_duration = len(_images_in(source))
        entry.image_user.use_auto_refresh = True


def rotate_background_upright(entry, clip_size: tuple[int, int], image_size: tuple[int, int],
                              rotation: int) -> None:
    """Turn a phone video's background upright where Blender shows it as stored.

    The engine rotates frames by the video's rotation metadata (`rotation`, degrees clockwise), so the take
    and the camera are upright. Blender 4.5 and later apply that metadata to movie clips too (measured: the
    clip's size comes back rotated, the pixels turned clockwise like ours); Blender 4.2 does not, and would
    show a portrait phone video lying on its side. The background is then rotated (Blender draws it turned
    clockwise by `rotation`, after fitting it to the frame) and scaled to fill the upright frame again.
    clip_size is Blender's (width, height) of the clip; image_size the take's (H, W).
    """
    height, width = image_size
    shown_width, shown_height = clip_size
    if rotation in (90, 270):
        if (shown_width, shown_height) != (height, width) or width == height:
            return  # Blender already shows it upright (or the sizes do not tell)
        aspect = shown_width / shown_height
        entry.rotation = math.radians(rotation)
        entry.scale = max(aspect, 1.0 / aspect)
    elif rotation == 180 and bpy.app.version < (4, 5, 0):
        entry.rotation = math.pi


def _video_rotation(path: Path) -> int:
    """The rotation (degrees clockwise) the engine applies to this video's frames; 0 when it cannot tell."""
    from ..instanthmr_blender.video import frames

    try:
        with frames.open_source(path) as source:
            return int(source.info.rotation)
    except Exception:  # an unreadable video only loses the upright background
        return 0


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".exr", ".webp"}
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)


def _first_image(folder: Path) -> Path | None:
    images = _images_in(folder)
    return images[0] if images else None


def horizontal_fov_degrees(image_size: tuple[int, int], focal_length: float) -> float:
    return math.degrees(2 * math.atan(image_size[1] / (2 * focal_length)))
