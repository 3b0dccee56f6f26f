#!/usr/bin/env bash
# Creates venv/ beside this script and installs Kubin into it. Later runs do nothing unless
# requirements.txt or pyproject.toml changed (or --force is given).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$DIR/venv"
STAMP="$VENV/.kubin-installed"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Kubin needs Python 3.10 or newer; set PYTHON=/path/to/python3.x")'
  echo "Creating $VENV ..."
  "$PYTHON" -m venv "$VENV"
fi

# CUDA-only extras (bitsandbytes) where an NVIDIA driver is present; KUBIN_CUDA_EXTRAS=1/0 decides instead.
CUDA_EXTRAS="${KUBIN_CUDA_EXTRAS:-}"
if [ -z "$CUDA_EXTRAS" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then CUDA_EXTRAS=1; else CUDA_EXTRAS=0; fi
fi
REQUIREMENTS=("$DIR/requirements.txt" "$DIR/pyproject.toml")
[ "$CUDA_EXTRAS" = 1 ] && REQUIREMENTS+=("$DIR/requirements-cuda.txt")
want="$(cat "${REQUIREMENTS[@]}" | sha256sum | cut -d' ' -f1)"
if [ "${1:-}" != "--force" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "Installing Kubin's requirements into $VENV (first run: a few minutes) ..."
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install -r "$DIR/requirements.txt"
if [ "$CUDA_EXTRAS" = 1 ]; then
  "$VENV/bin/python" -m pip install -r "$DIR/requirements-cuda.txt"
fi
"$VENV/bin/python" -m pip install --no-deps -e "$DIR"
echo "$want" > "$STAMP"
