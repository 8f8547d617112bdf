"""Export capture rigs through Blender's own exporters (BVH, FBX, glTF), with root motion."""

from pathlib import Path

import bpy

from ..instanthmr_blender.output_paths import output_problem
from . import actions

FORMATS = {".bvh": "BVH", ".fbx": "FBX", ".glb": "GLB", ".gltf": "GLTF"}


class ExportError(ValueError):
    pass


def export_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(f"{path}: unknown export format {suffix or '(none)'}: use .bvh, .fbx, .glb or .gltf")
    return FORMATS[suffix]


def _per_person_path(path: Path, rig: bpy.types.Object) -> Path:
    # Always named after the person, even when there is one: the names do not depend on how many were tracked.
    return path.with_name(f"{path.stem}.{rig.name.rsplit('.', 1)[-1]}{path.suffix}")


def _select_only(context, objects) -> None:
    for obj in context.view_layer.objects:
        obj.select_set(False)
    for obj in objects:
        obj.select_set(True)
    context.view_layer.objects.active = objects[0]


def _frame_range(rig) -> tuple[int, int]:
    action = rig.animation_data.action if rig.animation_data else None
    if action is None:
        scene = bpy.context.scene
        return scene.frame_start, scene.frame_end
    start, end = action.frame_range
    return int(round(start)), int(round(end))


def _export_one(context, rigs: list, path: Path, fmt: str) -> None:
    _select_only(context, rigs)
    if fmt == "BVH":
        start, end = _frame_range(rigs[0])
        result = bpy.ops.export_anim.bvh(filepath=str(path), frame_start=start, frame_end=end,
                                         rotate_mode="NATIVE", root_transform_only=False)
    elif fmt == "FBX":
        result = bpy.ops.export_scene.fbx(filepath=str(path), use_selection=True, object_types={"ARMATURE"},
                                          add_leaf_bones=False, bake_anim=True, bake_anim_use_all_actions=False,
                                          bake_anim_use_nla_strips=False, bake_anim_simplify_factor=0.0)
    else:
        result = bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB" if fmt == "GLB" else "GLTF_SEPARATE",
                                           use_selection=True, export_animations=True, export_force_sampling=True)
    if result != {"FINISHED"} or not path.exists():
        raise ExportError(f"{path}: Blender's {fmt} exporter did not write the file")


def export_capture(context, rigs: list, path: str, *, per_person: bool = False) -> list[Path]:
    """Write the rigs' animation to path; BVH (one skeleton per file) is always one file per person.

    Several people in one FBX/glTF unless per_person; per-person files (BVH always) are named
    `<stem>.personNN<ext>`, one person included.
    Returns the files written."""
    if not rigs:
        raise ExportError("nothing to export: the capture has no rig")
    target = Path(bpy.path.abspath(path))
    fmt = export_format(str(target))
    problem = output_problem(target, create_folder=True)
    if problem is not None:
        raise ExportError(f"{target}: {problem}")
    previous_selection = [obj for obj in context.view_layer.objects if obj.select_get()]
    previous_active = context.view_layer.objects.active
    written = []
    try:
        with actions.all_shown(rigs):
            written += _export_all(context, rigs, target, fmt, per_person)
    finally:
        _select_only_restore(context, previous_selection, previous_active)
    return written


def _export_all(context, rigs: list, target: Path, fmt: str, per_person: bool) -> list[Path]:
    if fmt == "FBX" and not per_person:
        # Several people in one file: one absent over part of the clip must not stand there frozen. (FBX carries
        # the keyed object scale; Blender's glTF exporter was not seen to, so glTF is left as it was.)
        with actions.absent_scaled_away(rigs):
            _export_one(context, list(rigs), target, fmt)
        return [target]
    if fmt != "BVH" and not per_person:
        _export_one(context, list(rigs), target, fmt)
        return [target]
    written = []
    for rig in rigs:
        out = _per_person_path(target, rig)
        _export_one(context, [rig], out, fmt)
        written.append(out)
    return written


def _select_only_restore(context, selection, active) -> None:
    for obj in context.view_layer.objects:
        obj.select_set(obj in selection)
    context.view_layer.objects.active = active
