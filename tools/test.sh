#!/usr/bin/env bash
# The whole test suite from a fresh clone: sets up what it needs, then lint, the engine tier (no Blender) and
# the real-Blender tier (the extension built, installed from its zip and enabled in bpy).
# INSTANTHMR_BLENDER_LINES picks the Blender lines (default: every supported line; "4.5" for a quick run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools/setup_venv.sh
.venv/bin/python tools/fetch_wheels.py --quiet

echo "== lint: ruff"
.venv/bin/ruff check .

echo "== engine tier (plain Python, no Blender)"
.venv/bin/python -m pytest -p no:cacheprovider tests/engine

echo "== real-Blender tier"
# shellcheck disable=SC2086
.venv/bin/python tools/blender_matrix.py ${INSTANTHMR_BLENDER_LINES:---all}
