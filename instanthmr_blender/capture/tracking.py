"""Person tracking: stable ids across frames, short occlusions bridged, boxes carried between detections.

Association is globally optimal per frame (Hungarian, on box IoU and mean 2D keypoint distance), gated so
that implausible pairs stay unmatched. Between detector frames each person's box comes from their own
keypoints of the previous frame, expanded by a per-person factor measured at their last detection, so the
crop size (and so InstantHMR's depth) does not drift. Frames are counted in processed steps, not source
frame numbers, so a capture step of 2 does not halve `lost_track_frames`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Body keypoints (face, limbs, feet) used for the confidence of a propagated box; hands are too small.
BODY_KEYPOINTS = slice(0, 21)


def hungarian(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost assignment of a (rows, cols) matrix with rows <= cols; every row gets one column.

    Returns (row, col) pairs sorted by row. Exact (shortest augmenting paths with potentials, O(n^2 m)),
    written here because scipy is not available inside Blender.
    """
    cost = np.asarray(cost, np.float64)
    rows, cols = cost.shape
    if rows > cols:
        return sorted((r, c) for c, r in hungarian(cost.T))
    inf = np.inf
    u = np.zeros(rows + 1)
    v = np.zeros(cols + 1)
    owner = np.zeros(cols + 1, np.int64)  # owner[j]: 1-based row assigned to column j, 0 = free
    way = np.zeros(cols + 1, np.int64)
    for row in range(1, rows + 1):
        owner[0] = row
        col0 = 0
        min_slack = np.full(cols + 1, inf)
        used = np.zeros(cols + 1, bool)
        while True:
            used[col0] = True
            row0 = owner[col0]
            free = ~used[1:]
            slack = cost[row0 - 1] - u[row0] - v[1:]
            better = free & (slack < min_slack[1:])
            min_slack[1:][better] = slack[better]
            way[1:][better] = col0
            candidates = np.where(free, min_slack[1:], inf)
            col1 = int(np.argmin(candidates)) + 1
            delta = candidates[col1 - 1]
            used_cols = np.flatnonzero(used)
            u[owner[used_cols]] += delta
            v[used_cols] -= delta
            min_slack[1:][free] -= delta
            col0 = col1
            if owner[col0] == 0:
                break
        while col0:
            col1 = way[col0]
            owner[col0] = owner[col1]
            col0 = col1
    return sorted((int(owner[j]) - 1, j - 1) for j in range(1, cols + 1) if owner[j])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, 4) x (B, 4) xyxy boxes -> (A, B) intersection over union."""
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def keypoint_extent(keypoints: np.ndarray) -> np.ndarray | None:
    """(K, 2) pixels -> (4,) xyxy box around the finite keypoints, or None when there are none."""
    finite = keypoints[np.isfinite(keypoints).all(axis=1)]
    if len(finite) == 0:
        return None
    return np.concatenate([finite.min(axis=0), finite.max(axis=0)]).astype(np.float64)


def keypoint_confidence(
    joints_crop: np.ndarray, joints_2d: np.ndarray, image_size: tuple[int, int]
) -> float:
    """How well a crop held its person: the fraction of body keypoints inside both the crop and the frame.

    joints_crop: (70, 2) crop coordinates in [-1, 1]; joints_2d: (70, 2) pixels; image_size: (H, W).
    A person walking out of the frame, or out of a box that lagged behind, scores low.
    """
    height, width = image_size
    crop = joints_crop[BODY_KEYPOINTS]
    pixels = joints_2d[BODY_KEYPOINTS]
    inside = (
        (np.abs(crop) <= 1.0).all(axis=1)
        & (pixels[:, 0] >= 0)
        & (pixels[:, 0] < width)
        & (pixels[:, 1] >= 0)
        & (pixels[:, 1] < height)
    )
    return float(inside.mean())


@dataclass(frozen=True)
class TrackerSettings:
    """Tuning of the tracker. Distances are normalised by the person's box size (its larger side)."""

    max_persons: int = 2  # people tracked at once; extra ones are ignored, the longest-lived tracks kept
    lost_track_frames: int = 15  # processed frames an unseen track is remembered for re-identification
    iou_weight: float = 0.5
    keypoint_weight: float = 0.5
    max_cost: float = 0.8  # pairs costing more are never matched
    max_keypoint_distance: float = 0.75  # mean keypoint distance above which a pair is impossible
    min_iou_without_keypoints: float = 0.1  # the gate when either side has no keypoints
    min_keypoint_confidence: float = 0.6  # a propagated person below this forces a detection next frame
    velocity_smoothing: float = 0.5  # weight of the newest velocity measurement

    def __post_init__(self) -> None:
        if self.max_persons < 1:
            raise ValueError(f"max_persons must be at least 1, got {self.max_persons}")
        if self.lost_track_frames < 0:
            raise ValueError(f"lost_track_frames must be 0 or more, got {self.lost_track_frames}")


