"""The BVH reader (testkit.bvh) on the real CMU file and on small hand-written files."""

import numpy as np
import pytest

from testkit.bvh import BvhError, keypoints_from_bvh, read_bvh
from testkit.cmu_take import CMU_UNIT_METRES, load_cmu

_SMALL = """HIERARCHY
ROOT root
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT arm
  {
    OFFSET 0 1 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 2 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.5
1 2 3 0 0 0 0 0 0
0 0 0 90 0 0 0 0 90
"""


def test_reads_cmu_hierarchy_and_motion(fixtures_dir):
    bvh = load_cmu(fixtures_dir)
    assert bvh.num_frames == 2752
    assert bvh.fps == pytest.approx(120.0, rel=1e-4)
    assert bvh.motion.shape == (2752, 96)
    assert bvh.joint_names[:3] == ["Hips", "LHipJoint", "LeftUpLeg"]
    assert "LeftToeBase_end" in bvh.joint_names
    assert bvh.joints[bvh.joint_index("LeftUpLeg")].parent == bvh.joint_index("LHipJoint")


def test_cmu_forward_kinematics_is_rigid_and_frame_zero_is_a_t_pose(fixtures_dir):
    bvh = load_cmu(fixtures_dir)
    positions = bvh.world_positions(slice(0, None, 50)) * CMU_UNIT_METRES
    shoulder, elbow, wrist = (positions[:, bvh.joint_index(name)] for name in ("LeftArm", "LeftForeArm", "LeftHand"))
    upper = np.linalg.norm(elbow - shoulder, axis=1)
    assert np.allclose(upper, 4.983 * CMU_UNIT_METRES, atol=1e-9)  # the file's offset, every frame
    assert upper.std() < 1e-9
    # Frame 0: arms horizontal along +X (the subject's left), Y up, feet below the hips.
    arm = wrist[0] - shoulder[0]
    assert arm[0] > 0.4 and abs(arm[1]) < 0.05
    assert positions[0, bvh.joint_index("LeftFoot"), 1] < positions[0, bvh.joint_index("Hips"), 1] - 0.7


def test_small_file_channels_and_rotation_order(tmp_path):
    path = tmp_path / "small.bvh"
    path.write_text(_SMALL)
    bvh = read_bvh(path)
    assert bvh.fps == 2.0 and bvh.joint_names == ["root", "arm", "arm_end"]
    positions = bvh.world_positions()
    assert np.allclose(positions[0], [[1, 2, 3], [1, 3, 3], [1, 5, 3]])
    # Frame 1: root turns 90 deg about Z (arm now along -X), then the arm turns 90 deg about its own X
    # (Rz then Rx in file order), which swings its child offset (0, 2, 0) onto the root's rotated Z.
    assert np.allclose(positions[1, 1], [-1, 0, 0], atol=1e-12)
    assert np.allclose(positions[1, 2], [-1, 0, 2], atol=1e-12)
    keypoints = keypoints_from_bvh(bvh, {"arm": 3}, num_keypoints=5, scale=2.0)
    assert keypoints.shape == (2, 5, 3)
    assert np.allclose(keypoints[0, 3], [2, 6, 6]) and np.isnan(keypoints[:, [0, 1, 2, 4]]).all()


def test_errors_name_the_file(tmp_path):
    truncated = tmp_path / "truncated.bvh"
    truncated.write_text(_SMALL.replace("0 0 0 90 0 0 0 0 90\n", ""))
    with pytest.raises(BvhError, match="truncated.bvh.*truncated"):
        read_bvh(truncated)
    not_bvh = tmp_path / "notes.txt"
    not_bvh.write_text("hello")
    with pytest.raises(BvhError, match="notes.txt"):
        read_bvh(not_bvh)
    with pytest.raises(BvhError, match="cannot be read"):
        read_bvh(tmp_path / "missing.bvh")
    with pytest.raises(BvhError, match="no joint named"):
        read_bvh(_write(tmp_path, _SMALL)).joint_index("leg")


def _write(tmp_path, text):
    path = tmp_path / "again.bvh"
    path.write_text(text)
    return path
