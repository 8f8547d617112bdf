"""The quality stage: how good a solved person is, measured on the rig against the take, so an animator knows
where to look; and the measurements the tests and `tools/solve_figures.py` hold the solve to.

Per person: jitter (mean |second difference| of the rig's joints, mm per frame^2, and of the input's),
foot slide during contacts (median speed of a planted foot, cm/s), frames repaired by the clean stage (per
reason, and their ranges), mean reprojection error (rig joints projected into the image against the 2D
keypoints, pixels), bone-length spread (how much the input's limb lengths vary over the take, percent of
their median: high means the network's depth or scale wobbled).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .clean import REASON_TEXT, REASONS, CleanResult
from .contacts import body_length, keep_long_runs
from .ground import camera_to_world as world_from_camera
from .ground import world_to_camera
from .skeleton import BONE_INDEX, FOOT_KEYPOINTS, MHR70_INDEX
from .skeleton_solve import RigRest, forward_kinematics, pose_matrices

K = MHR70_INDEX
# The bones whose frame-to-frame turn the figures limit (fingers and toes excluded).
BODY_BONES = ("pelvis", "spine.01", "spine.02", "neck", "head") + tuple(
    f"{bone}.{side}" for bone in ("clavicle", "upper_arm", "forearm", "thigh", "shin", "foot") for side in "LR"
)
_LIMB_BONES = tuple(
    (K[f"{side}_{a}"], K[f"{side}_{b}"])
    for side in ("left", "right")
    for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"))
)
# The rig's foot points: (bone, end) for the ankle, big toe, small toe and heel.
_FOOT_ENDS = {
    side: ((f"foot.{s}", "head"), (f"foot.{s}", "tail"), (f"toe_small.{s}", "tail"), (f"heel.{s}", "tail"))
    for side, s in (("left", "L"), ("right", "R"))
}


@dataclass
class PersonQuality:
    """The quality report of one person (module docstring). Ranges are (first source frame, last source frame,
    reason) of the repaired runs; NaN where a figure could not be measured."""

    track_id: int
    frames: int
    jitter_mm: float
    input_jitter_mm: float
    foot_slide_cm_s: float
    contact_frames: int
    frames_repaired: int
    repaired_by_reason: dict[str, int]
    repaired_ranges: list[tuple[int, int, str]]
    reprojection_px: float
    bone_length_spread_pct: float
    support_height_m: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def jitter_reduction(self) -> float:
        """Fraction of the input's jitter the rig removed (0..1; NaN when unmeasured)."""
        if not (np.isfinite(self.input_jitter_mm) and self.input_jitter_mm > 0):
            return float("nan")
        return 1.0 - self.jitter_mm / self.input_jitter_mm

    def summary(self) -> str:
        """One line for the command line and the People list."""
        why = ", ".join(f"{REASON_TEXT[r]} {n}" for r, n in self.repaired_by_reason.items() if n) or "none"
        return (
            f"jitter {_fmt(self.jitter_mm, 1)} mm/frame^2 ({_fmt(100 * self.jitter_reduction, 0)}% below the "
            f"input), foot slide {_fmt(self.foot_slide_cm_s, 1)} cm/s over {self.contact_frames} contact "
            f"frame(s), {self.frames_repaired}/{self.frames} frame(s) repaired ({why}), reprojection "
            f"{_fmt(self.reprojection_px, 1)} px, bone-length spread {_fmt(self.bone_length_spread_pct, 1)}%"
            + (f", standing {self.support_height_m:+.2f} m off the floor" if self.support_height_m else "")
        )

    def properties(self) -> dict[str, float | int | str]:
        """Flat name -> value pairs (custom properties on the armature; names prefixed by the writer)."""
        values: dict[str, float | int | str] = {
            "jitter_mm": self.jitter_mm,
            "input_jitter_mm": self.input_jitter_mm,
            "foot_slide_cm_s": self.foot_slide_cm_s,
            "contact_frames": self.contact_frames,
            "frames_repaired": self.frames_repaired,
            "reprojection_px": self.reprojection_px,
            "bone_length_spread_pct": self.bone_length_spread_pct,
            "support_height_m": self.support_height_m,
        }
        for reason in REASONS:
            values[f"repaired_{reason}"] = int(self.repaired_by_reason.get(reason, 0))
        return {name: (round(float(v), 3) if isinstance(v, float) else v) for name, v in values.items()}


def _fmt(value: float, digits: int) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"


