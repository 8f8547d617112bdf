"""Importing SAM 3D Body results saved from the upstream demo (instanthmr_blender.capture.sam3d_import): the real
fixture outputs written out in the demo's layout, as .npz and as .pkl, become a take; the tracker links people
across frames; the camera is checked; a pickle that names code is refused before anything runs."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from instanthmr_blender.capture.sam3d_import import Sam3DImportError, frame_key, import_sam3d_results, load_pickle_data
from instanthmr_blender.take import load_take, save_take
from tests import sam3d_setup


@pytest.mark.parametrize("fmt", ["npz", "pkl"])
def test_demo_outputs_become_a_take_in_the_contract(fmt, fixtures_dir, tmp_path):
    folder = sam3d_setup.write_demo_outputs(tmp_path / "clip", fixtures_dir, fmt)
    take = import_sam3d_results(folder, source="people.jpg")
    assert take.num_tracks == 4 and take.num_frames == 1 and take.valid.all()
    assert take.focal_length == pytest.approx(sam3d_setup.FOCAL, abs=1e-3)
    assert take.image_size == sam3d_setup.IMAGE_SIZE  # from the results' principal point: the frame centre
    assert take.principal_point == sam3d_setup.PRINCIPAL
    assert take.model_info["backend"] == "sam3d" and take.model_info["files"] == 4
    assert take.model_info["focal_source"] == "files"
    sam3d_setup.assert_take_holds_the_fixture_people(take, fixtures_dir)
    assert load_take(save_take(take, tmp_path / "imported.npz")).model_info == take.model_info


def _project(points: np.ndarray) -> np.ndarray:
    return sam3d_setup.FOCAL * points[:, :2] / points[:, 2:3] + np.array(sam3d_setup.PRINCIPAL)


def test_people_are_tracked_across_frames_whatever_the_file_order(fixtures_dir, tmp_path):
    # Eight frames, every person walking along camera x; each frame's files number the people in another order,
    # so only the tracker can say who is who.
    folder = tmp_path / "clip"
    folder.mkdir()
    people = sam3d_setup.fixture_people(fixtures_dir)
    rng = np.random.default_rng(5)
    for frame in range(8):
        for slot, index in enumerate(rng.permutation(4)):
            out = sam3d_setup.demo_output(people[index])
            out["pred_cam_t"] = out["pred_cam_t"] + np.float32([0.03 * frame, 0, 0])
            out["pred_keypoints_2d"] = _project(out["pred_keypoints_3d"] + out["pred_cam_t"]).astype(np.float32)
            shift = out["pred_keypoints_2d"][0] - people[index]["pred_keypoints_2d"][0]
            out["bbox"] = out["bbox"] + np.tile(shift, 2).astype(np.float32)
            arrays = {k: v for k, v in out.items() if v is not None}
            np.savez(folder / f"frame_{10 + 2 * frame:06d}_{slot}.npz", **arrays)
    take = import_sam3d_results(folder, fps=25.0, min_track_length=5)
    assert take.frames.tolist() == list(range(10, 26, 2)) and take.fps == 25.0
    assert take.num_tracks == 4 and take.valid.all()
    for track in range(4):
        identity = take.shape_params[track]
        assert np.abs(identity - identity[0]).max() == 0.0, f"track {track} switched people"
        assert np.allclose(np.diff(take.cam_trans[track, :, 0]), 0.03, atol=1e-5)


def test_a_given_clip_size_is_checked_against_the_results_camera(fixtures_dir, tmp_path):
    folder = sam3d_setup.write_demo_outputs(tmp_path / "clip", fixtures_dir, "npz")
    assert import_sam3d_results(folder, image_size=(890, 1920)).image_size == (890, 1920)
    with pytest.raises(Sam3DImportError, match=r"principal point \(960.0, 445.0\) px is not the centre of a 1920x1080"):
        import_sam3d_results(folder, image_size=(1080, 1920))


def test_focal_length_missing_given_or_disagreeing(fixtures_dir, tmp_path):
    folder = tmp_path / "nofocal"
    folder.mkdir()
    for index, person in enumerate(sam3d_setup.fixture_people(fixtures_dir)):
        out = {k: v for k, v in sam3d_setup.demo_output(person).items() if k != "focal_length" and v is not None}
        np.savez(folder / f"img_subj{index:02d}.npz", **out)
    with pytest.raises(Sam3DImportError, match="has no `focal_length`: give the focal length .*--focal-px"):
        import_sam3d_results(folder)
    take = import_sam3d_results(folder, focal_px=sam3d_setup.FOCAL)
    assert take.num_tracks == 4 and take.model_info["focal_source"] == "given"
    with pytest.raises(Sam3DImportError, match="px from the projection .*the given focal length is not the results'"):
        import_sam3d_results(folder, focal_px=2000.0)
    mixed = sam3d_setup.write_demo_outputs(tmp_path / "mixed", fixtures_dir, "npz")
    with np.load(mixed / "frame_000000_2.npz") as data:
        odd = dict(data)
    odd["focal_length"] = np.float32(1500.0)
    np.savez(mixed / "frame_000000_2.npz", **odd)
    with pytest.raises(Sam3DImportError, match="disagree on the camera: .*_2.npz` has focal_length 1500.00"):
        import_sam3d_results(mixed)


def test_pickles_naming_code_are_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "frame_000000_0.pkl"
    path.write_bytes(pickle.dumps({"pred_keypoints_3d": Exploit()}))
    with pytest.raises(Sam3DImportError, match=r"was not read: it names `(posix|os|nt)\.system`.*no code runs"):
        load_pickle_data(path)
    with pytest.raises(Sam3DImportError, match="was not read"):
        import_sam3d_results(tmp_path)
    assert not marker.exists()
    # numpy data of every kind still loads: arrays, numpy scalars, nested lists and dicts
    data = [{"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float32(2.5), "c": [1, (2.0, "x")]}]
    safe = tmp_path / "safe.pkl"
    safe.write_bytes(pickle.dumps(data, protocol=5))
    loaded = load_pickle_data(safe)
    np.testing.assert_array_equal(loaded[0]["a"], data[0]["a"])
    assert loaded[0]["b"] == np.float32(2.5) and loaded[0]["c"] == [1, (2.0, "x")]


def test_torch_tensors_in_a_pickle_are_refused_with_what_to_do(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "frame_000000_0.pkl"
    path.write_bytes(pickle.dumps({"pred_keypoints_3d": torch.zeros(70, 3)}))
    with pytest.raises(Sam3DImportError, match=r"names `torch\..*save SAM 3D Body's outputs as numpy"):
        load_pickle_data(path)


def test_a_frame_file_with_a_list_of_people_and_batched_npz(fixtures_dir, tmp_path):
    people = [sam3d_setup.demo_output(p) for p in sam3d_setup.fixture_people(fixtures_dir)]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "000007.pkl").write_bytes(pickle.dumps(people))  # process_one_image's list, as is
    take = import_sam3d_results(tmp_path / "a")
    assert take.num_tracks == 4 and take.frames.tolist() == [7]
    (tmp_path / "b").mkdir()
    batched = {k: np.stack([p[k] for p in people]) for k in people[0] if people[0][k] is not None}
    np.savez(tmp_path / "b" / "000007.npz", **batched)
    again = import_sam3d_results(tmp_path / "b")
    np.testing.assert_array_equal(again.joints_cam, take.joints_cam)


def test_bad_folders_and_files_are_named(fixtures_dir, tmp_path):
    with pytest.raises(Sam3DImportError, match="does not exist or is not a folder"):
        import_sam3d_results(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(Sam3DImportError, match="holds no SAM 3D Body results"):
        import_sam3d_results(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    np.savez(tmp_path / "other" / "frame_1_0.npz", joints=np.zeros((70, 3)))
    with pytest.raises(Sam3DImportError, match=r"frame_1_0.npz` has no `pred_keypoints_3d` \(it holds joints\)"):
        import_sam3d_results(tmp_path / "other")
    (tmp_path / "shape").mkdir()
    out = sam3d_setup.demo_output(sam3d_setup.fixture_people(fixtures_dir)[0])
    out["pred_keypoints_3d"] = out["pred_keypoints_3d"][:17]
    np.savez(tmp_path / "shape" / "f_1_0.npz", **{k: v for k, v in out.items() if v is not None})
    with pytest.raises(Sam3DImportError, match=r"`pred_keypoints_3d` has shape \(17, 3\); SAM 3D Body's is \(70, 3\)"):
        import_sam3d_results(tmp_path / "shape")


@pytest.mark.parametrize(
    "name, key",
    [
        ("frame_000012_1", ("frame_000012_", 12)),
        ("000012/1", ("000012/", 12)),
        ("img_subj00", ("img_subj", None)),
        ("person3", ("person", None)),
        ("frame_0042", ("frame_0042", 42)),
        ("still", ("still", None)),
    ],
)
def test_frame_and_person_from_file_names(name, key):
    assert frame_key(Path(name + ".npz")) == key
