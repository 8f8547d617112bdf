"""Write F-curves in bulk: one action per object, keys set with `keyframe_points.add` + `foreach_set`.

Blender 4.4+ stores keys in slotted actions (layers -> keyframe strip -> channelbag per slot); 4.2/4.3 use the
legacy `action.fcurves`. Both go through `ChannelWriter`, so callers never branch on the version.
"""

from contextlib import contextmanager
from dataclasses import dataclass

import bpy
import numpy as np

# Enum values of `Keyframe.interpolation`, as foreach_set takes them.
INTERPOLATION = {"CONSTANT": 0, "LINEAR": 1, "BEZIER": 2}


def has_slotted_actions() -> bool:
    return bpy.app.version >= (4, 4, 0)


@dataclass
class ChannelWriter:
    """Creates F-curves of one action for one object, on whichever action API this Blender has."""

    action: bpy.types.Action
    channels: object  # a Channelbag (4.4+) or the Action itself (legacy); both have .fcurves and .groups

    def fcurve(self, data_path: str, index: int, group: str) -> bpy.types.FCurve:
        if has_slotted_actions():
            fcurve = self.channels.fcurves.new(data_path, index=index)
            fcurve.group = self.channels.groups.get(group) or self.channels.groups.new(group)
            return fcurve
        return self.action.fcurves.new(data_path, index=index, action_group=group)

    def write(self, data_path: str, group: str, frames: np.ndarray, values: np.ndarray,
              interpolation: str = "LINEAR") -> None:
        """Key `values` (N, C) at `frames` (N,) on channels 0..C-1 of data_path, all in bulk."""
        count = len(frames)
        if count == 0:
            return
        values = np.asarray(values, np.float32).reshape(count, -1)
        coordinates = np.empty((count, 2), np.float32)
        coordinates[:, 0] = frames
        modes = np.full(count, INTERPOLATION[interpolation], np.int32)
        for channel in range(values.shape[1]):
            fcurve = self.fcurve(data_path, channel, group)
            coordinates[:, 1] = values[:, channel]
            points = fcurve.keyframe_points
            points.add(count)
            points.foreach_set("co", coordinates.ravel())
            points.foreach_set("interpolation", modes)
            fcurve.update()


def new_action(obj: bpy.types.Object, name: str) -> ChannelWriter:
    """A fresh action assigned to obj (replacing any), ready for keys."""
    action = bpy.data.actions.new(name)
    obj.animation_data_create()
    obj.animation_data.action = action
    if not has_slotted_actions():
        return ChannelWriter(action, action)
    slot = action.slots.new(id_type="OBJECT", name=obj.name)
    strip = action.layers.new("Layer").strips.new(type="KEYFRAME")
    channels = strip.channelbag(slot, ensure=True)
    # Without this the object stays on no slot and nothing animates.
    obj.animation_data.action_slot = slot
    return ChannelWriter(action, channels)


def action_fcurves(obj: bpy.types.Object) -> list[bpy.types.FCurve]:
    """The F-curves animating obj, on either action API (for tools and tests)."""
    animation = obj.animation_data
    if animation is None or animation.action is None:
        return []
    action = animation.action
    if not has_slotted_actions():
        return list(action.fcurves)
    curves = []
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(animation.action_slot)
            if bag is not None:
                curves.extend(bag.fcurves)
    return curves


def key_visibility(writer: ChannelWriter, frames, hidden) -> None:
    """Key an object's visibility in the viewport and in renders: `hidden` (N,) 1 = hidden, 0 = shown, from each
    of `frames` (N,) on (constant keys: it switches at the frame, never fades)."""
    values = np.asarray(hidden, np.float32).reshape(-1, 1)
    for path in ("hide_viewport", "hide_render"):
        writer.write(path, "Visibility", np.asarray(frames, np.float32), values, interpolation="CONSTANT")


@contextmanager
def all_shown(objects):
    """Within: `objects` shown whatever their visibility keys say (their visibility F-curves muted), so exporters
    and bakes see every rig, a person absent at the current frame included; the keys rule again afterwards."""
    muted = []
    for obj in objects:
        for fcurve in action_fcurves(obj):
            if fcurve.data_path in ("hide_viewport", "hide_render") and not fcurve.mute:
                fcurve.mute = True
                muted.append(fcurve)
        obj.hide_viewport = obj.hide_render = False
    try:
        bpy.context.view_layer.update()
        yield
    finally:
        for fcurve in muted:
            fcurve.mute = False
        scene = bpy.context.scene
        scene.frame_set(scene.frame_current, subframe=scene.frame_subframe)


#: The scale an absent person's rig takes in a combined export: formats without visibility (FBX, glTF) then show
#: nothing of them (zero itself would make the exporters' matrices singular).
ABSENT_SCALE = 1e-4


def _channel_writer(obj: bpy.types.Object) -> ChannelWriter:
    """A writer adding F-curves to obj's own action (the one new_action made)."""
    action = obj.animation_data.action
    if not has_slotted_actions():
        return ChannelWriter(action, action)
    strip = action.layers[0].strips[0]
    return ChannelWriter(action, strip.channelbag(obj.animation_data.action_slot, ensure=True))


def visibility_switches(obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray] | None:
    """(frames, hidden) of obj's keyed viewport visibility (key_visibility), or None when it has none."""
    for fcurve in action_fcurves(obj):
        if fcurve.data_path == "hide_viewport":
            points = np.empty(2 * len(fcurve.keyframe_points), np.float32)
            fcurve.keyframe_points.foreach_get("co", points)
            points = points.reshape(-1, 2)
            return points[:, 0], points[:, 1]
    return None


@contextmanager
def absent_scaled_away(objects):
    """Within: each object keyed to ABSENT_SCALE wherever its visibility keys hide it (constant keys), so a
    combined FBX or glTF shows nobody who is not there; the keys are removed and the scale restored afterwards."""
    added, scales = [], {}
    for obj in objects:
        switches = visibility_switches(obj)
        if switches is None or not switches[1].any():
            continue
        frames, hidden = switches
        before = set(action_fcurves(obj))
        scales[obj] = tuple(obj.scale)
        values = np.where(hidden[:, None] > 0.5, ABSENT_SCALE, 1.0) * np.array(scales[obj])
        _channel_writer(obj).write("scale", "Visibility", frames, values, interpolation="CONSTANT")
        added += [(obj, fcurve) for fcurve in action_fcurves(obj) if fcurve not in before]
    try:
        yield
    finally:
        for obj, fcurve in added:
            owner = _channel_writer(obj).channels
            owner.fcurves.remove(fcurve)
        for obj, scale in scales.items():
            obj.scale = scale
        scene = bpy.context.scene
        scene.frame_set(scene.frame_current, subframe=scene.frame_subframe)

