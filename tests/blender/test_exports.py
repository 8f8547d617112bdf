"""Exports through Blender's own exporters, re-imported with Blender's importers: the motion survives (root motion
included), for BVH (one file per person), FBX and glTF (all people in one file, or one per person)."""

import bpy
import numpy as np
import pytest
from capture_helpers import EXACT, AddonApi, fresh_scene, take_from_cmu

from testkit.cmu_take import cmu_take

# Bones whose heads are compared: the root (carries root motion) and the ends of the limbs.
PROBES = ("pelvis", "shin.L", "foot.R", "forearm.L", "hand.R", "neck")


@pytest.fixture(scope="module")
def api(installed_addon):
    return AddonApi(installed_addon)


@pytest.fixture
def capture(api, fixtures_dir, tmp_path):
    fresh_scene()
    take = take_from_cmu(api, cmu_take(fixtures_dir, step=8, stop=8 * 60), tmp_path)
    solution = api.solve.solve_take(take, api.solve.SolveOptions(**EXACT))
    return api.build.build_capture(bpy.context, take, solution, "cmu")


def head_positions(rig, frames) -> np.ndarray:
    """(frames, probes, 3) world positions of the probe bones' heads as Blender evaluates them."""
    scene = bpy.context.scene
    out = []
    for frame in frames:
        scene.frame_set(frame)
        world = rig.matrix_world
        out.append([tuple(world @ rig.pose.bones[name].head) for name in PROBES])
    return np.array(out)


def imported_armature(before: set):
    new = [obj for obj in bpy.data.objects if obj.name not in before and obj.type == "ARMATURE"]
    assert len(new) == 1, [obj.name for obj in new]
    return new[0]


def sample_frames(rig) -> list[int]:
    start, end = (int(v) for v in rig.animation_data.action.frame_range)
    return list(range(start, end + 1, 37))


def test_bvh_export_reimports_with_the_same_motion(api, capture, tmp_path):
    export_capture = api.export.export_capture
    rig = capture.rigs[0]
    frames = sample_frames(rig)
    expected = head_positions(rig, frames)
    written = export_capture(bpy.context, capture.rigs, str(tmp_path / "cmu.bvh"))
    # one person too gets the person's name: the README's OUT.person00.bvh rule, whatever the number of people
    assert written == [tmp_path / f"cmu.{rig.name.rsplit('.', 1)[-1]}.bvh"] and rig.name.endswith(".person00")
    before = {obj.name for obj in bpy.data.objects}
    # Blender's BVH exporter writes Blender's own axes (Z up), so import them unconverted.
    bpy.ops.import_anim.bvh(filepath=str(written[0]), axis_forward="Y", axis_up="Z", frame_start=frames[0],
                            use_fps_scale=False, rotate_mode="NATIVE")
    imported = imported_armature(before)
    got = head_positions(imported, frames)
    error = np.linalg.norm(got - expected, axis=-1)
    assert error.max() < 0.002, f"max {error.max() * 1000:.2f} mm"
    assert np.ptp(expected[:, 0], axis=0).max() > 0.3  # the subject travels: root motion was compared


@pytest.mark.parametrize("suffix", [".fbx", ".glb"])
def test_fbx_and_gltf_reimport_with_the_same_motion(api, capture, tmp_path, suffix):
    export_capture = api.export.export_capture
    rig = capture.rigs[0]
    frames = sample_frames(rig)
    expected = head_positions(rig, frames)
    path = tmp_path / f"cmu{suffix}"
    assert export_capture(bpy.context, capture.rigs, str(path)) == [path]
    before = {obj.name for obj in bpy.data.objects}
    if suffix == ".fbx":
        # FBX time is scene frame / fps; Blender's importer adds one frame unless told not to.
        bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=0.0)
    else:
        bpy.ops.import_scene.gltf(filepath=str(path))
    imported = imported_armature(before)
    got = head_positions(imported, frames)
    error = np.linalg.norm(got - expected, axis=-1)
    assert error.max() < 0.002, f"{suffix}: max {error.max() * 1000:.2f} mm"


def test_one_file_per_person_for_fbx(api, fixtures_dir, tmp_path):
    export_capture = api.export.export_capture
    fresh_scene()
    take = api.take.Take.empty(2, np.arange(0, 40, 8), fps=120.0, image_size=(1080, 1920), focal_length=2202.9,
                               principal_point=(960.0, 540.0), track_ids=np.array([0, 1]))
    single = take_from_cmu(api, cmu_take(fixtures_dir, step=8, stop=40), tmp_path)
    for track, shift in ((0, -0.6), (1, 0.6)):
        take.joints_cam[track] = single.joints_cam[0] + np.array([shift, 0, 0], np.float32)
        take.valid[track] = single.valid[0]
    solution = api.solve.solve_take(take, api.solve.SolveOptions(**EXACT))
    built = api.build.build_capture(bpy.context, take, solution, "two")
    written = export_capture(bpy.context, built.rigs, str(tmp_path / "two.fbx"), per_person=True)
    assert [p.name for p in written] == ["two.person00.fbx", "two.person01.fbx"]
    together = export_capture(bpy.context, built.rigs, str(tmp_path / "both.glb"))
    before = {obj.name for obj in bpy.data.objects}
    bpy.ops.import_scene.gltf(filepath=str(together[0]))
    assert len([o for o in bpy.data.objects if o.name not in before and o.type == "ARMATURE"]) == 2
