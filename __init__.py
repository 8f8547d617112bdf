"""InstantHMR for Blender: markerless motion capture from ordinary video (the extension's entry point).

`register()` registers each package in order (ui: preferences and properties first, then operators, then
retarget); `unregister()` undoes them in reverse. Re-enabling after a reload picks up edited code.
"""

import importlib

from . import operators, registration, retarget, ui

if "_LOADED" in globals():
    # Re-executed by importlib.reload (disable + enable, or F8): the helpers first, then the packages.
    registration = importlib.reload(registration)
register, unregister = registration.package((ui, operators, retarget), globals())
