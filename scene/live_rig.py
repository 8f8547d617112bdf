"""The live capture's rig: the same capture rig as an offline capture's, built from a person's calibrated rest
pose in its own collection (replacing the previous live rig). Posing it each tick is the live operator's job."""

import bpy

from . import armature, naming
from .build import new_capture_collection


def build_live_rig(context, take_name: str, track_id: int, rest) -> bpy.types.Object:
    """A capture rig named after `take_name` and the person, from `rest` (a solve RigRest), in the collection
    `InstantHMR <take_name>`, which is emptied first."""
    collection = new_capture_collection(context, take_name)
    rig = armature.build_armature(context, naming.armature_name(take_name, track_id), rest, collection)
    rig[naming.PROP_TAKE] = take_name
    rig[naming.PROP_TRACK_ID] = int(track_id)
    return rig
