#!/usr/bin/env bash
# Headless capture from a fresh clone: sets up the dev venv (Blender 4.5 as the bpy module), then runs
# capture.py, which registers the extension from this checkout and captures the clip into a .blend.
#   tools/capture.sh clip.mp4 [capture.py options]     (tools/capture.sh --help lists them)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/setup_venv.sh"
exec "$root/.venv/bin/python" "$root/capture.py" "$@"
