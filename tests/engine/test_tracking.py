"""Tracking: optimal association, crossing people, leaving and returning, max_persons, stride propagation."""

import itertools

import numpy as np
import pytest

from instanthmr_blender.capture.tracking import (
    PersonTracker,
    TrackerSettings,
    box_iou,
    hungarian,
    keypoint_confidence,
    keypoint_extent,
)

RNG = np.random.default_rng(7)
# Two different "poses": keypoints as fractions of a person's box (x in [0.1, 0.9], y in [0.05, 0.95]).
POSE_A = np.column_stack([RNG.uniform(0.1, 0.9, 70), RNG.uniform(0.05, 0.95, 70)])
POSE_B = np.column_stack([1.0 - POSE_A[:, 0], POSE_A[:, 1]])  # mirrored: same extent, different layout
POSE_A[0], POSE_A[1] = (0.1, 0.05), (0.9, 0.95)  # make the extent exactly the [0.1, 0.9] x [0.05, 0.95] box
POSE_B[0], POSE_B[1] = (0.9, 0.05), (0.1, 0.95)


def person(x, y, pose=POSE_A, width=80.0, height=200.0):
    """A person whose box has its top-left corner at (x, y): (box (4,), keypoints (70, 2))."""
    box = np.array([x, y, x + width, y + height])
    return box, np.column_stack([x + pose[:, 0] * width, y + pose[:, 1] * height])


def detect(tracker, step, people, scores=None):
    boxes = np.array([p[0] for p in people]).reshape(-1, 4)
    keypoints = np.array([p[1] for p in people]).reshape(-1, 70, 2)
    scores = np.full(len(people), 0.9) if scores is None else np.asarray(scores)
    return dict((index, track_id) for track_id, index in tracker.update(step, boxes, scores, keypoints))


def test_hungarian_is_globally_optimal():
    for _ in range(40):
        rows, cols = int(RNG.integers(1, 6)), int(RNG.integers(1, 6))
        cost = RNG.uniform(0, 10, (rows, cols))
        pairs = hungarian(cost)
        assert len(pairs) == min(rows, cols)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        best = min(
            sum(cost[r, c] for r, c in zip(chosen_rows, perm))
            for chosen_rows in itertools.combinations(range(rows), min(rows, cols))
            for perm in itertools.permutations(range(cols), min(rows, cols))
        )
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(best)


def test_greedy_would_be_wrong_here():
    # greedy takes (0,0)=1 then (1,1)=100; optimal is (0,1)+(1,0) = 4
    assert hungarian(np.array([[1.0, 2.0], [2.0, 100.0]])) == [(0, 1), (1, 0)]


def test_box_iou_and_keypoint_helpers():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0]])
    points = np.array([[1.0, 2.0], [np.nan, 5.0], [4.0, -1.0]])
    np.testing.assert_allclose(keypoint_extent(points), [1, -1, 4, 2])
    crop = np.zeros((70, 2))
    crop[:7] = 1.5  # a third of the body keypoints outside the crop
    pixels = np.full((70, 2), 50.0)
    assert keypoint_confidence(crop, pixels, (100, 100)) == pytest.approx(14 / 21)
    pixels[:21, 0] = 150.0  # all body keypoints right of a 100-wide frame
    assert keypoint_confidence(crop, pixels, (100, 100)) == 0.0


def test_two_people_crossing_keep_their_ids():
    tracker = PersonTracker(TrackerSettings(max_persons=2))
    ids_a, ids_b = set(), set()
    for step in range(40):
        a = person(100 + 10 * step, 300, POSE_A)
        b = person(490 - 10 * step, 310, POSE_B)
        # the detector's order flips around: ids must not follow it
        people, scores = ([a, b], [0.9, 0.8]) if step % 3 else ([b, a], [0.95, 0.7])
        found = detect(tracker, step, people, scores)
        index_a = 0 if people[0] is a else 1
        ids_a.add(found[index_a])
        ids_b.add(found[1 - index_a])
    assert len(ids_a) == len(ids_b) == 1 and ids_a != ids_b


def test_a_person_leaving_leaves_no_ghost_and_expires():
    tracker = PersonTracker(TrackerSettings(lost_track_frames=5))
    for step in range(10):
        assert list(detect(tracker, step, [person(100 + 5 * step, 100)]).values()) == [0]
    for step in range(10, 20):  # gone: nobody is reported, no box is reused
        assert detect(tracker, step, []) == {}
        assert tracker.active_tracks(step) == []
        assert tracker.propagate(step + 1) == []
    assert tracker.tracks == {}  # forgotten after lost_track_frames
    # someone appearing later is a new person
    assert list(detect(tracker, 20, [person(150, 100)]).values()) == [1]


