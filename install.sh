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

want="$(cat "$DIR/requirements.txt" "$DIR/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "${1:-}" != "--force" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "Installing Kubin's requirements into $VENV (first run: a few minutes) ..."
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install -r "$DIR/requirements.txt"
"$VENV/bin/python" -m pip install --no-deps -e "$DIR"
echo "$want" > "$STAMP"
