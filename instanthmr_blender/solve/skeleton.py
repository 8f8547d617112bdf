"""MHR70 keypoint names and the capture rig: bones, their keypoints, T-pose directions and roll rules, as data.

Blender armature space throughout: Z up, the character faces -Y, its left is +X, metres. Bone frames follow
Blender: column Y runs head -> tail. Roll rules (which world direction a bone's Z or X column follows):
- pelvis, spine, neck, head, legs, heels: Z forward (-Y in the T-pose), so X is the character's left for
  the up-pointing bones and its right for the down-pointing legs;
- clavicles, arms, hands, fingers, thumbs, feet and toes: Z up (+Z in the T-pose).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Naming conventions (Blender's mirror suffixes), in one place.
LEFT_SUFFIX = ".L"
RIGHT_SUFFIX = ".R"
SIDES = ((LEFT_SUFFIX, "left"), (RIGHT_SUFFIX, "right"))
FINGER_NAMES = ("thumb", "index", "middle", "ring", "pinky")
FINGER_SEGMENT_FORMAT = "{finger}.{segment:02d}"  # thumb.01 (knuckle -> PIP) .. thumb.03 (DIP -> tip)
ROOT_BONE = "pelvis"
BONE_GROUPS = ("root", "torso", "head", "arms", "legs", "fingers")

# ---------------------------------------------------------------------------------------------------------
# MHR70 keypoints (model-contract.md section 2). "left" is the subject's left.
NUM_KEYPOINTS = 70
_HAND_POINTS = ("tip", "first_joint", "second_joint", "third_joint")


def _mhr70_names() -> tuple[str, ...]:
    names = [
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
        "left_big_toe_tip", "left_small_toe_tip", "left_heel",
        "right_big_toe_tip", "right_small_toe_tip", "right_heel",
    ]  # fmt: skip
    names += [f"right_{finger}_{point}" for finger in FINGER_NAMES for point in _HAND_POINTS]
    names.append("right_wrist")
    names += [f"left_{finger}_{point}" for finger in FINGER_NAMES for point in _HAND_POINTS]
    names.append("left_wrist")
    names += [
        "left_olecranon", "right_olecranon", "left_cubital_fossa", "right_cubital_fossa",
        "left_acromion", "right_acromion", "neck",
    ]  # fmt: skip
    return tuple(names)


MHR70_NAMES: tuple[str, ...] = _mhr70_names()
MHR70_INDEX: dict[str, int] = {name: index for index, name in enumerate(MHR70_NAMES)}


def finger_keypoints(side: str, finger: str) -> tuple[int, int, int, int]:
    """MHR70 indices of one finger from the knuckle outwards: (third_joint, second_joint, first_joint, tip).

    side: "left" or "right"; for the thumb the third joint is MHR `thumb1` (its CMC has no keypoint)."""
    return tuple(MHR70_INDEX[f"{side}_{finger}_{point}"] for point in reversed(_HAND_POINTS))  # type: ignore[return-value]


# Keypoint groups for smoothing (which bone group a keypoint mostly drives).
def _keypoint_groups() -> tuple[str, ...]:
    groups = ["fingers"] * NUM_KEYPOINTS
    for name, index in MHR70_INDEX.items():
        if name.endswith(("_hip",)):
            groups[index] = "root"
        elif name.endswith(("shoulder", "acromion")) or name == "neck":
            groups[index] = "torso"
        elif name in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"):
            groups[index] = "head"
        elif name.endswith(("elbow", "wrist", "olecranon", "cubital_fossa")):
            groups[index] = "arms"
        elif name.endswith(("knee", "ankle", "toe_tip", "heel")):
            groups[index] = "legs"
    return tuple(groups)


KEYPOINT_GROUPS: tuple[str, ...] = _keypoint_groups()

# Foot keypoints per side, ankle first: ankle, big toe tip, small toe tip, heel.
FOOT_KEYPOINTS = {
    "left": (MHR70_INDEX["left_ankle"], MHR70_INDEX["left_big_toe_tip"],
             MHR70_INDEX["left_small_toe_tip"], MHR70_INDEX["left_heel"]),
    "right": (MHR70_INDEX["right_ankle"], MHR70_INDEX["right_big_toe_tip"],
              MHR70_INDEX["right_small_toe_tip"], MHR70_INDEX["right_heel"]),
}  # fmt: skip
LEG_KEYPOINTS = {  # hip, knee, ankle
    "left": (MHR70_INDEX["left_hip"], MHR70_INDEX["left_knee"], MHR70_INDEX["left_ankle"]),
    "right": (MHR70_INDEX["right_hip"], MHR70_INDEX["right_knee"], MHR70_INDEX["right_ankle"]),
}

# ---------------------------------------------------------------------------------------------------------
# Joints of the rig that are not keypoints. Linear ones are fixed weightings of keypoints; the two spine
# joints are placed by the solve (a two-bone chain between the pelvis and the neck keypoint).
VIRTUAL_JOINTS: dict[str, dict[int, float]] = {
    "hips_mid": {MHR70_INDEX["left_hip"]: 0.5, MHR70_INDEX["right_hip"]: 0.5},
    "ears_mid": {MHR70_INDEX["left_ear"]: 0.5, MHR70_INDEX["right_ear"]: 0.5},
}
SOLVED_JOINTS = ("spine_lower", "spine_upper", "head_top")


@dataclass(frozen=True)
class BoneDef:
    """One bone of the capture rig.

    head_kp / tail_kp: MHR70 indices, or -1 when the joint is not a keypoint (then head_joint / tail_joint
    name it: a VIRTUAL_JOINTS entry or one of SOLVED_JOINTS).
    rest_direction: (3,) T-pose head -> tail direction, armature space; rest_z: the Z column hint (roll).
    side_refs: keypoint pairs (a, b) whose vector a - b fixes the roll, mapped onto local axis side_axis
    ("+X", "-X", "+Z", "-Z"); the first pair with both points known is used, or the normalised sum of all
    known pairs when side_average. bend_partner / bend_axis: the bone forming a hinge with this one (its
    parent or child) and the local axis the hinge normal cross(upper_dir, lower_dir) maps onto.
    """

    name: str
    parent: str | None
    head_kp: int
    tail_kp: int
    group: str
    rest_direction: tuple[float, float, float]
    rest_z: tuple[float, float, float]
    head_joint: str = ""
    tail_joint: str = ""
    side_refs: tuple[tuple[int, int], ...] = ()
    side_axis: str = "+X"
    side_average: bool = False
    bend_partner: str = ""
    bend_axis: str = ""


_UP = (0.0, 0.0, 1.0)
_DOWN = (0.0, 0.0, -1.0)
_FORWARD = (0.0, -1.0, 0.0)
_K = MHR70_INDEX


def _mirror(vector: tuple[float, float, float]) -> tuple[float, float, float]:
    return (-vector[0], vector[1], vector[2])


def _normalized(vector: tuple[float, float, float]) -> tuple[float, float, float]:
    array = np.asarray(vector, dtype=np.float64)
    return tuple(float(value) for value in array / np.linalg.norm(array))  # type: ignore[return-value]


def _side_bones(suffix: str, side: str) -> list[BoneDef]:
    """The arm, hand, finger and leg bones of one side, defined for the left and mirrored for the right."""
    left = side == "left"

    def lateral(vector: tuple[float, float, float]) -> tuple[float, float, float]:
        return vector if left else _mirror(vector)

    def flip(axis: str) -> str:  # the arms' local X points forward on the left and backward on the right
        return axis if left else ("-" if axis[0] == "+" else "+") + axis[1]

    out = (1.0, 0.0, 0.0)
    s = suffix
    wrist, elbow, shoulder = _K[f"{side}_wrist"], _K[f"{side}_elbow"], _K[f"{side}_shoulder"]
    index_knuckle = finger_keypoints(side, "index")[0]
    pinky_knuckle = finger_keypoints(side, "pinky")[0]
    middle_knuckle = finger_keypoints(side, "middle")[0]
    knuckle_line = ((index_knuckle, pinky_knuckle),)
    hip, knee, ankle = LEG_KEYPOINTS[side]
    _, big_toe, small_toe, heel = FOOT_KEYPOINTS[side]
    bones = [
        BoneDef(f"clavicle{s}", "spine.02", _K["neck"], shoulder, "torso", lateral(out), _UP),
        BoneDef(f"upper_arm{s}", f"clavicle{s}", shoulder, elbow, "arms", lateral(out), _UP,
                bend_partner=f"forearm{s}", bend_axis="-Z" if left else "+Z"),
        BoneDef(f"forearm{s}", f"upper_arm{s}", elbow, wrist, "arms", lateral(out), _UP,
                side_refs=knuckle_line, side_axis=flip("+X"),
                bend_partner=f"upper_arm{s}", bend_axis="-Z" if left else "+Z"),
        BoneDef(f"hand{s}", f"forearm{s}", wrist, middle_knuckle, "arms", lateral(out), _UP,
                side_refs=knuckle_line, side_axis=flip("+X")),
    ]  # fmt: skip
    for finger in FINGER_NAMES:
        chain = finger_keypoints(side, finger)
        direction = _normalized(lateral((1.0, -1.0, 0.0))) if finger == "thumb" else lateral(out)
        for segment in range(3):
            name = FINGER_SEGMENT_FORMAT.format(finger=finger, segment=segment + 1) + s
            parent = f"hand{s}" if segment == 0 else FINGER_SEGMENT_FORMAT.format(finger=finger, segment=segment) + s
            partner_segment = segment + 2 if segment < 2 else segment
            partner = FINGER_SEGMENT_FORMAT.format(finger=finger, segment=partner_segment) + s
            # Fingers curl towards the palm (-Z in the palms-down T-pose): the hinge normal is local -X.
            bones.append(
                BoneDef(name, parent, chain[segment], chain[segment + 1], "fingers", direction, _UP,
                        bend_partner=partner, bend_axis="-X")
            )  # fmt: skip
    bones += [
        BoneDef(f"thigh{s}", ROOT_BONE, hip, knee, "legs", _DOWN, _FORWARD,
                bend_partner=f"shin{s}", bend_axis="-X"),
        BoneDef(f"shin{s}", f"thigh{s}", knee, ankle, "legs", _DOWN, _FORWARD,
                bend_partner=f"thigh{s}", bend_axis="-X"),
        BoneDef(f"foot{s}", f"shin{s}", ankle, big_toe, "legs", _FORWARD, _UP,
                side_refs=((small_toe, big_toe),), side_axis="-X" if left else "+X"),
        BoneDef(f"toe_small{s}", f"foot{s}", ankle, small_toe, "legs", _normalized(lateral((0.3, -1.0, 0.0))), _UP),
        BoneDef(f"heel{s}", f"foot{s}", ankle, heel, "legs", _normalized((0.0, 0.3, -1.0)), _FORWARD),
    ]  # fmt: skip
    return bones


def _capture_rig() -> tuple[BoneDef, ...]:
    hips = (_K["left_hip"], _K["right_hip"])
    shoulders = (_K["left_shoulder"], _K["right_shoulder"])
    acromions = (_K["left_acromion"], _K["right_acromion"])
    ears = (_K["left_ear"], _K["right_ear"])
    eyes = (_K["left_eye"], _K["right_eye"])
    bones = [
        BoneDef(ROOT_BONE, None, -1, -1, "root", _UP, _FORWARD, head_joint="hips_mid", tail_joint="spine_lower",
                side_refs=(hips,)),
        BoneDef("spine.01", ROOT_BONE, -1, -1, "torso", _UP, _FORWARD, head_joint="spine_lower",
                tail_joint="spine_upper", side_refs=(hips, shoulders), side_average=True),
        BoneDef("spine.02", "spine.01", -1, _K["neck"], "torso", _UP, _FORWARD, head_joint="spine_upper",
                side_refs=(shoulders, acromions)),
        BoneDef("neck", "spine.02", _K["neck"], -1, "head", _UP, _FORWARD, tail_joint="ears_mid",
                side_refs=(ears, eyes, shoulders)),
        BoneDef("head", "neck", -1, -1, "head", _UP, _FORWARD, head_joint="ears_mid", tail_joint="head_top"),
    ]  # fmt: skip
    for suffix, side in SIDES:
        bones += _side_bones(suffix, side)
    return tuple(bones)


CAPTURE_RIG: tuple[BoneDef, ...] = _capture_rig()
BONE_NAMES: tuple[str, ...] = tuple(bone.name for bone in CAPTURE_RIG)
BONE_INDEX: dict[str, int] = {name: index for index, name in enumerate(BONE_NAMES)}
BONE_PARENTS: np.ndarray = np.array(
    [BONE_INDEX[bone.parent] if bone.parent else -1 for bone in CAPTURE_RIG], dtype=np.int64
)


def mirror_name(name: str) -> str:
    """`thigh.L` <-> `thigh.R`; names without a side suffix are their own mirror."""
    if name.endswith(LEFT_SUFFIX):
        return name[: -len(LEFT_SUFFIX)] + RIGHT_SUFFIX
    if name.endswith(RIGHT_SUFFIX):
        return name[: -len(RIGHT_SUFFIX)] + LEFT_SUFFIX
    return name
