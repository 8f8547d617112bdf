#!/usr/bin/env bash
# Create or update .venv (Python 3.11) with bpy 4.5 and the pinned test/runtime dependencies.
# Idempotent: when requirements-dev.txt has not changed since the last run, it returns at once.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${INSTANTHMR_VENV:-$root/.venv}"
req="$root/requirements-dev.txt"

python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 "$HOME/.pyenv/versions/3.11.7/bin/python3.11" python3; do
    if command -v "$candidate" >/dev/null 2>&1 && \
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "setup_venv: Python 3.11 not found (bpy 4.5 needs exactly 3.11); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

stamp="$venv/.instanthmr-requirements.sha256"
want="$( (cat "$req"; "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "setup_venv: creating $venv with $("$python" --version) ..." >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir -r "$req" 2>&1 \
  | grep -v "^WARNING: Location" >&2 || true
# pip's exit status is lost in the pipe above: check the result directly.
"$venv/bin/python" - <<'PY'
import importlib.util, sys
missing = [m for m in ("bpy", "numpy", "onnxruntime", "cv2", "onnx", "pytest", "torch", "torchvision", "rfdetr") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit("setup_venv: these packages failed to install: " + ", ".join(missing))
PY
echo "$want" > "$stamp"
echo "setup_venv: ready" >&2
