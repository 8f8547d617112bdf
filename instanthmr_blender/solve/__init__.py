"""The motion solve: MHR70 keypoints of a take -> one T-pose capture rig and per-frame bone rotations per person.

The stages, in the order the data flows through them (one module each):
1. clean.py: repair glitches (left/right swaps, front/back flips, body and keypoint jumps, 3D keypoints off
   their 2D keypoints, bone lengths off), fill gaps, place a missing neck between the shoulders;
2. smooth.py: reject outliers, then smooth, the depth along the camera ray harder than the image position;
3. contacts.py (evidence): which feet stand still in the image;
4. ground.py: the floor fitted to those planted feet (camera placement), each person's support height;
   contacts.py (decision): still feet low on their support are planted, then held on it;
5. skeleton_solve.py: the rest rig and the bone rotations reproducing the keypoints;
6. quality.py: the report per person (jitter, foot slide, repairs, reprojection, bone-length spread).
`solve_take` and `solve_track` run them; every stage is an engine module without Blender. Live capture solves one
frame at a time with frame_solve.py (skeleton_solve's pose solve for a single frame, without its per-call cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import clean, contacts, ground, quality, smooth, world
from .clean import REASON_TEXT, REASONS, CleanResult
from .ground import FloorEstimate
from .options import SolveError, SolveOptions
from .quality import PersonQuality
from .skeleton import BONE_INDEX, FOOT_KEYPOINTS, MHR70_INDEX, NUM_KEYPOINTS
from .skeleton_solve import RigRest, build_rest, fill_gaps, forward_kinematics, pose_matrices, solve_pose

__all__ = [
    "CaptureSolution", "PersonMotion", "RigRest", "SolveError", "SolveOptions", "build_rest", "fill_gaps",
    "forward_kinematics", "pose_matrices", "row_rate", "solve_pose", "solve_take", "solve_track",
]  # fmt: skip

_K = MHR70_INDEX


@dataclass
class PersonMotion:
    """The solved motion of one tracked person.

    frames: (F,) int64 source frame of each row; quats: (F, B, 4) local rotations (w, x, y, z);
    root_location: (F, 3) pose location of the root bone (its rest frame, metres); keyed: (F, B) bool, False
    where a bone was unknown for longer than max_gap_frames (its quats there only hold the last value: leave
    those frames unkeyed); root_keyed: (F,) bool, the same for root_location; contacts: (F, 2) bool foot
    contacts (left, right); keypoints_world: (F, 70, 3) the targets after cleaning, filtering and foot
    locking, world space (Z up, metres); support_height: world z (metres) the person stands on (0: the
    floor); repairs: what the clean stage repaired (clean.CleanResult); quality: the report (quality.py).
    """

    track_id: int
    rest: RigRest
    frames: np.ndarray
    quats: np.ndarray
    root_location: np.ndarray
    keyed: np.ndarray
    root_keyed: np.ndarray
    contacts: np.ndarray
    keypoints_world: np.ndarray
    support_height: float = 0.0
    repairs: CleanResult | None = None
    quality: PersonQuality | None = None


@dataclass
class CaptureSolution:
    """camera_matrix_world: (4, 4) the Blender camera object matrix (ground.camera_to_world); persons: one
    PersonMotion per track that had any valid frame and could be solved, in take order; floor_method:
    "ransac" or "camera" (ground.FloorEstimate); skipped: (track id, why) of the tracks that could not be
    solved; floor: the floor estimate (what the fit used: floor.describe())."""

    camera_matrix_world: np.ndarray
    persons: list[PersonMotion]
    floor_method: str = ""
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (track id, why) of unsolvable tracks
    floor: FloorEstimate | None = None
    placement: world.Placement | None = None  # a moving camera: its path in the world (world.py)

    @property
    def camera_path_world(self) -> np.ndarray | None:
        """(F, 4, 4) the camera's Blender matrix at every column of a moving-camera take, else None."""
        return None if self.placement is None else self.placement.camera_path_world

    def quality_summary(self) -> str:
        """One line for the whole take (quality.take_summary)."""
        return quality.take_summary([p.quality for p in self.persons if p.quality is not None])


