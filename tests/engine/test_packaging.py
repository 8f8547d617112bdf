"""Packaging facts checked without Blender: the wheel lock covers every platform and Blender Python, the
manifest lists exactly the locked wheels, and the build leaves out what is only for development."""

import importlib.util
import json
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import build_extension  # noqa: E402
import fetch_wheels  # noqa: E402


def test_lock_has_one_wheel_per_package_platform_and_python():
    # pycolmap publishes no Intel Mac wheel: that zip goes without the camera solve (and says so when asked).
    lock = json.loads((ROOT / "wheels" / "lock.json").read_text())["wheels"]
    for package in fetch_wheels.PACKAGES:
        norm = package.replace("-", "_")
        for platform in fetch_wheels.PLATFORMS:
            for cpython in fetch_wheels.PYTHONS:
                matches = []
                for entry in lock:
                    python_tag, abi_tag, platform_tag = fetch_wheels._parse_wheel_name(entry["filename"])
                    if (entry["filename"].startswith(norm + "-")
                            and fetch_wheels._platform_matches(platform_tag, platform)
                            and fetch_wheels._python_matches(python_tag, abi_tag, cpython)):
                        matches.append(entry["filename"])
                expected = 0 if platform in fetch_wheels.MISSING_ALLOWED.get(package, ()) else 1
                assert len(matches) == expected, f"{package} {platform} {cpython}: {matches}"
    assert all(len(entry["sha256"]) == 64 for entry in lock)


def test_manifest_lists_exactly_the_locked_wheels():
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    lock = json.loads((ROOT / "wheels" / "lock.json").read_text())["wheels"]
    assert manifest["wheels"] == [f"./wheels/{entry['filename']}" for entry in lock]
    assert fetch_wheels.main(["--check", "--quiet"]) == 0


def test_manifest_essentials():
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    assert manifest["id"] == "instanthmr" and manifest["type"] == "add-on"
    assert manifest["schema_version"] == "1.0.0" and manifest["blender_version_min"] == "4.2.0"
    assert set(manifest["permissions"]) == {"files", "network"}
    assert set(manifest["platforms"]) == set(fetch_wheels.PLATFORMS)
    assert manifest["license"][0].startswith("SPDX:")


def test_wheel_platform_and_python_matching():
    assert fetch_wheels._platform_matches("manylinux_2_27_x86_64.manylinux_2_28_x86_64", "linux-x64")
    assert not fetch_wheels._platform_matches("manylinux_2_28_aarch64", "linux-x64")
    assert fetch_wheels._platform_matches("macosx_13_0_arm64", "macos-arm64")
    assert not fetch_wheels._platform_matches("macosx_13_0_arm64", "macos-x64")
    assert fetch_wheels._python_matches("cp37", "abi3", "cp311")
    assert not fetch_wheels._python_matches("cp312", "cp312", "cp311")
    assert not fetch_wheels._python_matches("cp313", "cp313t", "cp313")


def test_the_build_leaves_out_the_tests_their_stand_ins_the_tools_and_the_docs():
    """Checked with Blender's own build filter (blender_ext.py, inside the bpy package) on the manifest's
    `paths_exclude_pattern`, so no zip needs building."""
    try:
        tool = build_extension.blender_ext_tool()
    except build_extension.BuildError as error:
        pytest.skip(str(error))
    spec = importlib.util.spec_from_file_location("blender_ext", tool)
    blender_ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(blender_ext)
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    excluded = blender_ext.PathPatternMatch(manifest["build"]["paths_exclude_pattern"]).test_path
    for folder in ("tests/", "testkit/", "tools/", "docs/"):
        assert (ROOT / folder).is_dir() and excluded(folder), f"the extension zip would ship {folder}"
    for shipped in ("__init__.py", "capture.py", "blender_manifest.toml", "instanthmr_blender/", "scene/"):
        assert not excluded(shipped), f"the extension zip would leave out {shipped}"
