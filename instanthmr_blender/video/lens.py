"""A known camera lens: the focal length in pixels, or in millimetres with the sensor width.

Millimetres follow Blender's "Auto" sensor fit and the 35 mm-equivalent convention of phones: the sensor width is
measured along the image's longer side, so f_px = lens_mm * max(W, H) / sensor_width_mm (a phone's "26 mm
equivalent" is lens 26 with sensor 36, whichever way the phone was held).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_SENSOR_WIDTH_MM = 36.0


class LensError(ValueError):
    """A lens that cannot be used; the message names the setting and what to give instead."""


@dataclass(frozen=True)
class Lens:
    """focal_px: pixels; or lens_mm with sensor_width_mm (along the image's longer side). Exactly one form."""

    focal_px: float | None = None
    lens_mm: float | None = None
    sensor_width_mm: float = DEFAULT_SENSOR_WIDTH_MM

    def check(self) -> Lens:
        """Raise LensError naming the first bad value; returns self."""
        if self.focal_px is not None and self.lens_mm is not None:
            raise LensError("give the focal length either in pixels or as a lens in mm, not both")
        for name, value in (("focal length (px)", self.focal_px), ("lens (mm)", self.lens_mm),
                            ("sensor width (mm)", self.sensor_width_mm)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise LensError(f"{name} must be a positive number, got {value!r}")
        return self

    @property
    def known(self) -> bool:
        return self.focal_px is not None or self.lens_mm is not None

    def focal_pixels(self, image_size: tuple[int, int]) -> float | None:
        """The focal length in pixels for frames of (H, W), or None when no lens is known."""
        if self.focal_px is not None:
            return float(self.focal_px)
        if self.lens_mm is not None:
            return float(self.lens_mm) * max(image_size) / float(self.sensor_width_mm)
        return None

    def describe(self) -> str:
        if self.focal_px is not None:
            return f"{self.focal_px:g} px"
        if self.lens_mm is not None:
            return f"{self.lens_mm:g} mm on a {self.sensor_width_mm:g} mm sensor"
        return "the model's default"
