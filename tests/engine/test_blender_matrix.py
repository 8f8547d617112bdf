"""The real-Blender test runner keeps the disk in check: CI machines may have only a few GB free."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import blender_matrix  # noqa: E402

GB = blender_matrix.GB


def _fake_disk(monkeypatch, tmp_path, free_gb: float, venv_gb: float):
    """A repository root with three line venvs; removing a venv frees `venv_gb`."""
    state = {"free": free_gb * GB}
    venvs = []
    for version in ("4.2.23", "4.5.15", "5.0.1"):
        venv = tmp_path / f".venv-bpy-{version}"
        (venv / "bin").mkdir(parents=True)
        venvs.append(venv)
    real_rmtree = blender_matrix.shutil.rmtree

    def rmtree(path, ignore_errors=False):
        real_rmtree(path, ignore_errors=ignore_errors)
        state["free"] += venv_gb * GB

    monkeypatch.setattr(blender_matrix, "ROOT", tmp_path)
    monkeypatch.setattr(blender_matrix, "free_bytes", lambda: state["free"])
    monkeypatch.setattr(blender_matrix.shutil, "rmtree", rmtree)
    return venvs


def test_plenty_of_space_keeps_every_venv(monkeypatch, tmp_path):
    venvs = _fake_disk(monkeypatch, tmp_path, free_gb=40, venv_gb=1.1)
    blender_matrix.make_room(keep=venvs[1])  # the default need
    assert all(v.is_dir() for v in venvs)


def test_short_space_removes_other_lines_venvs_until_there_is_room(monkeypatch, tmp_path):
    venvs = _fake_disk(monkeypatch, tmp_path, free_gb=2.0, venv_gb=1.1)
    blender_matrix.make_room(keep=venvs[1], need=3.5 * GB)
    # 2.0 + 1.1 < 3.5, 2.0 + 2.2 >= 3.5: both others go, the line being set up stays.
    assert [v.is_dir() for v in venvs] == [False, True, False]


def test_removes_only_as_many_as_needed(monkeypatch, tmp_path):
    venvs = _fake_disk(monkeypatch, tmp_path, free_gb=3.0, venv_gb=1.1)
    blender_matrix.make_room(keep=venvs[2], need=3.5 * GB)
    assert [v.is_dir() for v in venvs] == [False, True, True]


def test_warns_when_even_that_is_not_enough(monkeypatch, tmp_path, capsys):
    venvs = _fake_disk(monkeypatch, tmp_path, free_gb=0.5, venv_gb=0.1)
    blender_matrix.make_room(keep=venvs[0], need=3.5 * GB)
    assert "warning: only" in capsys.readouterr().err
    assert venvs[0].is_dir()


def test_each_line_runs_in_its_own_basetemp_which_is_removed_afterwards(monkeypatch, tmp_path):
    # The tier leaves with os._exit, so pytest never cleans its own temp folders: the runner must.
    seen = {}

    def fake_run(cmd, cwd, env):
        basetemp = Path(next(arg for arg in cmd if arg.startswith("--basetemp=")).split("=", 1)[1])
        assert basetemp.is_dir()
        (basetemp / "big.bin").write_bytes(b"x" * 1024)
        seen["basetemp"] = basetemp
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.delenv("INSTANTHMR_KEEP_TEST_FILES", raising=False)
    monkeypatch.setattr(blender_matrix, "ensure_venv", lambda line: Path(sys.executable))
    monkeypatch.setattr(blender_matrix.subprocess, "run", fake_run)
    name, status, _ = blender_matrix.run_line("4.5", [])
    assert (name, status) == ("4.5", 1)
    assert not seen["basetemp"].exists()


def test_a_basetemp_given_by_the_caller_is_left_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(blender_matrix, "ensure_venv", lambda line: Path(sys.executable))
    monkeypatch.setattr(blender_matrix.subprocess, "run",
                        lambda cmd, cwd, env: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    blender_matrix.run_line("4.5", ["--basetemp=/somewhere"])
    assert [arg for arg in calls[0] if arg.startswith("--basetemp")] == ["--basetemp=/somewhere"]
