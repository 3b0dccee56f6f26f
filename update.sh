#!/usr/bin/env bash
# Pulls the latest Kubin and reinstalls its requirements.
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
git -C "$DIR" pull --ff-only
"$DIR/install.sh" --force