@dataclass
class _Prepared:
    """One track after the camera-space stages (clean, smooth, still feet)."""

    raw: np.ndarray  # (F, 70, 3) the input, camera space
    cleaned: CleanResult
    smoothed: np.ndarray  # (F, 70, 3) camera space
    image: np.ndarray  # (F, 70, 2) normalised 2D keypoints (cleaned)
    still: np.ndarray  # (F, 2) bool


def _hips(joints: np.ndarray) -> np.ndarray:
    known = np.all(np.isfinite(joints), axis=-1)
    return known[:, _K["left_hip"]] & known[:, _K["right_hip"]]


def _unsolvable_reason(joints: np.ndarray, given: np.ndarray | None = None,
                       cleaned: CleanResult | None = None) -> str | None:
    """Why a cleaned (F, 70, 3) track cannot give a body, or None: it needs a frame with both hips and the
    neck (placed between the shoulders when missing). given: the track as the take holds it, so a refusal can
    tell hips the model never gave from hips the clean stage dropped (and why it dropped them)."""
    known = np.all(np.isfinite(joints), axis=-1)
    hips = known[:, _K["left_hip"]] & known[:, _K["right_hip"]]
    if not hips.any() and given is not None and _hips(given).any():
        dropped = [] if cleaned is None else [
            REASON_TEXT[name] for column, name in enumerate(REASONS)
            if (cleaned.repairs[:, column] & _hips(given)).any() and name != "gap"
        ]  # fmt: skip
        because = f" ({', '.join(dropped)})" if dropped else ""
        return (f"the clean stage dropped its hips in every frame{because}: the model gave them, but its 3D "
                "keypoints do not agree with its 2D keypoints; check the take's lens (a wrong focal length does "
                "this) or solve with the clean stage off (--clean off, or untick Repair glitches)")
    if not hips.any():
        return "it never shows both hips: the body cannot be placed (keep the hips in frame)"
    if not (hips & known[:, _K["neck"]]).any():
        return "it never shows both hips together with both shoulders or the neck: the torso cannot be solved"
    return None


def _prepare(
    joints_cam: np.ndarray,
    fps: float,
    options: SolveOptions,
    joints_2d: np.ndarray | None,
    focal_length: float | None,
    principal_point: tuple[float, float] | None,
) -> _Prepared:
    has_2d = joints_2d is not None and focal_length and np.isfinite(np.asarray(joints_2d, dtype=np.float64)).any()
    given = contacts.image_points(joints_cam, joints_2d, focal_length, principal_point) if has_2d else None
    cleaned = clean.clean_track(
        joints_cam, fps, given, options.cleaning, fill_frames=options.gap_frames(fps), enabled=options.clean
    )
    why = _unsolvable_reason(cleaned.joints_cam, np.asarray(joints_cam, dtype=np.float64), cleaned)
    if why:
        raise SolveError(why)
    smoothed = smooth.smooth_camera_keypoints(cleaned.joints_cam, fps, options.smoothing, options.smoothing_method)
    projected = contacts.image_points(smoothed)
    image = projected if cleaned.image_points is None else np.where(
        np.isfinite(cleaned.image_points), cleaned.image_points, projected
    )  # fmt: skip
    still = contacts.still_feet(image, fps, options.contact)
    return _Prepared(np.asarray(joints_cam, dtype=np.float64), cleaned, smoothed, image, still)


