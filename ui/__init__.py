"""The N-panel "Capture from video" (3D viewport sidebar), its property groups and the add-on preferences."""

from .. import registration
from . import live_panel, panel, preferences, properties

register, unregister = registration.package((properties, preferences, panel, live_panel), globals())