@dataclass
class Track:
    """One person across frames. Boxes (4,) xyxy and keypoints (70, 2) are full-frame pixels."""

    track_id: int
    box: np.ndarray
    keypoints: np.ndarray | None
    score: float
    first_step: int
    last_step: int
    hits: int = 1
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box centre, pixels per step
    # The detector box relative to the keypoint extent, measured at detections: larger side ratio and
    # centre offset (in units of the extent's larger side). Used to rebuild the box from keypoints.
    box_scale: float | None = None
    box_offset: np.ndarray = field(default_factory=lambda: np.zeros(2))

    def predicted_box(self, step: int) -> np.ndarray:
        shift = self.velocity * (step - self.last_step)
        return self.box + np.concatenate([shift, shift])

    def predicted_keypoints(self, step: int) -> np.ndarray | None:
        if self.keypoints is None:
            return None
        return self.keypoints + self.velocity * (step - self.last_step)


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])


def _larger_side(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


class PersonTracker:
    """Gives each person a stable id. Call `update` on detector frames and `propagate` + `observe` between.

    Steps are the capture's processed-frame counter (0, 1, 2, ...), strictly increasing.
    """

    #: Limits on the measured detector-box / keypoint-extent ratio: outside them a detection was odd.
    BOX_SCALE_RANGE = (1.0, 2.0)
    DEFAULT_BOX_SCALE = 1.15

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self.tracks: dict[int, Track] = {}
        self._next_id = 0
        self._detection_requested = False

    # -- bookkeeping ---------------------------------------------------------------------------------

    @property
    def detection_needed(self) -> bool:
        """True when a propagated person lost confidence: run the detector on the next frame."""
        return self._detection_requested

    def active_tracks(self, step: int) -> list[Track]:
        """Tracks seen at `step` (after update/observe for that step), by id."""
        return [t for t in self._sorted() if t.last_step == step]

    def _sorted(self) -> list[Track]:
        return [self.tracks[k] for k in sorted(self.tracks)]

    def _expire(self, step: int) -> None:
        limit = self.settings.lost_track_frames
        for track_id in [k for k, t in self.tracks.items() if step - t.last_step > limit + 1]:
            del self.tracks[track_id]

    # -- detector frames -----------------------------------------------------------------------------

    def update(
        self,
        step: int,
        boxes: np.ndarray,
        scores: np.ndarray,
        keypoints: np.ndarray | None = None,
    ) -> list[tuple[int, int]]:
        """Associate one frame's detections with the tracks.

        boxes: (K, 4) xyxy pixels; scores: (K,); keypoints: (K, 70, 2) pixels (InstantHMR's 2D keypoints of
        each detection) or None. Returns (track id, detection index) for the people kept this frame (at most
        max_persons), sorted by track id. Tracks left unmatched become lost; lost tracks older than
        lost_track_frames are forgotten.
        """
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        self._detection_requested = False
        self._expire(step)
        tracks = self._sorted()
        pairs = self._associate(step, tracks, boxes, keypoints)

        matched = {d: tracks[t] for t, d in pairs}
        # Who stays visible: existing tracks first (longest first), then new people by detector score.
        candidates = [(matched[d].hits, scores[d], d) for d in matched]
        candidates += [(0, scores[d], d) for d in range(len(boxes)) if d not in matched]
        candidates.sort(key=lambda c: (-c[0], -c[1], c[2]))
        kept = candidates[: self.settings.max_persons]

        result = []
        for _, _, d in kept:
            det_keypoints = None if keypoints is None else np.asarray(keypoints[d], np.float64)
            if d in matched:
                track = matched[d]
                self._advance(track, step, boxes[d], det_keypoints)
            else:
                track = Track(self._next_id, boxes[d].copy(), det_keypoints, float(scores[d]), step, step)
                self.tracks[track.track_id] = track
                self._next_id += 1
            track.score = float(scores[d])
            self._calibrate(track, boxes[d], det_keypoints)
            result.append((track.track_id, d))
        return sorted(result)

    def _associate(
        self, step: int, tracks: list[Track], boxes: np.ndarray, keypoints: np.ndarray | None
    ) -> list[tuple[int, int]]:
        s = self.settings
        n_tracks, n_dets = len(tracks), len(boxes)
        if n_tracks == 0 or n_dets == 0:
            return []
        predicted = np.array([t.predicted_box(step) for t in tracks])
        iou = box_iou(predicted, boxes)
        cost = np.full((n_tracks, n_dets), np.inf)
        for i, track in enumerate(tracks):
            track_points = track.predicted_keypoints(step)
            for j in range(n_dets):
                if keypoints is not None and track_points is not None:
                    distance = self._keypoint_distance(track_points, keypoints[j], predicted[i], boxes[j])
                    if distance > s.max_keypoint_distance:
                        continue
                    keypoint_cost = distance / s.max_keypoint_distance
                elif iou[i, j] < s.min_iou_without_keypoints:
                    continue
                else:
                    keypoint_cost = 1.0 - iou[i, j]
                pair_cost = s.iou_weight * (1.0 - iou[i, j]) + s.keypoint_weight * keypoint_cost
                if pair_cost <= s.max_cost:
                    cost[i, j] = pair_cost

        # Square problem with "stay unmatched" options at half the gate each, so a pair is made only when it
        # costs less than leaving both sides alone, and the total over the frame is minimal.
        size = n_tracks + n_dets
        big = 1e6
        full = np.full((size, size), big)
        full[:n_tracks, :n_dets] = np.where(np.isfinite(cost), cost, big)
        unmatched = s.max_cost / 2.0 + 1e-9
        full[np.arange(n_tracks), n_dets + np.arange(n_tracks)] = unmatched
        full[n_tracks + np.arange(n_dets), np.arange(n_dets)] = unmatched
        full[n_tracks:, n_dets:] = 0.0
        return [(t, d) for t, d in hungarian(full) if t < n_tracks and d < n_dets and np.isfinite(cost[t, d])]

    @staticmethod
    def _keypoint_distance(a: np.ndarray, b: np.ndarray, box_a: np.ndarray, box_b: np.ndarray) -> float:
        both = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
        if not both.any():
            return np.inf
        scale = max(0.5 * (_larger_side(box_a) + _larger_side(box_b)), 1.0)
        return float(np.linalg.norm(a[both] - b[both], axis=1).mean() / scale)

    def _advance(self, track: Track, step: int, box: np.ndarray, keypoints: np.ndarray | None) -> None:
        measured = (_centre(box) - _centre(track.box)) / max(step - track.last_step, 1)
        weight = self.settings.velocity_smoothing if track.hits > 1 else 1.0
        track.velocity = (1 - weight) * track.velocity + weight * measured
        track.box = np.asarray(box, np.float64).copy()
        if keypoints is not None:
            track.keypoints = keypoints
        track.last_step = step
        track.hits += 1

    def _calibrate(self, track: Track, box: np.ndarray, keypoints: np.ndarray | None) -> None:
        extent = None if keypoints is None else keypoint_extent(keypoints)
        if extent is None or _larger_side(extent) < 1.0:
            return
        size = _larger_side(extent)
        scale = float(np.clip(_larger_side(box) / size, *self.BOX_SCALE_RANGE))
        offset = (_centre(box) - _centre(extent)) / size
        if track.box_scale is None:
            track.box_scale, track.box_offset = scale, offset
        else:  # smooth: one noisy detection should not jolt the crop size
            track.box_scale = 0.5 * track.box_scale + 0.5 * scale
            track.box_offset = 0.5 * track.box_offset + 0.5 * offset

    # -- frames between detections ------------------------------------------------------------------

    def box_from_keypoints(self, track: Track) -> np.ndarray | None:
        """The box a detector would give for this person's last keypoints: their extent, scaled by the
        ratio measured at the person's detections (never compounding from one frame to the next)."""
        extent = None if track.keypoints is None else keypoint_extent(track.keypoints)
        if extent is None:
            return None
        size = _larger_side(extent)
        scale = track.box_scale if track.box_scale is not None else self.DEFAULT_BOX_SCALE
        centre = _centre(extent) + track.box_offset * size
        half = 0.5 * scale * np.array([extent[2] - extent[0], extent[3] - extent[1]])
        return np.concatenate([centre - half, centre + half])

    def propagate(self, step: int) -> list[tuple[int, np.ndarray]]:
        """Boxes for a frame without detection: (track id, (4,) xyxy) for each person seen at step - 1,
        from `box_from_keypoints` moved on by the person's velocity."""
        self._expire(step)
        result = []
        for track in self._sorted():
            if track.last_step == step - 1:
                box = self.box_from_keypoints(track)
                if box is not None:
                    # the person keeps moving during the frame: lead the box by the smoothed velocity
                    result.append((track.track_id, box + np.concatenate([track.velocity, track.velocity])))
        return result

    def observe(self, step: int, track_id: int, box: np.ndarray, keypoints: np.ndarray, confidence: float) -> None:
        """Record InstantHMR's result for a propagated box (see `keypoint_confidence` for `confidence`)."""
        track = self.tracks[track_id]
        self._advance(track, step, box, np.asarray(keypoints, np.float64))
        if confidence < self.settings.min_keypoint_confidence:
            self._detection_requested = True
