"""Fetch the exact PyPI wheels the extension bundles, and keep the manifest's `wheels` list in step.

Default: download every wheel pinned in `wheels/lock.json` into `wheels/`, verifying each SHA-256
(files already there with the right hash are kept, so a second run only hashes). `--update` resolves the
pins below against the registry's JSON simple API (PEP 691), rewrites the lock and the manifest list.

Blender lines and their Python (measured from the `bpy` wheels' metadata, see README):
  4.2 LTS, 4.5 LTS, 5.0 -> CPython 3.11, numpy 1.26;  5.1 and later -> CPython 3.13, numpy 2.x.
onnxruntime 1.23.2 is the newest release with wheels for all four platforms (1.24+ dropped macOS x64) and it
imports with numpy 1.26 and 2.x; opencv-python-headless 4.11.0.86 is abi3 (one wheel per platform for every
Python) and the newest that works with numpy 1.26. pycolmap 4.2.1 (COLMAP's bindings, the camera solve) has no
Intel Mac wheel: the macos-x64 zip goes without it and the add-on says so when a camera solve is asked for there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS_DIR = ROOT / "wheels"
LOCK_PATH = WHEELS_DIR / "lock.json"
MANIFEST_PATH = ROOT / "blender_manifest.toml"
INDEX_URL = os.environ.get("INSTANTHMR_INDEX_URL", "https://pypi.org/simple")

PACKAGES = {"onnxruntime": "1.23.2", "opencv-python-headless": "4.11.0.86", "pycolmap": "4.2.1"}
#: Platforms a package publishes no wheel for: its zip goes without it (the add-on names the missing feature).
MISSING_ALLOWED = {"pycolmap": {"macos-x64"}}
# CPython of each supported Blender line.
PYTHONS = {"cp311": "Blender 4.2 - 5.0", "cp313": "Blender 5.1+"}
# Blender platform -> (platform-tag suffix a wheel must end with, tag prefix).
PLATFORMS = {
    "linux-x64": ("manylinux", "_x86_64"),
    "windows-x64": ("win_amd64", ""),
    "macos-arm64": ("macosx", "_arm64"),
    "macos-x64": ("macosx", "_x86_64"),
}


class FetchError(RuntimeError):
    pass


def _parse_wheel_name(filename: str) -> tuple[str, str, str]:
    """`pkg-1.0-cp311-cp311-win_amd64.whl` -> (python tag, abi tag, platform tag)."""
    parts = filename[: -len(".whl")].split("-")
    return parts[-3], parts[-2], parts[-1]


def _platform_matches(platform_tag: str, blender_platform: str) -> bool:
    prefix, suffix = PLATFORMS[blender_platform]
    return any(tag.startswith(prefix) and tag.endswith(suffix) for tag in platform_tag.split("."))


def _python_matches(python_tag: str, abi_tag: str, cpython: str) -> bool:
    if python_tag == cpython and abi_tag == cpython:
        return True
    if abi_tag == "abi3" and python_tag.startswith("cp3"):
        return int(python_tag[3:]) <= int(cpython[3:])
    return False


def _index_files(package: str) -> list[dict]:
    request = urllib.request.Request(
        f"{INDEX_URL}/{package}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["files"]


def resolve_lock() -> list[dict]:
    """One wheel per (package, platform, Python), chosen from the registry; raises if any is missing."""
    entries: dict[str, dict] = {}
    for package, version in PACKAGES.items():
        norm = re.sub(r"[-_.]+", "_", package).lower()
        files = [
            f for f in _index_files(package)
            if f["filename"].endswith(".whl") and f["filename"].lower().startswith(f"{norm}-{version}-")
        ]
        for blender_platform in PLATFORMS:
            for cpython in PYTHONS:
                matches = []
                for f in files:
                    python_tag, abi_tag, platform_tag = _parse_wheel_name(f["filename"])
                    if _platform_matches(platform_tag, blender_platform) and _python_matches(
                        python_tag, abi_tag, cpython
                    ):
                        matches.append(f)
                if not matches and blender_platform in MISSING_ALLOWED.get(package, ()):
                    continue
                if not matches:
                    raise FetchError(f"no {package}=={version} wheel for {blender_platform} / {cpython}")
                # Prefer the most specific wheel: exact CPython tag over abi3, then the newest tag name.
                best = sorted(matches, key=lambda f: (_parse_wheel_name(f["filename"])[1] != "abi3",
                                                      f["filename"]))[-1]
                entries[best["filename"]] = {
                    "filename": best["filename"],
                    "url": best["url"],
                    "sha256": best["hashes"]["sha256"],
                    "size": best.get("size"),
                }
    return sorted(entries.values(), key=lambda e: e["filename"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(entry: dict, dest: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=".fetch-", dir=dest.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry["url"], timeout=120) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != entry["sha256"]:
            raise FetchError(
                f"{entry['filename']}: SHA-256 mismatch (expected {entry['sha256']}, got {digest.hexdigest()})"
            )
        os.replace(tmp_name, dest)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def fetch(lock: list[dict], *, quiet: bool = False) -> list[Path]:
    """Make `wheels/` hold exactly the locked wheels (verified); stale wheels are removed."""
    WHEELS_DIR.mkdir(exist_ok=True)
    wanted = {e["filename"] for e in lock}
    for stale in WHEELS_DIR.glob("*.whl"):
        if stale.name not in wanted:
            stale.unlink()
    paths = []
    for entry in lock:
        dest = WHEELS_DIR / entry["filename"]
        if dest.exists() and _sha256(dest) == entry["sha256"]:
            paths.append(dest)
            continue
        if not quiet:
            size = f"{entry['size'] / 1e6:.0f} MB" if entry.get("size") else "?"
            print(f"fetch_wheels: downloading {entry['filename']} ({size})", file=sys.stderr)
        _download(entry, dest)
        paths.append(dest)
    return paths


def manifest_wheels_block(lock: list[dict]) -> str:
    lines = ["wheels = ["] + [f'  "./wheels/{e["filename"]}",' for e in lock] + ["]"]
    return "\n".join(lines)


def write_manifest(lock: list[dict]) -> bool:
    """Replace the list between the BEGIN/END WHEELS markers; returns True when the file changed."""
    text = MANIFEST_PATH.read_text()
    pattern = re.compile(r"(# BEGIN WHEELS\n).*?(\n# END WHEELS)", re.S)
    if not pattern.search(text):
        raise FetchError(f"{MANIFEST_PATH.name}: the '# BEGIN WHEELS' / '# END WHEELS' markers are missing")
    new = pattern.sub(lambda m: m.group(1) + manifest_wheels_block(lock) + m.group(2), text)
    if new != text:
        MANIFEST_PATH.write_text(new)
        return True
    return False


def load_lock() -> list[dict]:
    if not LOCK_PATH.exists():
        raise FetchError(f"{LOCK_PATH} is missing: run `tools/fetch_wheels.py --update`")
    return json.loads(LOCK_PATH.read_text())["wheels"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true",
                        help="re-resolve the pinned versions from the registry and rewrite lock + manifest")
    parser.add_argument("--check", action="store_true",
                        help="only check that the manifest's wheels list matches the lock (no download)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.update:
            lock = resolve_lock()
            LOCK_PATH.write_text(json.dumps(
                {"packages": PACKAGES, "pythons": PYTHONS, "platforms": list(PLATFORMS), "wheels": lock},
                indent=2) + "\n")
        else:
            lock = load_lock()
        if args.check:
            if manifest_wheels_block(lock) not in MANIFEST_PATH.read_text():
                raise FetchError("blender_manifest.toml's wheels list differs from wheels/lock.json: "
                                 "run `tools/fetch_wheels.py`")
            return 0
        if write_manifest(lock) and not args.quiet:
            print("fetch_wheels: updated the wheels list in blender_manifest.toml", file=sys.stderr)
        paths = fetch(lock, quiet=args.quiet)
    except (FetchError, OSError) as exc:
        print(f"fetch_wheels: error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        total = sum(p.stat().st_size for p in paths) / 1e6
        print(f"fetch_wheels: {len(paths)} wheels ready in wheels/ ({total:.0f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
