"""The take: construction, validation, the builder, atomic save and strict load."""

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from instanthmr_blender import take as take_module
from instanthmr_blender.camera.path import CameraPath
from instanthmr_blender.take import (
    NUM_KEYPOINTS,
    OPTIONAL_KEYS,
    TAKE_FORMAT,
    TAKE_KEYS,
    TAKE_VERSION,
    Take,
    TakeBuilder,
    TakeError,
    load_take,
    locate_source,
    save_take,
)

CAMERA = dict(fps=30.0, image_size=(994, 1768), focal_length=float(np.hypot(994, 1768)),
              principal_point=(884.0, 497.0))


def person(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return dict(
        score=float(rng.uniform(0.5, 1)),
        bbox=rng.uniform(0, 900, 4),
        joints_cam=rng.normal(0, 1, (NUM_KEYPOINTS, 3)),
        cam_trans=rng.normal(0, 1, 3),
        joints_2d=rng.uniform(0, 900, (NUM_KEYPOINTS, 2)),
        mhr_params=rng.normal(0, 1, 204),
        shape_params=rng.normal(0, 1, 45),
    )


def sample_take() -> Take:
    builder = TakeBuilder(**CAMERA, source="clip.mp4")
    for frame in range(10, 20):
        builder.add_frame(frame)
        builder.add(frame, 7, **person(frame))
        if frame % 2 == 0:
            builder.add(frame, 3, **person(100 + frame))
    take = builder.build()
    take.joints_cam[0, 0, 5] = np.nan  # single keypoints may be NaN
    return take


def npz_fields(take: Take) -> dict:
    return {
        "format": np.array(TAKE_FORMAT), "version": np.array(TAKE_VERSION), "fps": np.array(take.fps),
        "image_size": np.array(take.image_size), "focal_length": np.array(take.focal_length),
        "principal_point": np.array(take.principal_point), "source": np.array(take.source),
        **{name: getattr(take, name) for name in take_module._ARRAY_FIELDS},
    }


def assert_takes_equal(a: Take, b: Take) -> None:
    assert (a.fps, a.image_size, a.focal_length, a.principal_point, a.source) == (
        b.fps, b.image_size, b.focal_length, b.principal_point, b.source,
    )
    for name in take_module._ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert getattr(a, name).dtype == getattr(b, name).dtype, name


# -- Take and TakeBuilder ------------------------------------------------------------------------------


def test_empty_take_is_nan_filled_and_invalid():
    take = Take.empty(2, [0, 5, 10], track_ids=[4, 9], **CAMERA)
    assert (take.num_tracks, take.num_frames) == (2, 3)
    assert take.joints_cam.shape == (2, 3, 70, 3) and take.joints_cam.dtype == np.float32
    assert take.mhr_params.shape == (2, 3, 204) and take.shape_params.shape == (2, 3, 45)
    assert not take.valid.any() and take.valid.dtype == np.bool_
    assert np.isnan(take.bbox).all() and np.isnan(take.score).all()
    assert take.frames.dtype == np.int64 and take.track_ids.tolist() == [4, 9]
    with pytest.raises(TakeError, match="3 tracks requested but 2"):
        Take.empty(3, [0], track_ids=[1, 2], **CAMERA)


def test_builder_places_records_in_rows_and_columns():
    builder = TakeBuilder(**CAMERA)
    for frame in (4, 0, 2, 6):  # out of order on purpose
        builder.add_frame(frame)
    builder.add(2, 11, **person(1))
    builder.add(6, 11, **person(2))
    builder.add(4, 5, **person(3))
    builder.add(8, 5, **person(4))  # a frame seen only through add()
    take = builder.build()
    assert take.frames.tolist() == [0, 2, 4, 6, 8]
    assert take.track_ids.tolist() == [5, 11]
    assert take.valid.tolist() == [[False, False, True, False, True], [False, True, False, True, False]]
    np.testing.assert_allclose(take.joints_cam[1, 3], person(2)["joints_cam"].astype(np.float32))
    np.testing.assert_allclose(take.mhr_params[0, 2], person(3)["mhr_params"].astype(np.float32))
    assert take.score[1, 1] == pytest.approx(person(1)["score"])
    assert np.isnan(take.joints_2d[0, 0]).all() and np.isnan(take.cam_trans[1, 0]).all()


def test_builder_copies_its_input():
    builder = TakeBuilder(**CAMERA)
    values = person(1)
    builder.add(0, 1, **values)
    values["joints_cam"][:] = 0  # the caller reuses its buffer
    assert builder.build().joints_cam[0, 0, 0, 0] != 0


def test_builder_drops_short_tracks():
    builder = TakeBuilder(**CAMERA)
    for frame in range(5):
        builder.add(frame, 1, **person(frame))
    builder.add(2, 2, **person(9))
    assert builder.build(min_track_length=3).track_ids.tolist() == [1]
    assert builder.build().track_ids.tolist() == [1, 2]
    with pytest.raises(TakeError, match="min_track_length"):
        builder.build(min_track_length=0)


def test_builder_with_nobody_keeps_the_frames():
    builder = TakeBuilder(**CAMERA)
    for frame in range(3):
        builder.add_frame(frame)
    take = builder.build()
    assert take.num_tracks == 0 and take.frames.tolist() == [0, 1, 2]
    assert take.joints_cam.shape == (0, 3, 70, 3)


def test_builder_rejects_bad_records():
    builder = TakeBuilder(**CAMERA)
    bad = person(1) | {"joints_cam": np.zeros((17, 3))}
    with pytest.raises(TakeError, match=r"`joints_cam` for track 4 at frame 2 has shape \(17, 3\)"):
        builder.add(2, 4, **bad)
    builder.add(2, 4, **person(1))
    with pytest.raises(TakeError, match="already added"):
        builder.add(2, 4, **person(2))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: setattr(t, "joints_cam", np.zeros((2, 10, 17, 3), np.float32)),
         r"`joints_cam` has shape \(2, 10, 17, 3\); expected \(T, F, 70, 3\) = \(2, 10, 70, 3\)"),
        (lambda t: setattr(t, "score", t.score.astype(np.float64)), "`score` has dtype float64"),
        (lambda t: setattr(t, "valid", t.valid[:, :3]), "`valid` has shape"),
        (lambda t: setattr(t, "frames", t.frames[::-1].copy()), "strictly increasing"),
        (lambda t: setattr(t, "track_ids", np.array([3, 3])), "duplicates"),
        (lambda t: setattr(t, "fps", 0.0), "`fps`"),
        (lambda t: setattr(t, "image_size", (994,)), "`image_size`"),
        (lambda t: setattr(t, "bbox", [[0, 0, 1, 1]]), "`bbox` must be a numpy array"),
    ],
)
def test_validate_names_the_bad_field(change, message):
    take = sample_take()
    take.validate()
    change(take)
    with pytest.raises(TakeError, match=message):
        take.validate()


