"""Validate the manifest and build the extension zips (one per platform) with Blender's own extension tool.

Blender's `blender_ext.py` ships inside the `bpy` wheel and runs under plain Python, so no Blender binary is
needed. The wheels are fetched (and verified) first. Usage:

    .venv/bin/python tools/build_extension.py [--output-dir dist] [--validate-only]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import fetch_wheels  # noqa: E402


class BuildError(RuntimeError):
    pass


def blender_ext_tool() -> Path:
    """Path of Blender's extension CLI inside the installed `bpy` package (found without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the `bpy` package is not installed in this Python: run tools/setup_venv.sh and use "
                         ".venv/bin/python")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    raise BuildError("blender_ext.py not found inside the bpy package")


def _run(args: list[str]) -> str:
    result = subprocess.run([sys.executable, str(blender_ext_tool()), *args], capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise BuildError(f"blender_ext {args[0]} failed:\n{output}")
    return output


def validate() -> str:
    return _run(["validate", str(ROOT)])


def build(output_dir: Path) -> list[Path]:
    """Build `instanthmr-<version>-<platform>.zip` for every platform in the manifest into output_dir."""
    if fetch_wheels.main(["--quiet"]) != 0:
        raise BuildError("the bundled wheels could not be fetched (see the message above)")
    validate()
    output_dir.mkdir(parents=True, exist_ok=True)
    for old in output_dir.glob("instanthmr-*.zip"):
        old.unlink()
    _run(["build", "--source-dir", str(ROOT), "--output-dir", str(output_dir), "--split-platforms"])
    zips = sorted(output_dir.glob("instanthmr-*.zip"))
    if not zips:
        raise BuildError(f"blender_ext build wrote no zip into {output_dir}")
    return zips


def zip_for_this_platform(zips: list[Path]) -> Path:
    """The built zip a Blender on this machine installs."""
    import platform

    machine = {"x86_64": "x64", "amd64": "x64", "arm64": "arm64", "aarch64": "arm64"}[platform.machine().lower()]
    system = {"linux": "linux", "win32": "windows", "darwin": "macos"}[sys.platform]
    suffix = f"-{system}_{machine}.zip"
    for path in zips:
        if path.name.endswith(suffix):
            return path
    raise BuildError(f"no built zip for {system}-{machine} among {[p.name for p in zips]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "dist")
    parser.add_argument("--validate-only", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.validate_only:
            print(validate())
            return 0
        for path in build(args.output_dir.resolve()):
            print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")
    except BuildError as exc:
        print(f"build_extension: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
