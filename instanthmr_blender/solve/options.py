"""The solve's settings and its error: one place for every stage's options."""

from __future__ import annotations

from dataclasses import dataclass, field

from .clean import CleanSettings
from .contacts import ContactSettings


class SolveError(ValueError):
    """A track that cannot be solved; the message says which input and what to do."""


@dataclass
class SolveOptions:
    """Settings of the solve.

    clean: repair glitches before smoothing (clean.py: swaps, flips, jumps, off reprojections, bone lengths);
    smoothing: "off" | "light" | "medium" | "strong" (smooth.py; depth along the camera ray is smoothed harder
    than the image position);
    smoothing_method: "zero_lag" (offline: a smoothing spline over the past and the future, no lag; the default,
    because a capture is smoothed after the fact) | "one_euro" (causal, per bone group, as a live filter would see
    it: no look-ahead, about one frame of lag);
    foot_lock: hold planted feet on their support (contacts.py); symmetric_lengths: average left/right bone
    lengths; max_gap_frames: longest gap (frames) filled by interpolation, None = 0.25 s at the take's rate;
    floor: "auto" (fit the floor to the planted feet) | "none" (gravity = camera down, floor at the lowest
    foot); supports: "auto" (a person whose planted feet stand clearly off the floor, on a box say, gets a
    support height of their own) | "floor" (everyone stands on the one floor); camera_path: use the take's
    camera path when it has one (a moving camera, world.py); False treats the camera as still.
    """

    smoothing: str = "medium"
    smoothing_method: str = "zero_lag"
    foot_lock: bool = True
    symmetric_lengths: bool = True
    max_gap_frames: int | None = None
    floor: str = "auto"
    clean: bool = True
    supports: str = "auto"
    camera_path: bool = True
    contact: ContactSettings = field(default_factory=ContactSettings)
    cleaning: CleanSettings = field(default_factory=CleanSettings)

    def gap_frames(self, fps: float) -> int:
        return int(self.max_gap_frames) if self.max_gap_frames is not None else max(1, int(round(0.25 * fps)))
