"""Blender operators: capture (worker thread + main-thread pump), cancel, rebuild from a take, models, export."""

from .. import registration
from . import capture, export, mesh, models, take

_MODULES = (models, capture, take, export, mesh)

if "_LOADED" in globals():
    _MODULES = registration.reload_modules(_MODULES)
_LOADED = True


def register() -> None:
    registration.register_modules(_MODULES)


def unregister() -> None:
    registration.unregister_modules(_MODULES)