def take_summary(persons: list[PersonQuality]) -> str:
    """One line for the whole take: people, frames repaired, worst foot slide and reprojection."""
    if not persons:
        return "no person solved"
    slide = [p.foot_slide_cm_s for p in persons if np.isfinite(p.foot_slide_cm_s)]
    reprojection = [p.reprojection_px for p in persons if np.isfinite(p.reprojection_px)]
    return (
        f"{len(persons)} person(s), {sum(p.frames_repaired for p in persons)} frame(s) repaired, "
        f"mean jitter {np.mean([p.jitter_mm for p in persons]):.1f} mm/frame^2, "
        f"worst foot slide {_fmt(max(slide) if slide else np.nan, 1)} cm/s, "
        f"worst reprojection {_fmt(max(reprojection) if reprojection else np.nan, 1)} px"
    )


# ---------------------------------------------------------------------------------------------------------
# Measurements.


@dataclass
class Figures:
    """The figures a take must reach (issue 10), measured on one solved person against the take's input.

    max_turn_degrees / turns_over_60: largest body-bone turn between consecutive frames, and how many frame
    pairs turn a body bone over 60 degrees; jitter_reduction: 1 - rig jitter / input jitter (same keypoints);
    stance_frames: (frame, foot) pairs standing still in the 2D keypoints (stances_in_image); stance_slide
    median / p90: the rig foot centre's speed over consecutive stance frames, cm/s; stance_below_cm: the
    deepest the rig's lowest foot point goes under the person's support in a stance frame (positive = below);
    follow_across_ray_mm: median distance of the rig's keypoints from the input's, across the camera ray through
    the input keypoint (the direction the video pins down: the figure the solve is held to); reprojection_px:
    median distance in the image between the rig's keypoints seen through the camera and the input's 2D keypoints
    (NaN without the camera's focal length); follow_median_mm: the full 3D distance, reported only: depth is the
    noisy axis the solve smooths, and planted feet are moved onto their support on purpose.
    """

    fps: float
    max_turn_degrees: float
    turns_over_60: int
    input_jitter_mm: float
    rig_jitter_mm: float
    jitter_reduction: float
    stance_frames: int
    stance_slide_median_cm_s: float
    stance_slide_p90_cm_s: float
    stance_below_cm: float
    follow_median_mm: float
    follow_across_ray_mm: float = float("nan")
    reprojection_px: float = float("nan")

    def lines(self) -> list[str]:
        return [
            f"{self.fps:g} fps: body bone turns: max {self.max_turn_degrees:.1f} deg, "
            f"{self.turns_over_60} frame pair(s) over 60 deg",
            f"  jitter {self.input_jitter_mm:.1f} -> {self.rig_jitter_mm:.1f} mm/frame^2 "
            f"({100 * self.jitter_reduction:.1f}% below the input)",
            f"  stances in 2D: {self.stance_frames} foot-frames, slide median {self.stance_slide_median_cm_s:.2f} "
            f"cm/s, p90 {self.stance_slide_p90_cm_s:.2f} cm/s, deepest below support {self.stance_below_cm:.2f} cm",
            f"  rig follows the input: median {self.follow_across_ray_mm:.1f} mm across the camera ray, "
            f"{self.reprojection_px:.1f} px in the image ({self.follow_median_mm:.1f} mm in 3D, depth included)",
        ]


def figures(person, take_joints_cam: np.ndarray, image: np.ndarray, camera_matrix_world: np.ndarray, fps: float,
            focal_length: float | None = None, principal_point: tuple[float, float] | None = None):
    """Figures (above) of one solved PersonMotion; take_joints_cam: (F, 70, 3) the take's keypoints of that
    track (camera space, NaN where absent); image: (F, 70, 2) its 2D keypoints (pixels of a camera with
    focal_length and principal_point when those are given, for the reprojection figure; else any units)."""
    turns = bone_turns(person.rest, person.quats, person.keyed)
    finite_turns = turns[np.isfinite(turns)]
    input_world = world_from_camera(take_joints_cam, camera_matrix_world)
    ends = forward_kinematics(person.rest, person.quats, person.root_location)
    rig = rig_keypoints(person.rest, person.quats, person.root_location, ends=ends)
    both = np.all(np.isfinite(rig), axis=-1) & np.all(np.isfinite(input_world), axis=-1)
    input_jitter, rig_jitter = jitter(input_world, both), jitter(rig, both)
    stances = stances_in_image(image, fps)
    slides, below = [], []
    for column, side in enumerate(("left", "right")):
        feet = foot_points(person.rest, person.quats, person.root_location, side, ends=ends)
        slides.append(foot_slide(feet, stances[:, column], fps))
        lowest = feet[..., 2].min(axis=1)
        below.append(person.support_height - lowest[stances[:, column]])
    slides, below = np.concatenate(slides), np.concatenate(below)
    distance = np.linalg.norm(rig - input_world, axis=-1)[both]
    rig_cam = world_to_camera(rig, camera_matrix_world)
    ray = take_joints_cam / np.linalg.norm(take_joints_cam, axis=-1, keepdims=True)
    offset = rig_cam - take_joints_cam
    across = np.linalg.norm(offset - np.sum(offset * ray, axis=-1, keepdims=True) * ray, axis=-1)[both]
    reprojection = float("nan")
    if focal_length and principal_point is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            seen = rig_cam[..., :2] / rig_cam[..., 2:3] * focal_length + np.asarray(principal_point)
        pixels = np.linalg.norm(seen - image, axis=-1)
        pixels = pixels[both & np.isfinite(pixels)]
        reprojection = float(np.median(pixels)) if len(pixels) else float("nan")
    return Figures(
        fps=float(fps),
        max_turn_degrees=float(finite_turns.max()) if len(finite_turns) else 0.0,
        turns_over_60=int(np.sum(np.nan_to_num(turns, nan=0.0).max(axis=1) > 60.0)),
        input_jitter_mm=1000.0 * input_jitter,
        rig_jitter_mm=1000.0 * rig_jitter,
        jitter_reduction=1.0 - rig_jitter / input_jitter,
        stance_frames=int(stances.sum()),
        stance_slide_median_cm_s=100.0 * float(np.median(slides)) if len(slides) else float("nan"),
        stance_slide_p90_cm_s=100.0 * float(np.percentile(slides, 90)) if len(slides) else float("nan"),
        stance_below_cm=100.0 * float(below.max()) if len(below) else float("nan"),
        follow_median_mm=1000.0 * float(np.median(distance)),
        follow_across_ray_mm=1000.0 * float(np.median(across)),
        reprojection_px=reprojection,
    )


