"""Real-Blender tier: the bpy wheel (real Blender as a module), the extension built, installed and enabled.

Blender is isolated per run: `BLENDER_USER_RESOURCES` and `XDG_CACHE_HOME` point into a temporary folder
before `bpy` is imported, so the developer's own Blender configuration is never touched. The process ends
with `os._exit(status)` because bpy deadlocks at interpreter exit after Rigify ran (4.5) or crashes (4.2).
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("INSTANTHMR_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))
ADDON_ID = "instanthmr"
ADDON_MODULE = f"bl_ext.user_default.{ADDON_ID}"

# Must happen before anything imports bpy.
_RUN_DIR = Path(tempfile.mkdtemp(prefix="instanthmr-blender-tests-"))
os.environ["BLENDER_USER_RESOURCES"] = str(_RUN_DIR / "blender-user")
os.environ["XDG_CACHE_HOME"] = str(_RUN_DIR / "cache")
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

# Blender itself, imported once the environment is set (test modules then import addon_utils freely).
import bpy  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "tools"))

_exit_status = None


def pytest_sessionfinish(session, exitstatus):
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # Skip interpreter shutdown: after Rigify, bpy 4.5 hangs and 4.2 segfaults there. The report is printed
    # by now; flush it and leave with pytest's own status.
    # os._exit also skips every cleanup, so remove what this run wrote outside pytest's basetemp (the built
    # zips, the installed extension and its wheels: about 0.6 GB a run) and Blender's own session temp folder.
    if _exit_status is not None:
        _remove_run_files()
    sys.stdout.flush()
    sys.stderr.flush()
    if _exit_status is not None:
        os._exit(_exit_status)


def _remove_run_files() -> None:
    if os.environ.get("INSTANTHMR_KEEP_TEST_FILES"):
        print(f"conftest: kept {_RUN_DIR} (INSTANTHMR_KEEP_TEST_FILES is set)", file=sys.stderr)
        return
    shutil.rmtree(_RUN_DIR, ignore_errors=True)
    blender_temp = Path(bpy.app.tempdir) if bpy.app.tempdir else None
    if blender_temp is not None and blender_temp.name.startswith("blender_") and blender_temp.is_dir():
        shutil.rmtree(blender_temp, ignore_errors=True)


@pytest.fixture(scope="session")
def run_dir() -> Path:
    return _RUN_DIR


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "README.md").is_file():
        pytest.fail(f"shared fixtures not found at {FIXTURES}; set INSTANTHMR_FIXTURES")
    return FIXTURES


@pytest.fixture(scope="session")
def built_zips(run_dir) -> list[Path]:
    """The extension built with Blender's own tool (one zip per platform), as a user would download it."""
    import build_extension

    return build_extension.build(run_dir / "dist")


@pytest.fixture(scope="session")
def installed_addon(built_zips):
    """Install this platform's zip with Blender's extension machinery into the isolated user folder."""
    import addon_utils
    import build_extension

    zip_path = build_extension.zip_for_this_platform(built_zips)
    result = bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}, f"package_install_files returned {result}"
    loaded_default, loaded_state = addon_utils.check(ADDON_MODULE)
    assert loaded_state, f"{ADDON_MODULE} did not enable after install"
    return sys.modules[ADDON_MODULE]


@pytest.fixture
def addon(installed_addon):
    """The enabled add-on; re-enabled if a test left it disabled."""
    import addon_utils

    if not addon_utils.check(ADDON_MODULE)[1]:
        addon_utils.enable(ADDON_MODULE, default_set=True, handle_error=_raise)
    return sys.modules[ADDON_MODULE]


def _raise(exc):
    raise exc