def _lowest_heights(world: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Lowest foot-point height (world z) of every (frame, foot) in mask (F, 2)."""
    out = []
    for column, side in enumerate(("left", "right")):
        feet = world[:, list(FOOT_KEYPOINTS[side]), 2]
        lowest = np.min(np.where(np.isfinite(feet), feet, np.inf), axis=1)
        out.append(lowest[mask[:, column] & np.isfinite(lowest)])
    return np.concatenate(out)


def _finish(
    prepared: _Prepared,
    fps: float,
    options: SolveOptions,
    camera_matrix_world: np.ndarray,
    frames: np.ndarray,
    track_id: int,
    focal_length: float | None,
) -> PersonMotion:
    world = ground.camera_to_world(prepared.smoothed, camera_matrix_world)
    rest, spine = build_rest(world, fps, symmetric_lengths=options.symmetric_lengths)
    # Support: the height the still, low feet stand on (a first contact pass against the feet's own level).
    first = contacts.detect_foot_contacts(world, fps, options.contact, still=prepared.still)
    support = ground.support_height(_lowest_heights(world, first)) if options.supports == "auto" else 0.0
    found = contacts.detect_foot_contacts(world, fps, options.contact, still=prepared.still, support=support)
    if options.foot_lock:
        lengths = rest.lengths
        thighs = (lengths[BONE_INDEX["thigh.L"]], lengths[BONE_INDEX["thigh.R"]])
        shins = (lengths[BONE_INDEX["shin.L"]], lengths[BONE_INDEX["shin.R"]])
        feet = tuple(
            np.array([lengths[BONE_INDEX[f"{bone}.{side}"]] for bone in ("foot", "toe_small", "heel")]) for side in "LR"
        )
        world = contacts.lock_feet(world, found, thighs, shins, fps, support=support, foot_lengths=feet)
    quats, root_location, keyed, root_keyed = solve_pose(
        rest, world, spine["spine_lengths"], options.gap_frames(fps), fps
    )
    report = quality.person_quality(
        track_id=track_id, rest=rest, quats=quats, root_location=root_location, keyed=keyed, contacts=found,
        input_world=ground.camera_to_world(prepared.raw, camera_matrix_world), input_cam=prepared.raw,
        image=prepared.image, clean=prepared.cleaned, frames=frames, fps=fps,
        camera_matrix_world=camera_matrix_world, focal_length=focal_length or 0.0, support_height=support,
    )  # fmt: skip
    return PersonMotion(
        track_id=track_id,
        rest=rest,
        frames=frames,
        quats=quats,
        root_location=root_location,
        keyed=keyed,
        root_keyed=root_keyed,
        contacts=found,
        keypoints_world=world,
        support_height=support,
        repairs=prepared.cleaned,
        quality=report,
    )


def solve_track(
    joints_cam: np.ndarray,
    fps: float,
    options: SolveOptions | None = None,
    *,
    camera_matrix_world: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    track_id: int = 0,
    joints_2d: np.ndarray | None = None,
    focal_length: float | None = None,
    principal_point: tuple[float, float] | None = None,
) -> PersonMotion:
    """Solve one person.

    joints_cam: (F, 70, 3) camera-space MHR70 keypoints (metres, OpenCV axes, NaN where absent); fps: the
    rate of the rows; camera_matrix_world: (4, 4) (None: estimated from this track's planted feet);
    joints_2d: (F, 70, 2) the 2D keypoints in pixels with the camera's focal_length and principal_point
    (None: the projection of joints_cam stands in, and the reprojection check is skipped).

    Smoothing acts on the keypoints, not on rotations: the pose solve is exact to its targets, so smooth
    targets give smooth bones with their lengths kept, contacts are detected on the same smoothed feet, and
    the locked feet are never moved again by a later filter.
    """
    options = options or SolveOptions()
    joints_cam = np.asarray(joints_cam, dtype=np.float64)
    if joints_cam.ndim != 3 or joints_cam.shape[1:] != (NUM_KEYPOINTS, 3):
        raise SolveError(f"joints_cam must be (frames, {NUM_KEYPOINTS}, 3), got {joints_cam.shape}")
    if not fps > 0:
        raise SolveError(f"fps must be positive, got {fps}")
    prepared = _prepare(joints_cam, fps, options, joints_2d, focal_length, principal_point)
    if camera_matrix_world is None:
        camera_matrix_world = ground.estimate_floor(
            prepared.smoothed[None], mode=options.floor, planted=prepared.still[None], fps=fps
        ).camera_matrix_world
    frames = np.arange(len(joints_cam), dtype=np.int64) if frames is None else np.asarray(frames, dtype=np.int64)
    return _finish(prepared, fps, options, camera_matrix_world, frames, track_id, focal_length)


def row_rate(fps: float, frames: np.ndarray) -> float:
    """Rows per second of a take: its source rate divided by the frame step between rows (a take captured
    with every 2nd frame of a 30 fps video has rows at 15 per second)."""
    frames = np.asarray(frames)
    if len(frames) < 2:
        return float(fps)
    step = float(np.median(np.diff(frames)))
    return float(fps) / max(step, 1.0)


def solve_take(take, options: SolveOptions | None = None) -> CaptureSolution:
    """Solve every track of a take (take.py `Take`): each track cleaned and smoothed in camera space, one
    shared camera placement from all tracks' planted feet (the camera is static), world origin under the
    main subject (the track with the most valid frames), then one PersonMotion per track with at least one
    valid frame. Uses take.fps (the source rate; the filters run at the rows' rate, see row_rate), frames,
    track_ids, valid, joints_cam, and joints_2d / focal_length / principal_point when the take has them.
    Tracks that cannot be solved are listed in `skipped` with the reason.

    A take with a camera path (a moving camera, take.camera_path) is placed in the world first (world.py:
    scale, gravity, each body's distance corrected, all seen from one still virtual camera), unless
    options.camera_path is False; the solution's `placement` then holds the camera's path in the world.
    """
    options = options or SolveOptions()
    valid = np.asarray(take.valid)
    joints = np.where(valid[..., None, None], np.asarray(take.joints_cam, dtype=np.float64), np.nan)
    if joints.shape[0] == 0:
        raise SolveError(f"the take from `{take.source or 'memory'}` has no tracks: nobody was detected")
    joints_2d = getattr(take, "joints_2d", None)
    if joints_2d is not None:
        joints_2d = np.where(valid[..., None, None], np.asarray(joints_2d, dtype=np.float64), np.nan)
    focal_length = getattr(take, "focal_length", None)
    principal_point = getattr(take, "principal_point", None)
    fps = row_rate(take.fps, take.frames)
    path = getattr(take, "camera_path", None) if options.camera_path else None
    placement = None
    if path is not None:
        try:
            placement = world.place_people(take, path, fps, floor_mode=options.floor)
        except ValueError as error:
            raise SolveError(f"the take from `{take.source or 'memory'}`: {error}") from None
        joints, joints_2d = placement.joints_cam, placement.joints_2d
    prepared: dict[int, _Prepared] = {}
    skipped: list[tuple[int, str]] = []
    for track in range(joints.shape[0]):
        if not valid[track].any():
            continue
        try:
            prepared[track] = _prepare(
                joints[track], fps, options, None if joints_2d is None else joints_2d[track], focal_length,
                principal_point,
            )  # fmt: skip
        except SolveError as error:  # one partial person must not cost the others
            skipped.append((int(take.track_ids[track]), str(error)))
    main = int(np.argmax(valid.sum(axis=1)))
    smoothed = np.full_like(joints, np.nan)
    planted = np.zeros(joints.shape[:2] + (2,), dtype=bool)
    for track, item in prepared.items():
        smoothed[track], planted[track] = item.smoothed, item.still
    if placement is None:
        floor = ground.estimate_floor(
            np.where(np.isfinite(smoothed), smoothed, joints), main_track=main, mode=options.floor, planted=planted,
            fps=fps,
        )
        solution = CaptureSolution(floor.camera_matrix_world, [], floor.method, floor=floor)
    else:  # the floor is z = 0 of the placed world already
        solution = CaptureSolution(placement.camera_matrix_world, [], "moving camera", placement=placement)
    frames = np.asarray(take.frames, dtype=np.int64)
    for track, item in prepared.items():
        track_id = int(take.track_ids[track])
        try:
            person = _finish(item, fps, options, solution.camera_matrix_world, frames, track_id, focal_length)
        except SolveError as error:
            skipped.append((track_id, str(error)))
            continue
        solution.persons.append(person)
    solution.skipped = sorted(skipped, key=lambda entry: list(take.track_ids).index(entry[0]))
    if not solution.persons:
        reasons = "; ".join(f"track {track_id}: {why}" for track_id, why in solution.skipped) or "no valid frames"
        raise SolveError(f"no person in the take from `{take.source or 'memory'}` could be solved ({reasons})")
    return solution