def test_a_short_occlusion_is_bridged_and_a_long_one_is_not():
    settings = TrackerSettings(lost_track_frames=8)
    tracker = PersonTracker(settings)
    other = person(600, 100, POSE_B)
    for step in range(10):
        detect(tracker, step, [person(100 + 6 * step, 100), other])
    for step in range(10, 16):  # hidden for 6 frames (behind something), the other person stays
        detect(tracker, step, [other])
    found = detect(tracker, 16, [person(100 + 6 * 16, 100), other])  # it walked on meanwhile
    assert found[0] == 0 and found[1] == 1

    long_gone = PersonTracker(settings)
    for step in range(5):
        detect(long_gone, step, [person(100, 100)])
    assert list(detect(long_gone, 5 + settings.lost_track_frames + 1, [person(100, 100)]).values()) == [1]


def test_max_persons_keeps_the_longest_tracks():
    tracker = PersonTracker(TrackerSettings(max_persons=2))
    first = detect(tracker, 0, [person(100, 100), person(400, 100, POSE_B)], [0.6, 0.7])
    assert first == {1: 0, 0: 1}  # new people get ids best score first
    for step in range(1, 5):
        assert detect(tracker, step, [person(100, 100), person(400, 100, POSE_B)], [0.6, 0.7]) == first
    # a third, more confident person appears: the two established tracks stay, nobody new is created
    found = detect(tracker, 5, [person(100, 100), person(400, 100, POSE_B), person(700, 100)], [0.6, 0.7, 0.99])
    assert found == first
    assert sorted(tracker.tracks) == [0, 1]
    # when one of them leaves, the newcomer gets a place
    found = detect(tracker, 6, [person(100, 100), person(700, 100)], [0.6, 0.99])
    assert found == {0: first[0], 1: 2}


def test_impossible_matches_stay_unmatched():
    tracker = PersonTracker()
    detect(tracker, 0, [person(100, 100)])
    # far away in the next frame: a new person, not a teleport
    assert detect(tracker, 1, [person(900, 500)]) == {0: 1}


def test_stride_propagation_follows_a_moving_person_with_a_constant_crop():
    """Detector every 5th frame; in between, the box comes from the last keypoints and keeps its size."""
    tracker = PersonTracker()
    speed = 9.0
    sizes, errors = [], []
    for step in range(30):
        true_box, true_keypoints = person(100 + speed * step, 200)
        if step % 5 == 0:
            # the detector box is a bit larger than the keypoint extent, as real ones are
            detector_box = true_box + np.array([-6, -12, 6, 12])
            detect(tracker, step, [(detector_box, true_keypoints)])
            continue
        ((track_id, box),) = tracker.propagate(step)
        # the fake InstantHMR finds the person wherever they are, as long as the crop holds them
        window_centre = (box[:2] + box[2:]) / 2
        assert np.abs(window_centre - (true_box[:2] + true_box[2:]) / 2).max() < 0.6 * max(box[2:] - box[:2])
        tracker.observe(step, track_id, box, true_keypoints, confidence=1.0)
        sizes.append(max(box[2:] - box[:2]))
        errors.append(np.abs(window_centre - (true_box[:2] + true_box[2:]) / 2).max())
        assert not tracker.detection_needed
    # same crop size as the detector's box every time (no 10% growth per reuse), and it keeps up
    np.testing.assert_allclose(sizes, 200 + 24, rtol=1e-6)
    # with the velocity lead the box catches up with the person instead of lagging a frame (9 px) behind
    assert errors[0] == pytest.approx(speed) and max(errors[-8:]) < 0.5


def test_low_confidence_forces_a_detection_next_frame():
    tracker = PersonTracker(TrackerSettings(min_keypoint_confidence=0.6))
    box, keypoints = person(100, 100)
    detect(tracker, 0, [(box, keypoints)])
    ((track_id, propagated),) = tracker.propagate(1)
    tracker.observe(1, track_id, propagated, keypoints, confidence=0.9)
    assert not tracker.detection_needed
    ((track_id, propagated),) = tracker.propagate(2)
    tracker.observe(2, track_id, propagated, keypoints, confidence=0.3)
    assert tracker.detection_needed
    detect(tracker, 3, [(box, keypoints)])
    assert not tracker.detection_needed


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_persons"):
        TrackerSettings(max_persons=0)
