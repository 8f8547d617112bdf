"""Did the camera move? Measured from the background with OpenCV alone (no pycolmap, so the `auto` camera
motion works on every platform): background corners are tracked between neighbouring frames of the take with
every tracked person masked out, and the median over frame pairs of each pair's median displacement, in pixels
of a frame scaled to a 960 px long side, is compared with a threshold (tripod clips measure ~0.1 px, handheld
ones several px).

The helpers here (frame scaling, person masks, background tracking) are shared with pan.py and
colmap_solve.py.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

#: The long side, in pixels, that every figure of this package is normalised to.
REFERENCE_LONG_SIDE = 960
#: How much a person's box is grown on each side (fraction of its width/height) before it is masked out.
BOX_GROWTH = 0.15


@dataclass
class MotionDecision:
    """moving: the camera moves; shift_px: the median background displacement between neighbouring frames, in
    pixels of a frame with a 960 px long side; pairs: frame pairs measured; reason: one readable sentence."""

    moving: bool
    shift_px: float
    pairs: int
    reason: str
    threshold_px: float = 1.0

    def as_info(self) -> dict:
        """JSON-ready figures for a CameraPath's info."""
        return {"moving": self.moving, "shift_px": round(self.shift_px, 3), "pairs": self.pairs,
                "threshold_px": self.threshold_px, "reason": self.reason}  # fmt: skip


def scale_for(image_size: tuple[int, int], long_side: int) -> float:
    """The factor that brings an (H, W) frame to `long_side` pixels on its long side (never enlarges)."""
    return min(1.0, float(long_side) / max(image_size))


def resize(frame: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return frame
    height, width = frame.shape[:2]
    return cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)


def to_gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def take_columns(take) -> tuple[np.ndarray, np.ndarray | None]:
    """The take's source frame indices and its boxes (T, F, 4) with absent ones NaN (None: no take or no
    tracks)."""
    frames = np.asarray(take.frames, dtype=np.int64)
    if take.num_tracks == 0:
        return frames, None
    boxes = np.array(take.bbox, dtype=np.float64)
    boxes[~np.asarray(take.valid, dtype=bool)] = np.nan
    return frames, boxes


def background_mask(shape: tuple[int, int], boxes: np.ndarray | None, scale: float,
                    growth: float = BOX_GROWTH) -> np.ndarray:
    """uint8 (H, W) mask of a scaled frame: 255 on the background, 0 inside every person's box (given in source
    pixels, grown by `growth` of its size on each side). `boxes`: (N, 4) xyxy, rows with NaN are ignored."""
    mask = np.full(shape, 255, np.uint8)
    if boxes is None:
        return mask
    height, width = shape
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        if not np.isfinite(box).all():
            continue
        x0, y0, x1, y1 = box * scale
        grow_x, grow_y = (x1 - x0) * growth, (y1 - y0) * growth
        left, top = max(0, math.floor(x0 - grow_x)), max(0, math.floor(y0 - grow_y))
        right, bottom = min(width, math.ceil(x1 + grow_x)), min(height, math.ceil(y1 + grow_y))
        if right > left and bottom > top:
            mask[top:bottom, left:right] = 0
    return mask