# -- save and load -------------------------------------------------------------------------------------


def test_round_trip(tmp_path):
    take = sample_take()
    saved = save_take(take, tmp_path / "capture.npz")
    assert saved == tmp_path / "capture.npz"
    loaded = load_take(saved)
    assert_takes_equal(take, loaded)
    assert np.isnan(loaded.joints_cam[0, 0, 5]).all()
    assert [p.name for p in tmp_path.iterdir()] == ["capture.npz"]  # no temporary left behind


def test_saved_keys_and_no_pickle(tmp_path):
    path = save_take(sample_take(), tmp_path / "capture.npz")
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == set(TAKE_KEYS) | {"model_info"}  # a still camera: no camera_* keys
        assert str(archive["format"]) == TAKE_FORMAT and int(archive["version"]) == TAKE_VERSION
        assert archive["image_size"].tolist() == [994, 1768]
        assert archive["principal_point"].tolist() == [884.0, 497.0]
        assert str(archive["source"]) == "clip.mp4"


def moving_path(frames: int) -> CameraPath:
    angles = np.linspace(0.0, 0.3, frames)
    rotation = np.stack([[[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]] for a in angles])
    center = np.stack([angles, np.zeros(frames), angles * 2], axis=1)
    registered = np.ones(frames, bool)
    registered[1] = False
    return CameraPath(rotation, center, registered, np.arange(12.0).reshape(4, 3), "colmap-incremental",
                      {"registered": frames - 1, "seconds": {"mapping": 1.5}})


def test_camera_path_round_trip(tmp_path):
    take = sample_take()
    take.camera_path = moving_path(take.num_frames)
    loaded = load_take(save_take(take, tmp_path / "moving.npz"))
    with np.load(tmp_path / "moving.npz", allow_pickle=False) as archive:
        assert set(archive.files) == set(TAKE_KEYS) | set(OPTIONAL_KEYS)
    path = loaded.camera_path
    assert path.method == "colmap-incremental" and path.info == {"registered": take.num_frames - 1,
                                                                  "seconds": {"mapping": 1.5}}
    np.testing.assert_array_equal(path.rotation, take.camera_path.rotation)
    np.testing.assert_array_equal(path.center, take.camera_path.center)
    np.testing.assert_array_equal(path.registered, take.camera_path.registered)
    np.testing.assert_array_equal(path.points, take.camera_path.points)
    assert load_take(save_take(sample_take(), tmp_path / "still.npz")).camera_path is None