def rig_keypoints(rest: RigRest, quats: np.ndarray, root_location: np.ndarray, *, ends=None) -> np.ndarray:
    """(F, 70, 3) world positions of the rig's joints at the keypoints they stand for (NaN for keypoints no
    bone end maps onto), from forward kinematics (or its (heads, tails) given as ends)."""
    heads, tails = forward_kinematics(rest, quats, root_location) if ends is None else ends
    out = np.full((len(quats), 70, 3), np.nan)
    for b in range(rest.num_bones):
        for ends, kp in ((heads, rest.mhr70_head[b]), (tails, rest.mhr70_tail[b])):
            if kp >= 0:
                out[:, kp] = ends[:, b]
    return out


def jitter(points: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean |second difference| (metres per frame^2) of (F, N, 3) points, over the triples of frames where a
    point is known (and mask (F, N) holds) in all three. NaN when none."""
    known = np.all(np.isfinite(points), axis=-1) if mask is None else mask & np.all(np.isfinite(points), axis=-1)
    accel = np.linalg.norm(points[2:] - 2 * points[1:-1] + points[:-2], axis=-1)
    usable = known[2:] & known[1:-1] & known[:-2]
    return float(accel[usable].mean()) if usable.any() else float("nan")


def bone_turns(rest: RigRest, quats: np.ndarray, keyed: np.ndarray | None = None) -> np.ndarray:
    """(F-1, len(BODY_BONES)) degrees each body bone turns (armature space) between consecutive frames; NaN
    where the bone is unkeyed in either frame."""
    index = [BONE_INDEX[name] for name in BODY_BONES]
    matrices = pose_matrices(rest, quats)[:, index]
    cos = (np.einsum("fbij,fbij->fb", matrices[1:], matrices[:-1]) - 1.0) / 2.0
    angles = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    if keyed is not None:
        both = keyed[1:, index] & keyed[:-1, index]
        angles = np.where(both, angles, np.nan)
    return angles


def foot_points(rest: RigRest, quats: np.ndarray, root_location: np.ndarray, side: str, *, ends=None) -> np.ndarray:
    """(F, 4, 3) the rig's ankle, big toe, small toe and heel of one side (world, metres); ends: forward
    kinematics' (heads, tails) when already computed."""
    heads, tails = forward_kinematics(rest, quats, root_location) if ends is None else ends
    ends = {"head": heads, "tail": tails}
    return np.stack([ends[end][:, BONE_INDEX[bone]] for bone, end in _FOOT_ENDS[side]], axis=1)


def stances_in_image(image: np.ndarray, fps: float, still_speed: float = 0.25, min_seconds: float = 0.1) -> np.ndarray:
    """(F, 2) bool (left, right): the 2D foot centre (mean of its 2D keypoints) moves slower than still_speed
    body lengths (contacts.body_length) per second, for at least min_seconds. image: (F, 70, 2), any units
    (pixels or normalised). Plain central differences, no smoothing: the figure's own definition."""
    image = np.asarray(image, dtype=np.float64)
    length = body_length(image)
    out = np.zeros((len(image), 2), dtype=bool)
    if not np.isfinite(length) or len(image) < 2:
        return out
    min_frames = max(1, int(round(min_seconds * fps)))
    for column, side in enumerate(("left", "right")):
        feet = image[:, list(FOOT_KEYPOINTS[side])]
        with np.errstate(invalid="ignore"):
            centre = np.nanmean(np.where(np.isfinite(feet), feet, np.nan), axis=1)
        speed = np.linalg.norm(np.gradient(centre, axis=0), axis=-1) * fps / length
        out[:, column] = keep_long_runs(np.nan_to_num(speed, nan=np.inf) < still_speed, min_frames)
    return out


def foot_slide(points: np.ndarray, mask: np.ndarray, fps: float) -> np.ndarray:
    """Speeds (m/s) of the foot centre of (F, 4, 3) foot points between consecutive frames both in mask (F,)."""
    centre = points.mean(axis=1)
    speed = np.linalg.norm(np.diff(centre, axis=0), axis=-1) * fps
    both = mask[1:] & mask[:-1]
    return speed[both & np.isfinite(speed)]


def reprojection_px(
    rig_world: np.ndarray, camera_matrix_world: np.ndarray, image: np.ndarray, focal_length: float
) -> float:
    """Mean pixel distance between the rig joints (F, 70, 3) world projected into the camera and the 2D
    keypoints image (F, 70, 2) in normalised coordinates, over the keypoints both have. NaN when none."""
    cam = world_to_camera(rig_world, camera_matrix_world)
    with np.errstate(invalid="ignore", divide="ignore"):
        projected = cam[..., :2] / cam[..., 2:3]
    error = np.linalg.norm(projected - image, axis=-1) * focal_length
    error = error[np.isfinite(error)]
    return float(error.mean()) if len(error) else float("nan")


def bone_length_spread(joints: np.ndarray) -> float:
    """Mean over the limb bones of the input's (F, 70, 3) per-frame length spread: (90th - 10th percentile)
    / median, percent. NaN when no limb is seen."""
    spreads = []
    for parent, child in _LIMB_BONES:
        lengths = np.linalg.norm(joints[:, child] - joints[:, parent], axis=-1)
        lengths = lengths[np.isfinite(lengths)]
        if len(lengths) >= 3 and np.median(lengths) > 0:
            spreads.append((np.percentile(lengths, 90) - np.percentile(lengths, 10)) / np.median(lengths))
    return 100.0 * float(np.mean(spreads)) if spreads else float("nan")


def person_quality(
    *,
    track_id: int,
    rest: RigRest,
    quats: np.ndarray,
    root_location: np.ndarray,
    keyed: np.ndarray,
    contacts: np.ndarray,
    input_world: np.ndarray,
    input_cam: np.ndarray,
    image: np.ndarray,
    clean: CleanResult,
    frames: np.ndarray,
    fps: float,
    camera_matrix_world: np.ndarray,
    focal_length: float,
    support_height: float,
) -> PersonQuality:
    """Measure one solved person (shapes as in PersonMotion; input_world / input_cam: the take's keypoints
    before any stage, world and camera space; image: (F, 70, 2) normalised 2D keypoints)."""
    ends = forward_kinematics(rest, quats, root_location)
    rig = rig_keypoints(rest, quats, root_location, ends=ends)
    rig = np.where(keyed.any(axis=1)[:, None, None], rig, np.nan)
    both = np.all(np.isfinite(rig), axis=-1) & np.all(np.isfinite(input_world), axis=-1)
    slides = []
    for column, side in enumerate(("left", "right")):
        slides.append(foot_slide(foot_points(rest, quats, root_location, side, ends=ends), contacts[:, column], fps))
    slides = np.concatenate(slides)
    by_reason = {reason: int(clean.repairs[:, i].sum()) for i, reason in enumerate(REASONS)}
    ranges = [(int(frames[a]), int(frames[b - 1]), reason) for a, b, reason in clean.ranges()]
    return PersonQuality(
        track_id=int(track_id),
        frames=int(len(quats)),
        jitter_mm=1000.0 * jitter(rig, both),
        input_jitter_mm=1000.0 * jitter(input_world, both),
        foot_slide_cm_s=100.0 * float(np.median(slides)) if len(slides) else float("nan"),
        contact_frames=int(contacts.any(axis=1).sum()),
        frames_repaired=clean.frames_repaired(),
        repaired_by_reason=by_reason,
        repaired_ranges=ranges,
        reprojection_px=(
            reprojection_px(rig, camera_matrix_world, image, focal_length) if focal_length else float("nan")
        ),
        bone_length_spread_pct=bone_length_spread(input_cam),
        support_height_m=float(support_height),
        notes=list(clean.notes),
    )

