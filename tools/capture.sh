#!/usr/bin/env bash
# Headless capture from a fresh clone: sets up .venv-capture (Blender 4.5 as the bpy module, ONNX Runtime, OpenCV;
# no PyTorch) the first time, then runs capture.py, which registers the extension from this checkout and
# captures the clip into a .blend.
#   tools/capture.sh clip.mp4 --out ~/clip.blend [capture.py options]     (tools/capture.sh --help lists them)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/setup_venv.sh" --capture
exec "${INSTANTHMR_CAPTURE_VENV:-$root/.venv-capture}/bin/python" "$root/capture.py" "$@"