def track_background(gray_a: np.ndarray, gray_b: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray | None = None,
                     *, max_corners: int = 500, fb_px: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Background corners of frame a tracked into frame b (pyramidal Lucas-Kanade, forward-backward checked).
    Returns matched (N, 2) float32 points in a and b; points landing in b's masked area are dropped."""
    short = min(gray_a.shape)
    corners = cv2.goodFeaturesToTrack(gray_a, maxCorners=max_corners, qualityLevel=0.01,
                                      minDistance=max(4, short // 60), mask=mask_a, blockSize=7)  # fmt: skip
    empty = np.zeros((0, 2), np.float32)
    if corners is None or len(corners) < 8:
        return empty, empty
    params = {"winSize": (21, 21), "maxLevel": 4,
              "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)}  # fmt: skip
    forward, status_f, _ = cv2.calcOpticalFlowPyrLK(gray_a, gray_b, corners, None, **params)
    backward, status_b, _ = cv2.calcOpticalFlowPyrLK(gray_b, gray_a, forward, None, **params)
    error = np.linalg.norm((backward - corners).reshape(-1, 2), axis=1)
    keep = (status_f.ravel() == 1) & (status_b.ravel() == 1) & (error < fb_px)
    a, b = corners.reshape(-1, 2)[keep], forward.reshape(-1, 2)[keep]
    inside = (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 0] < gray_b.shape[1] - 1) & (b[:, 1] < gray_b.shape[0] - 1)
    a, b = a[inside], b[inside]
    if mask_b is not None and len(b):
        on_background = mask_b[b[:, 1].astype(int), b[:, 0].astype(int)] > 0
        a, b = a[on_background], b[on_background]
    return a.astype(np.float32), b.astype(np.float32)


def _pair_windows(count: int, max_pairs: int, windows: int) -> list[tuple[int, int]]:
    """Up to `windows` runs of consecutive columns [first, last] spread over `count` columns, holding about
    `max_pairs` neighbouring pairs in all (runs, not scattered pairs: a video seek costs ~0.1 s)."""
    pairs = count - 1
    if pairs <= max_pairs:
        return [(0, count - 1)]
    windows = max(1, min(windows, max_pairs))
    length = max(1, math.ceil(max_pairs / windows))  # pairs per window
    starts = np.linspace(0, pairs - length, windows).round().astype(int)
    return [(int(s), int(s) + length) for s in np.unique(starts)]


def measure_shift(source_path: str | os.PathLike, take=None, *, max_pairs: int = 40, windows: int = 4,
                  fps: float = 30.0, cancel=None) -> tuple[float, int]:
    """(median background shift between neighbouring take columns in px at a 960 px long side, pairs used)."""
    from ..video.frames import open_source

    with open_source(source_path, fps=fps) as source:
        if take is None:
            frames, boxes = np.arange(source.info.frame_count, dtype=np.int64), None
        else:
            frames, boxes = take_columns(take)
        size = (source.info.height, source.info.width)
        scale = scale_for(size, REFERENCE_LONG_SIDE)
        to_reference = REFERENCE_LONG_SIDE / (max(size) * scale)  # sources smaller than 960 px: scale up
        shifts = []
        for first, last in _pair_windows(len(frames), max_pairs, windows):
            wanted = {int(frames[c]): c for c in range(first, last + 1)}
            previous = None
            for index, rgb in source.frames(int(frames[first]), int(frames[last]) + 1):
                if cancel is not None and cancel.is_set():
                    raise InterruptedError("cancelled")
                column = wanted.get(index)
                if column is None:
                    continue
                gray = to_gray(resize(rgb, scale))
                mask = background_mask(gray.shape, None if boxes is None else boxes[:, column], scale)
                if previous is not None and previous[0] == column - 1:
                    a, b = track_background(previous[1], gray, previous[2], mask)
                    if len(a) >= 8:
                        shifts.append(float(np.median(np.linalg.norm(b - a, axis=1))) * to_reference)
                previous = (column, gray, mask)
    if not shifts:
        return float("nan"), 0
    return float(np.median(shifts)), len(shifts)


def decide_motion(source_path: str | os.PathLike, take=None, *, threshold_px: float = 1.0, max_pairs: int = 40,
                  fps: float = 30.0, cancel=None) -> MotionDecision:
    """Whether the camera of `source_path` moves over the take's frames (`take`: a Take, or None for the whole
    source with nothing masked). Tracks background corners (people's boxes masked) in up to `max_pairs`
    neighbouring frame pairs; the camera moves when the median shift is at least `threshold_px` (pixels at a
    960 px long side). A background too plain to track counts as still (nothing to solve from anyway)."""
    shift, pairs = measure_shift(source_path, take, max_pairs=max_pairs, fps=fps, cancel=cancel)
    if pairs == 0:
        return MotionDecision(False, float("nan"), 0, "the background has too few trackable corners outside "
                              "the people to measure its motion: the camera is taken as still", threshold_px)
    moving = shift >= threshold_px
    verdict = "the camera moves" if moving else "the camera is still"
    reason = (f"the background moves {shift:.2f} px between frames (still below {threshold_px:g} px, over "
              f"{pairs} frame pairs): {verdict}")
    return MotionDecision(bool(moving), shift, pairs, reason, threshold_px)