def test_camera_path_that_does_not_fit_the_take_is_refused(tmp_path):
    take = sample_take()
    take.camera_path = moving_path(take.num_frames + 1)
    with pytest.raises(TakeError, match="camera path has .* poses but the take has"):
        save_take(take, tmp_path / "bad.npz")
    take.camera_path = moving_path(take.num_frames)
    take.camera_path.rotation[0] *= 2
    with pytest.raises(TakeError, match="not rotation matrices"):
        take.validate()


def test_camera_path_with_a_key_missing_is_damaged(tmp_path):
    take = sample_take()
    take.camera_path = moving_path(take.num_frames)
    path = save_take(take, tmp_path / "moving.npz")
    with np.load(path, allow_pickle=False) as archive:
        fields = {key: archive[key] for key in archive.files if key != "camera_points"}
    write_npz(tmp_path / "cut.npz", fields)
    with pytest.raises(TakeError, match="camera path without `camera_points`"):
        load_take(tmp_path / "cut.npz")


MODEL_INFO = {"file": "instanthmr-nano.onnx", "sha256": "ab" * 32, "licence": "SAM License, non-commercial use only",
              "fit": 0, "metadata": {"cliff_focal": "true"}}


def test_model_info_round_trip_and_older_takes(tmp_path):
    take = sample_take()
    take.model_info = dict(MODEL_INFO)
    loaded = load_take(save_take(take, tmp_path / "capture.npz"))
    assert loaded.model_info == MODEL_INFO
    # a take written before model_info existed (same version) loads with none
    assert load_take(write_npz(tmp_path / "old.npz", npz_fields(sample_take()))).model_info == {}
    # a damaged one is named
    fields = npz_fields(sample_take()) | {"model_info": np.array("{not json")}
    with pytest.raises(TakeError, match="`model_info` is not a JSON object"):
        load_take(write_npz(tmp_path / "bad.npz", fields))
    take.model_info = {"sha256": object()}
    with pytest.raises(TakeError, match="`model_info` must hold only text and numbers"):
        save_take(take, tmp_path / "refused.npz")
    builder = TakeBuilder(**CAMERA, model_info=MODEL_INFO)
    builder.add_frame(0)
    assert builder.build().model_info == MODEL_INFO


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    destination = tmp_path / "capture.npz"
    save_take(sample_take(), destination)
    before = destination.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # a cancel or crash in the middle of writing

    monkeypatch.setattr(take_module.np, "savez_compressed", crash)
    with pytest.raises(KeyboardInterrupt):
        save_take(sample_take(), destination)
    assert destination.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["capture.npz"]


def test_save_reports_an_unwritable_place(tmp_path, monkeypatch):
    with pytest.raises(TakeError, match="does not exist"):
        save_take(sample_take(), tmp_path / "no_such_folder" / "capture.npz")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(take_module.os, "replace", disk_full)
    with pytest.raises(TakeError, match="No space left on device"):
        save_take(sample_take(), tmp_path / "capture.npz")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_an_invalid_take(tmp_path):
    take = sample_take()
    take.cam_trans = take.cam_trans[:, :, :2]
    with pytest.raises(TakeError, match="cam_trans"):
        save_take(take, tmp_path / "capture.npz")
    assert list(tmp_path.iterdir()) == []


def test_load_missing_file(tmp_path):
    with pytest.raises(TakeError, match="does not exist"):
        load_take(tmp_path / "nothing.npz")


@pytest.mark.parametrize(
    "content",
    [b"this is not a take", b"PK\x03\x04 truncated zip", b""],
)
def test_load_not_an_npz(tmp_path, content):
    path = tmp_path / "capture.npz"
    path.write_bytes(content)
    with pytest.raises(TakeError, match="not an InstantHMR take"):
        load_take(path)


