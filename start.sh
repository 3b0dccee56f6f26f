#!/usr/bin/env bash
# Installs Kubin on first run (see install.sh) and starts it; arguments go to `python -m kubin`.
# Examples: ./start.sh --model tiny-kd22      ./start.sh --port 7861      ./start.sh models
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$DIR/install.sh"
exec "$DIR/venv/bin/python" -m kubin "$@"
