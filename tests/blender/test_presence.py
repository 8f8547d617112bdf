"""Rigs are shown only while their person is there (issue 22): keyed visibility in the viewport and in renders,
hidden before a person enters, after they leave and across a gap longer than the solve bridges; the scene's
exports still hold every rig whatever frame the scene stands on."""

import bpy
import numpy as np
import pytest
from capture_helpers import AddonApi, fresh_scene

from testkit.cmu_take import cmu_take

ROWS = 90


@pytest.fixture
def built(addon, fixtures_dir, tmp_path):
    """Two people: person 0 over every row; person 1 enters at row 20, is gone over rows 40-59 (longer than the
    quarter second the solve bridges at 30 fps), and leaves after row 74."""
    api = AddonApi(addon)
    cmu = cmu_take(fixtures_dir, step=4, stop=4 * ROWS)
    take = api.take.Take.empty(2, cmu.frames, fps=cmu.fps, image_size=cmu.image_size, focal_length=cmu.focal_length,
                               principal_point=cmu.principal_point)  # fmt: skip
    for track, shift in enumerate((0.0, 1.2)):
        take.joints_cam[track] = cmu.joints_cam[0] + np.array([shift, 0.0, 0.0], np.float32)
        take.valid[track] = cmu.valid[0]
    take.valid[1, :20] = take.valid[1, 40:60] = take.valid[1, 75:] = False
    fresh_scene()
    solution = api.solve.solve_take(take)
    result = api.build.build_capture(bpy.context, take, solution, "presence")
    return api, take, result


def shown(rig, scene, frame: int) -> tuple[bool, bool]:
    scene.frame_set(frame)
    return not rig.hide_viewport, not rig.hide_render


def test_rigs_are_shown_only_while_their_person_is_there(built):
    _api, take, result = built
    scene = bpy.context.scene
    everyone, late = sorted(result.rigs, key=lambda rig: rig.name)
    frames = take.frames + 1  # scene frame of each row
    for row, frame in enumerate(frames):
        assert shown(everyone, scene, int(frame)) == (True, True), row
        present = 20 <= row < 40 or 60 <= row < 75
        assert shown(late, scene, int(frame)) == (present, present), row
    action = late.animation_data.action
    start, end = action.frame_range
    assert frames[0] <= start and end <= frames[-1]  # the visibility keys stay within the take


def test_exports_hold_every_rig_whatever_the_current_frame(built, tmp_path):
    api, take, result = built
    scene = bpy.context.scene
    scene.frame_set(int(take.frames[50]) + 1)  # person 1 is hidden here
    written = api.export.export_capture(bpy.context, result.rigs, str(tmp_path / "both.fbx"))
    assert written == [tmp_path / "both.fbx"] and (tmp_path / "both.fbx").stat().st_size > 0
    fresh_scene()
    bpy.ops.import_scene.fbx(filepath=str(tmp_path / "both.fbx"))
    armatures = [obj for obj in bpy.context.scene.objects if obj.type == "ARMATURE"]
    assert len(armatures) == 2
