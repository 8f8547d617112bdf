"""InstantHMR for Blender: markerless motion capture from ordinary video (the extension's entry point).

`register()` registers each package in order (ui: preferences and properties first, then operators, then
retarget); `unregister()` undoes them in reverse. Re-enabling after a reload picks up edited code.
"""

import importlib

from . import operators, registration, retarget, ui

_PACKAGES = (ui, operators, retarget)

if "_LOADED" in globals():
    # Re-executed by importlib.reload (disable + enable, or F8): reload the packages so edits are picked up.
    registration = importlib.reload(registration)
    _PACKAGES = registration.reload_modules(_PACKAGES)
_LOADED = True


def register() -> None:
    registration.register_modules(_PACKAGES)


def unregister() -> None:
    registration.unregister_modules(_PACKAGES)
