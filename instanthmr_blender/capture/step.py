"""The per-frame step shared by the offline and the live capture: a frame and its detections -> InstantHMR on
the people worth it -> tracking -> each tracked person's pose recorded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..pose.detector import Detections
from ..pose.hmr import InstantHMR
from ..take import TakeBuilder
from .settings import USER_ERRORS, CaptureError
from .tracking import PersonTracker, box_iou, keypoint_confidence


@dataclass
class Frame:
    """One frame on its way through the models (also the live pipeline's unit of work)."""

    column: int  # position in the capture: 0, 1, 2, ...
    index: int  # source frame index
    rgb: np.ndarray
    detections: Detections | None = None  # None: the detector did not run on this frame


def rank_candidates(
    tracker: PersonTracker, step: int, found: Detections, limit: int
) -> np.ndarray:
    """Indices of the detections worth running InstantHMR on: those overlapping a remembered person first
    (so nobody tracked is crowded out by strangers), then the rest, each group by score; at most `limit`."""
    if len(found) == 0:
        return np.zeros(0, np.int64)
    remembered = [t.predicted_box(step) for t in tracker.tracks.values()]
    overlaps = (
        box_iou(found.boxes, np.array(remembered)).max(axis=1) > 0.0
        if remembered
        else np.zeros(len(found), bool)
    )
    # detections are sorted by score already; a stable sort keeps that order inside each group
    order = np.argsort(~overlaps, kind="stable")
    return order[:limit]


class TakeRecorder:
    """Writes each frame's people into the TakeBuilder."""

    def __init__(self, builder: TakeBuilder) -> None:
        self.builder = builder

    def add(self, index: int, track_id: int, score: float, box: np.ndarray, poses, row: int) -> None:
        self.builder.add(
            index,
            track_id,
            score=score,
            bbox=box,
            joints_cam=poses.joints_cam[row],
            cam_trans=poses.cam_trans[row],
            joints_2d=poses.joints_2d[row],
            mhr_params=poses.mhr_params[row],
            shape_params=poses.shape_params[row],
        )


def process_frame(
    frame: Frame,
    found: Detections | None,
    tracker: PersonTracker,
    hmr: InstantHMR,
    record: TakeRecorder,
    candidate_limit: int,
    image_size: tuple[int, int],
) -> None:
    """InstantHMR and tracking for one frame, shared by the offline and the live capture.

    found: the detector's output for this frame, or None between detector runs (boxes then follow each tracked
    person's keypoints). record: anything with `add(index, track_id, score, box, poses, row)`, called once per
    person tracked in this frame (poses: hmr.PersonPoses, row: that person's row in it).
    """
    step = frame.column
    try:
        if found is not None:
            chosen = rank_candidates(tracker, step, found, candidate_limit)
            boxes, scores = found.boxes[chosen], found.scores[chosen]
            poses = hmr.predict(frame.rgb, boxes)
            for track_id, row in tracker.update(step, boxes, scores, poses.joints_2d):
                record.add(frame.index, track_id, float(scores[row]), boxes[row], poses, row)
            return
        carried = tracker.propagate(step)
        if not carried:
            return
        boxes = np.array([box for _, box in carried], np.float32)
        poses = hmr.predict(frame.rgb, boxes)
        for row, (track_id, _) in enumerate(carried):
            confidence = keypoint_confidence(poses.joints_crop[row], poses.joints_2d[row], image_size)
            tracker.observe(step, track_id, boxes[row], poses.joints_2d[row], confidence)
            record.add(frame.index, track_id, tracker.tracks[track_id].score, boxes[row], poses, row)
    except USER_ERRORS:
        raise
    except Exception as error:
        raise CaptureError(
            f"{getattr(hmr, 'label', 'InstantHMR')} or tracking failed at source frame {frame.index}: "
            f"{type(error).__name__}: {error}"
        ) from error
