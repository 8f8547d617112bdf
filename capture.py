"""Headless capture: `blender -b -P capture.py -- clip.mp4 [options]`, or `python capture.py clip.mp4 [options]`
with the `bpy` module (the dev venv). Works from a source checkout and from the installed extension.

This file only finds or registers the extension, then hands over to its command line (`cli/`); `--help` lists the
options. Exit status: 0 on success, 1 on a capture failure, 2 on bad input or missing model files, 130 on Ctrl-C.
"""

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEV_REPO_MODULE = "instanthmr_dev"


def _script_args() -> list[str]:
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1:]
    return sys.argv[1:]


def _installed_module_name(bpy) -> str | None:
    """`bl_ext.<repo>.<id>` when this file sits inside an installed extension, else None."""
    for repo in bpy.context.preferences.extensions.repos:
        if repo.enabled and repo.directory and Path(repo.directory).resolve() == HERE.parent:
            return f"bl_ext.{repo.module}.{HERE.name}"
    return None


def _dev_repo_folder() -> Path:
    """One folder per checkout, reused by every run (the process leaves with os._exit, so a folder per run
    would never be removed), holding `instanthmr` as a link to the checkout, or a copy where links fail."""
    import hashlib

    key = hashlib.sha256(str(HERE).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"instanthmr-dev-repo-{key}"
    link = folder / "instanthmr"
    folder.mkdir(exist_ok=True)
    if link.is_symlink() and link.resolve() == HERE:
        return folder
    try:
        link.symlink_to(HERE, target_is_directory=True)
    except FileExistsError:
        if not (link.is_symlink() and link.resolve() == HERE):  # a copy from an earlier run: refresh it
            _copy_checkout(link)
    except OSError:
        _copy_checkout(link)
    return folder


def _copy_checkout(link: Path) -> None:
    import shutil

    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.exists():
        shutil.rmtree(link)
    shutil.copytree(HERE, link,
                    ignore=shutil.ignore_patterns(".*", "tests", "testkit", "tools", "docs", "wheels", "dist"))


def _dev_module_name(bpy) -> str:
    """Register a source checkout through a local extension repo that links to it (no copy, no install)."""
    repos = bpy.context.preferences.extensions.repos
    repo = next((r for r in repos if r.module == DEV_REPO_MODULE), None)
    if repo is None:
        folder = _dev_repo_folder()
        repos.new(name="InstantHMR (source checkout)", module=DEV_REPO_MODULE, custom_directory=str(folder))
    return f"bl_ext.{DEV_REPO_MODULE}.instanthmr"


def _enable_addon():
    import addon_utils
    import bpy

    module_name = _installed_module_name(bpy) or _dev_module_name(bpy)
    if not addon_utils.check(module_name)[1]:
        errors = []
        addon_utils.enable(module_name, default_set=True, handle_error=errors.append)
        if errors or module_name not in sys.modules:
            reason = errors[0] if errors else "unknown error"
            hint = ""
            if isinstance(reason, ImportError) and reason.name in ("onnxruntime", "cv2"):
                hint = (" (its bundled libraries are installed with the extension: install the built zip, see "
                        "tools/build_extension.py, or run a source checkout in the dev venv: tools/capture.sh)")
            raise SystemExit(f"capture: error: the InstantHMR extension could not be enabled: {reason}{hint}")
    return sys.modules[module_name]


def main() -> int:
    args = _script_args()
    # A plain `python capture.py` puts this folder first on sys.path, where the extension's packages
    # (ui, operators, ...) would shadow real modules: they are only reached through the registered add-on.
    if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == HERE:
        sys.path.pop(0)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    try:
        import bpy  # noqa: F401
    except ImportError:
        print("capture: error: no Blender here: run `blender -b -P capture.py -- clip.mp4`, or use the dev venv "
              "(tools/setup_venv.sh) which has the bpy module", file=sys.stderr)
        return 2
    addon = _enable_addon()
    from importlib import import_module

    cli = import_module(addon.__name__ + ".cli")
    return cli.main(args)


def _remove_blender_tempdir() -> None:
    bpy = sys.modules.get("bpy")
    folder = Path(bpy.app.tempdir) if bpy is not None and getattr(bpy.app, "tempdir", "") else None
    if folder is not None and folder.name.startswith("blender_") and folder.is_dir():
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _main_interruptible() -> int:
    try:
        return main()
    except KeyboardInterrupt:  # Ctrl-C while Blender or the extension was still starting (cli/ handles the rest)
        print("capture: interrupted (Ctrl-C): nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    status = _main_interruptible()
    sys.stdout.flush()
    sys.stderr.flush()
    # bpy can hang at interpreter exit (after Rigify, for instance): leave with the real status right away,
    # removing Blender's session temp folder first (os._exit skips Blender's own cleanup of it).
    _remove_blender_tempdir()
    os._exit(status)
