"""Run the real-Blender test tier against one or more Blender versions (the `bpy` wheels from PyPI).

Each version gets its own venv, `.venv-bpy-<version>`, holding only bpy, Blender's numpy and the test tools:
onnxruntime and OpenCV are deliberately absent, so the tests prove the extension's bundled wheels are what
Blender imports. The venvs are reused (a stamp records what they hold), so a second run only runs the tests.

Disk: a line needs about 1.1 GB for its venv and 0.8 GB while its tests run (the built zips, the installed
extension, pytest's temporary files); all of the latter is removed when the line is done. When free space is
short, the other lines' venvs are removed before a new one is created (a 2-core CI machine may have only a few
GB), and pip keeps no cache.

    python tools/blender_matrix.py                   # 4.5 LTS (what CI always runs)
    python tools/blender_matrix.py --all             # 4.2 LTS, 4.5 LTS, 5.0 and 5.2 (Python 3.13)
    python tools/blender_matrix.py 5.0 -- -k wheels    # extra pytest arguments after --
    python tools/blender_matrix.py 4.5 -- tests/blender/test_capture_cli.py   # only that file
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_REQUIREMENTS = ROOT / "tests" / "blender" / "requirements.txt"


@dataclass(frozen=True)
class BlenderLine:
    bpy: str       # the bpy wheel version
    python: str    # the CPython it is built for
    numpy: str     # the numpy that Blender line ships


LINES = {
    "4.2": BlenderLine("4.2.23", "3.11", "1.26.4"),
    "4.5": BlenderLine("4.5.15", "3.11", "1.26.4"),
    "5.0": BlenderLine("5.0.1", "3.11", "1.26.4"),
    # bpy 5.1+ is built for CPython 3.13 and asks for numpy>=2.2,<3.
    "5.2": BlenderLine("5.2.3", "3.13", "2.3.5"),
}
DEFAULT = ("4.5",)
GB = 1024 ** 3
# Free space wanted before creating a line's venv: the venv (1.1 GB; bpy's wheel needs another 0.4 GB while it
# installs) and the line's test run (0.8 GB at its peak), plus a margin. Measured on a 5.5 GB disk: the whole
# suite peaked at 4.9 GB with this rule.
SPACE_FOR_A_LINE = 2.5 * GB


def find_python(version: str) -> str | None:
    """A working `python<version>`: on PATH, or installed by pyenv (whose shims fail for inactive versions)."""
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(p / "bin" / f"python{version}") for p in sorted(pyenv_root.glob(f"{version}.*"), reverse=True)]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(int(v) for v in version.split("."))):
            return candidate
    return None


def ensure_venv(line: BlenderLine) -> Path:
    """Create (or reuse) the venv for one Blender line; returns its python."""
    venv = ROOT / f".venv-bpy-{line.bpy}"
    python = venv / "bin" / "python"
    requirements = [f"bpy=={line.bpy}", f"numpy=={line.numpy}", *_test_requirements()]
    stamp = venv / ".instanthmr-stamp"
    want = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    base = find_python(line.python)
    if base is None:
        raise RuntimeError(f"Python {line.python} not found (bpy {line.bpy} needs it)")
    make_room(keep=venv)
    print(f"blender_matrix: creating {venv.name} (Python {line.python}, bpy {line.bpy})", file=sys.stderr)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir",
         *requirements],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)  # a half-installed bpy is ~1 GB of nothing
        raise RuntimeError(f"installing bpy {line.bpy} failed ({free_gb():.1f} GB free now):\n"
                           f"{_pip_errors(result.stderr)}")
    stamp.write_text(want)
    return python


def free_bytes() -> int:
    return shutil.disk_usage(ROOT).free


def free_gb() -> float:
    return free_bytes() / GB


def make_room(keep: Path, need: float = SPACE_FOR_A_LINE) -> None:
    """When free space is short, remove the venvs of the other Blender lines (they are rebuilt on demand)."""
    if free_bytes() >= need:
        return
    for other in sorted(ROOT.glob(".venv-bpy-*")):
        if other == keep or not other.is_dir():
            continue
        print(f"blender_matrix: {free_gb():.1f} GB free; removing {other.name} to make room", file=sys.stderr)
        shutil.rmtree(other, ignore_errors=True)
        if free_bytes() >= need:
            return
    if free_bytes() < need:
        print(f"blender_matrix: warning: only {free_gb():.1f} GB free; a Blender line needs about "
              f"{need / GB:.1f} GB (its venv and its test run)", file=sys.stderr)


def _pip_errors(stderr: str) -> str:
    """pip's error lines without its noise about the registry mirrors it cannot see."""
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("WARNING: Location")]
    return "\n".join(lines)[-3000:]


def _test_requirements() -> list[str]:
    return [
        line.strip() for line in TEST_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def run_line(name: str, pytest_args: list[str]) -> tuple[str, int, float]:
    line = LINES[name]
    start = time.monotonic()
    try:
        python = ensure_venv(line)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"blender_matrix: {name}: could not set up: {exc}", file=sys.stderr)
        return name, 3, time.monotonic() - start
    env = dict(os.environ, ORT_DISABLE_TELEMETRY="1")
    print(f"blender_matrix: Blender {name} (bpy {line.bpy}, Python {line.python}); {free_gb():.1f} GB free",
          file=sys.stderr, flush=True)
    # A basetemp of our own: the tier ends with os._exit (see tests/blender/conftest.py), which skips pytest's
    # cleanup of its numbered temp folders, so they would pile up (~0.6 GB a run) unless removed here.
    basetemp = Path(tempfile.mkdtemp(prefix=f"instanthmr-pytest-{name}-"))
    own_basetemp = not any(arg.startswith("--basetemp") for arg in pytest_args)
    extra = [f"--basetemp={basetemp}"] if own_basetemp else []
    # Test files or node ids among the arguments select what runs; otherwise the whole tier.
    chosen = [arg for arg in pytest_args if not arg.startswith("-") and "tests/blender" in arg.replace("\\", "/")]
    target = [] if chosen else [str(ROOT / "tests" / "blender")]
    try:
        status = subprocess.run(
            [str(python), "-m", "pytest", "-p", "no:cacheprovider", *extra, *target, *pytest_args],
            cwd=ROOT, env=env,
        ).returncode
    finally:
        if os.environ.get("INSTANTHMR_KEEP_TEST_FILES"):
            print(f"blender_matrix: kept {basetemp} (INSTANTHMR_KEEP_TEST_FILES is set)", file=sys.stderr)
        else:
            shutil.rmtree(basetemp, ignore_errors=True)
    return name, status, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in argv:
        pytest_args = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lines", nargs="*", help=f"Blender lines to test, among {', '.join(LINES)} (default 4.5)")
    parser.add_argument("--all", action="store_true", help="every supported line")
    args = parser.parse_args(argv)
    unknown = [name for name in args.lines if name not in LINES]
    if unknown:
        parser.error(f"unknown Blender line(s) {', '.join(unknown)}; known: {', '.join(LINES)}")
    names = list(LINES) if args.all else (args.lines or list(DEFAULT))
    results = [run_line(name, pytest_args) for name in names]
    print("\nBlender line | bpy     | Python | result | seconds")
    for name, status, seconds in results:
        line = LINES[name]
        verdict = "pass" if status == 0 else ("setup failed" if status == 3 else f"FAIL ({status})")
        print(f"{name:<12} | {line.bpy:<7} | {line.python:<6} | {verdict:<6} | {seconds:.0f}")
    return 0 if all(status == 0 for _, status, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
