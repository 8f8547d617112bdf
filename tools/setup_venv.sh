#!/usr/bin/env bash
# Create or update a venv of this checkout (Python 3.11), saying what it does while it works.
#   tools/setup_venv.sh            .venv, for development and tests: requirements-dev.txt (the runtime plus
#                                  PyTorch, rfdetr, onnx, pytest, ruff): about 2.7 GB, several minutes
#   tools/setup_venv.sh --capture  .venv-capture, for the headless capture only (tools/capture.sh):
#                                  requirements.txt (Blender 4.5 as the bpy module, numpy, ONNX Runtime, OpenCV)
# Idempotent: when the requirements have not changed since the last run, it returns at once, silently.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${1:-}" = "--capture" ]; then
  venv="${INSTANTHMR_CAPTURE_VENV:-$root/.venv-capture}"
  req="$root/requirements.txt"
  purpose="the headless capture (Blender 4.5 as the bpy module, ONNX Runtime, OpenCV; no PyTorch)"
  modules="bpy numpy onnxruntime cv2"
elif [ -z "${1:-}" ]; then
  venv="${INSTANTHMR_VENV:-$root/.venv}"
  req="$root/requirements-dev.txt"
  purpose="development and tests (the capture runtime plus PyTorch, rfdetr, onnx, pytest, ruff)"
  modules="bpy numpy onnxruntime cv2 onnx pytest torch torchvision rfdetr"
else
  echo "setup_venv: unknown option $1 (use --capture for the capture-only venv, nothing for the dev venv)" >&2
  exit 2
fi

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
want="$( (cat "$req" "$root/requirements.txt"; "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

SECONDS=0
echo "setup_venv: setting up $venv for $purpose; this happens once, later runs start at once" >&2
echo "setup_venv: [1/3] creating the venv with $("$python" --version)" >&2
"$python" -m venv "$venv"
echo "setup_venv: [2/3] downloading and installing $(basename "$req") (bpy alone is a 373 MB download):" >&2
set +e
"$venv/bin/python" -m pip install --disable-pip-version-check --no-cache-dir --progress-bar off -r "$req" 2>&1 \
  | grep --line-buffered -E '^(Collecting|  Downloading|Installing collected|Successfully installed|ERROR)' \
  | sed -u -e 's/ (from .*)$//' -e 's/^ *Downloading \([^ ]*\) (\(.*\))$/  downloading \1 (\2)/' \
         -e 's/^Installing collected packages: /unpacking and installing (the longest step, quiet until done): /' \
         -e 's/^/setup_venv:   /' >&2
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "setup_venv: pip failed (exit status $status): see the lines above; run tools/setup_venv.sh ${1:-} again" >&2
  exit 1
fi
echo "setup_venv: [3/3] checking that everything imports" >&2
"$venv/bin/python" - $modules <<'PY'
import importlib.util, sys
missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]
if missing:
    sys.exit("setup_venv: these packages failed to install: " + ", ".join(missing))
PY
echo "$want" > "$stamp"
echo "setup_venv: ready in ${SECONDS} s: $venv ($(du -sh "$venv" | cut -f1))" >&2
