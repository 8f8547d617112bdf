"""Registration helpers shared by the extension's packages: ordered register, reverse unregister, reload.

Each Blender-side package lists its modules in order and ends with
`register, unregister = registration.package(modules, globals())`, so register / unregister and a reload
(disable + enable, or F8) behave the same everywhere.
"""

import importlib
from collections.abc import Callable
from types import ModuleType


def reload_modules(modules: tuple[ModuleType, ...]) -> tuple[ModuleType, ...]:
    """Re-execute already imported modules so edited code is picked up; returns the reloaded modules."""
    return tuple(importlib.reload(module) for module in modules)


def register_modules(modules: tuple[ModuleType, ...]) -> None:
    registered: list[ModuleType] = []
    try:
        for module in modules:
            module.register()
            registered.append(module)
    except Exception:
        # Leave Blender as it was: a half-registered add-on cannot be enabled again without a restart.
        for module in reversed(registered):
            module.unregister()
        raise


def unregister_modules(modules: tuple[ModuleType, ...]) -> None:
    for module in reversed(modules):
        module.unregister()


def package(modules: tuple[ModuleType, ...], package_globals: dict) -> tuple[Callable[[], None], Callable[[], None]]:
    """register / unregister for a package whose modules register in the given order. When the package itself
    is being re-executed by a reload, its modules are reloaded first."""
    if package_globals.get("_LOADED"):
        modules = reload_modules(modules)
    package_globals["_LOADED"] = True

    def register() -> None:
        register_modules(modules)

    def unregister() -> None:
        unregister_modules(modules)

    return register, unregister
