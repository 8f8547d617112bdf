"""The live capture's rig: the same capture rig as an offline capture's, built from a person's calibrated rest
pose in its own collection (replacing the previous live rig). Posing it each tick is the live operator's job."""

import bpy

from . import armature, naming
from .build import remove_capture


def build_live_rig(context, take_name: str, track_id: int, rest) -> bpy.types.Object:
    """A capture rig named after `take_name` and the person, from `rest` (a solve RigRest), in the collection
    `InstantHMR <take_name>`, which is emptied first."""
    name = naming.collection_name(take_name)
    collection = bpy.data.collections.get(name)
    if collection is not None:
        remove_capture(collection)
    collection = bpy.data.collections.new(name)
    collection[naming.PROP_TAKE] = take_name
    context.scene.collection.children.link(collection)
    rig = armature.build_armature(context, naming.armature_name(take_name, track_id), rest, collection)
    rig[naming.PROP_TAKE] = take_name
    rig[naming.PROP_TRACK_ID] = int(track_id)
    return rig
