#!/usr/bin/env bash
# Creates venv/ beside this script and installs Kubin into it. Later runs do nothing unless
# requirements.txt or pyproject.toml changed (or --force is given). --cluster (or KUBIN_CLUSTER=1) adds
# requirements-cluster.txt: Ray Serve, to run the generation workers on a Ray cluster (kubin --cluster).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$DIR/venv"
STAMP="$VENV/.kubin-installed"
FORCE=0
CLUSTER="${KUBIN_CLUSTER:-0}"
# Once installed with --cluster, later runs (start.sh, update.sh) keep the cluster requirements.
[ -f "$VENV/.kubin-cluster" ] && CLUSTER=1
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --cluster) CLUSTER=1 ;;
    *) echo "install.sh: unknown option $arg (known: --force, --cluster)" >&2; exit 2 ;;
  esac
done

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
[ "$CLUSTER" = 1 ] && REQUIREMENTS+=("$DIR/requirements-cluster.txt")
want="$(cat "${REQUIREMENTS[@]}" | sha256sum | cut -d' ' -f1)"
if [ "$FORCE" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "Installing Kubin's requirements into $VENV (first run: a few minutes) ..."
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install -r "$DIR/requirements.txt"
if [ "$CUDA_EXTRAS" = 1 ]; then
  "$VENV/bin/python" -m pip install -r "$DIR/requirements-cuda.txt"
fi
if [ "$CLUSTER" = 1 ]; then
  "$VENV/bin/python" -m pip install -r "$DIR/requirements-cluster.txt"
  touch "$VENV/.kubin-cluster"
fi
"$VENV/bin/python" -m pip install --no-deps -e "$DIR"
echo "$want" > "$STAMP"
