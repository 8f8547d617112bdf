"""The N-panel "Capture from video" (3D viewport sidebar), its property groups and the add-on preferences."""

from .. import registration
from . import panel, preferences, properties

_MODULES = (properties, preferences, panel)

if "_LOADED" in globals():
    _MODULES = registration.reload_modules(_MODULES)
_LOADED = True


def register() -> None:
    registration.register_modules(_MODULES)


def unregister() -> None:
    registration.unregister_modules(_MODULES)
