"""Retargeting a capture rig onto Rigify and other rigs (bone maps as data, baked actions).

Nothing to register until the retarget feature lands; the package keeps the extension's layout and its
register/unregister contract.
"""

_MODULES = ()


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()
