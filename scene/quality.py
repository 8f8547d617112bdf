"""The solve's quality report in the scene: custom properties on each capture rig and timeline markers over
the frames the clean stage repaired, so an animator sees where the input was bad."""

import bpy

from ..instanthmr_blender.solve.clean import REASON_TEXT

# Custom property names on the armature object: this prefix + the report's names (quality.PersonQuality).
PROP_QUALITY_PREFIX = "instanthmr_quality_"
PROP_QUALITY_SUMMARY = "instanthmr_quality"
# Repair markers are named "<MARKER_PREFIX><take> person <id>: <reason>" so a rebuild removes only its own.
MARKER_PREFIX = "repaired "


def write_quality_properties(rig: bpy.types.Object, person) -> None:
    """Store person.quality (the engine's PersonQuality) on the rig as custom properties."""
    report = person.quality
    if report is None:
        return
    for name, value in report.properties().items():
        rig[PROP_QUALITY_PREFIX + name] = value
    rig[PROP_QUALITY_SUMMARY] = report.summary()


def marker_name(take_name: str, track_id: int, reason: str) -> str:
    return f"{MARKER_PREFIX}{take_name} person {track_id}: {REASON_TEXT.get(reason, reason)}"


def remove_repair_markers(scene: bpy.types.Scene, take_name: str) -> None:
    """Remove the repair markers (and the camera's interpolated-frame markers) an earlier build of this take
    left."""
    prefixes = (f"{MARKER_PREFIX}{take_name} person ", camera_marker_name(take_name))
    for marker in [m for m in scene.timeline_markers if m.name.startswith(prefixes)]:
        scene.timeline_markers.remove(marker)


def camera_marker_name(take_name: str) -> str:
    return f"camera interpolated {take_name}"


def add_camera_markers(scene: bpy.types.Scene, take_name: str, scene_frames, registered) -> int:
    """One marker at the first frame of every run of frames whose camera pose the solver could not place
    (interpolated between its neighbours). Returns the number of markers added."""
    added = 0
    previous = True
    for frame, placed in zip(scene_frames, registered, strict=True):
        if not placed and previous:
            scene.timeline_markers.new(camera_marker_name(take_name), frame=int(frame))
            added += 1
        previous = bool(placed)
    return added


def add_repair_markers(scene: bpy.types.Scene, take_name: str, person, frame_offset: int = 1) -> int:
    """One marker at the first frame of every repaired range of person.quality (source frames + frame_offset =
    scene frames, as build.scene_frames), named by take, person and reason. Gap fills are left out (dropped
    frames are expected, not a warning). Returns the number of markers added."""
    report = person.quality
    if report is None:
        return 0
    added = 0
    for first, _last, reason in report.repaired_ranges:
        if reason == "gap":
            continue
        scene.timeline_markers.new(marker_name(take_name, person.track_id, reason), frame=int(first) + frame_offset)
        added += 1
    return added
