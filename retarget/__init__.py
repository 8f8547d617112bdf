"""Retargeting a capture rig onto Rigify and other rigs (bone maps as data, baked actions).

Command line: `bake.retarget_capture(context, source_rig, target_rig, ...)` and `bake.append_target(spec)`.
"""

from .. import registration
from . import bake, bone_maps, operators, panel, rigify

if "_LOADED" in globals():
    # The helpers the registered modules import, reloaded first so those pick up the new code.
    bone_maps, rigify, bake = registration.reload_modules((bone_maps, rigify, bake))
register, unregister = registration.package((panel, operators), globals())

retarget_capture = bake.retarget_capture
append_target = bake.append_target
RetargetError = bake.RetargetError
