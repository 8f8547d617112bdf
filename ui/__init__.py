"""The N-panel "Capture from video" (3D viewport sidebar), its property groups and the add-on preferences."""

from .. import registration
from . import panel, preferences, properties

register, unregister = registration.package((properties, preferences, panel), globals())
