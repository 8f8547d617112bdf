"""Output locations are checked before the work: folders, missing folders, read-only places."""

from instanthmr_blender.output_paths import output_problem


def test_a_file_in_a_writable_folder_is_fine_and_nothing_is_left_behind(tmp_path):
    assert output_problem(tmp_path / "out.blend") is None
    (tmp_path / "out.blend").write_bytes(b"old")  # an existing file is replaced later, not a problem
    assert output_problem(tmp_path / "out.blend") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.blend"]


def test_a_folder_and_a_missing_folder_are_named(tmp_path):
    assert output_problem(tmp_path) == "is a folder: give a file name in it"
    missing = tmp_path / "nope" / "out.blend"
    expected = f"the folder {tmp_path / 'nope'} does not exist: create it first, or choose another place"
    assert output_problem(missing) == expected
    assert not (tmp_path / "nope").exists()
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in output_problem(tmp_path / "file" / "out.blend")


def test_a_missing_folder_is_created_when_asked(tmp_path):
    assert output_problem(tmp_path / "a" / "b" / "take.npz", create_folder=True) is None
    assert (tmp_path / "a" / "b").is_dir()


def test_a_read_only_place_is_refused_without_a_temporary_name():
    # /sys refuses new files even to root (a chmod-ed folder would not stop root).
    problem = output_problem("/sys/out.blend")
    assert problem == "cannot write in /sys (Permission denied): choose a writable folder"
    assert output_problem("/sys/sub/out.blend", create_folder=True).startswith("the folder /sys/sub cannot be created")
