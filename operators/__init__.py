"""Blender operators: capture (worker thread + main-thread pump), cancel, rebuild from a take, models, export, mesh."""

from .. import registration
from . import capture, clip, export, live, mesh, models, sam3d, take

register, unregister = registration.package((models, clip, capture, live, take, export, mesh, sam3d), globals())