def test_load_a_plain_npy(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(TakeError, match="single array"):
        load_take(path)


def write_npz(path: Path, fields: dict) -> Path:
    with open(path, "wb") as stream:
        np.savez(stream, **fields)
    return path


def test_load_wrong_format(tmp_path):
    fields = npz_fields(sample_take()) | {"format": np.array("some-other-tool")}
    with pytest.raises(TakeError, match="`some-other-tool` file, not an InstantHMR take"):
        load_take(write_npz(tmp_path / "t.npz", fields))
    fields.pop("format")
    with pytest.raises(TakeError, match="no `format` entry"):
        load_take(write_npz(tmp_path / "t.npz", fields))


def test_load_newer_version(tmp_path):
    fields = npz_fields(sample_take()) | {"version": np.array(TAKE_VERSION + 1)}
    with pytest.raises(TakeError, match="newer InstantHMR.*update the add-on"):
        load_take(write_npz(tmp_path / "t.npz", fields))


def test_load_missing_keys(tmp_path):
    fields = npz_fields(sample_take())
    del fields["joints_2d"], fields["source"]
    with pytest.raises(TakeError, match="missing `joints_2d`, `source`|missing `source`, `joints_2d`"):
        load_take(write_npz(tmp_path / "t.npz", fields))


def test_load_wrong_shape_names_field_and_expected_shape(tmp_path):
    fields = npz_fields(sample_take()) | {"mhr_params": np.zeros((2, 10, 200), np.float32)}
    with pytest.raises(TakeError, match=r"`mhr_params` has shape \(2, 10, 200\); expected \(T, F, 204\)"):
        load_take(write_npz(tmp_path / "t.npz", fields))


def test_load_wrong_dtype(tmp_path):
    fields = npz_fields(sample_take()) | {"valid": np.zeros((2, 10), np.float32)}
    with pytest.raises(TakeError, match="`valid` has dtype float32; expected bool"):
        load_take(write_npz(tmp_path / "t.npz", fields))
    fields = npz_fields(sample_take()) | {"fps": np.array("thirty")}
    with pytest.raises(TakeError, match="`fps` must be a single float"):
        load_take(write_npz(tmp_path / "t.npz", fields))


def test_load_accepts_compatible_dtypes(tmp_path):
    take = sample_take()
    fields = npz_fields(take) | {"joints_cam": take.joints_cam.astype(np.float64),
                                 "frames": take.frames.astype(np.int32)}
    loaded = load_take(write_npz(tmp_path / "t.npz", fields))
    assert loaded.joints_cam.dtype == np.float32 and loaded.frames.dtype == np.int64
    assert_takes_equal(take, loaded)


def test_load_refuses_pickled_objects(tmp_path):
    fields = npz_fields(sample_take()) | {"bbox": np.array([object()], dtype=object)}
    with open(tmp_path / "t.npz", "wb") as stream:
        np.savez(stream, **fields)  # object arrays are pickled inside the npz
    with pytest.raises(TakeError, match="t.npz"):
        load_take(tmp_path / "t.npz")


def test_load_a_damaged_member(tmp_path):
    path = save_take(sample_take(), tmp_path / "capture.npz")
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["joints_cam.npy"] = members["joints_cam.npy"][:200]  # header intact, data cut short
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(TakeError, match="damaged"):
        load_take(path)


def test_save_accepts_path_like_and_str(tmp_path):
    take = sample_take()
    as_text = save_take(take, os.fspath(tmp_path / "a.npz"))
    assert isinstance(as_text, Path) and load_take(str(as_text)).num_tracks == 2


def test_an_unwritable_folder_names_the_take_not_a_temporary_file(tmp_path, monkeypatch):
    def refused(*args, dir=None, prefix="", suffix="", **kwargs):
        raise PermissionError(13, "Permission denied", str(Path(dir) / f"{prefix}x1y2{suffix}"))

    monkeypatch.setattr(take_module.tempfile, "mkstemp", refused)
    with pytest.raises(TakeError) as error:
        save_take(sample_take(), tmp_path / "capture.npz")
    message = str(error.value)
    assert f"could not save take to `{tmp_path / 'capture.npz'}` (Permission denied)" in message
    assert ".tmp" not in message and "x1y2" not in message


def test_locate_source_finds_the_clip_from_any_folder_and_next_to_a_moved_take(tmp_path, monkeypatch):
    clip_folder, take_folder, moved = tmp_path / "clips", tmp_path / "takes", tmp_path / "moved"
    for folder in (clip_folder, take_folder, moved):
        folder.mkdir()
    (clip_folder / "walk.mp4").write_bytes(b"video")
    take_file = take_folder / "walk.npz"
    monkeypatch.chdir(moved)  # another working folder than the capture's
    assert locate_source(str(clip_folder / "walk.mp4"), take_file) == str(clip_folder / "walk.mp4")
    # an older take holding the path as typed, relative to the take's folder
    assert locate_source("../clips/walk.mp4", take_file) == os.path.abspath(take_folder / "../clips/walk.mp4")
    # take and clip moved together: the clip is found next to the take
    (moved / "walk.mp4").write_bytes(b"video")
    (clip_folder / "walk.mp4").unlink()
    assert locate_source(str(clip_folder / "walk.mp4"), moved / "walk.npz") == str(moved / "walk.mp4")
    assert locate_source(str(clip_folder / "walk.mp4"), take_file) is None
    assert locate_source(str(clip_folder / "frame_%04d.png"), take_file) == str(clip_folder / "frame_%04d.png")
    assert locate_source("", take_file) is None
