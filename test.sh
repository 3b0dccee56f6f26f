#!/usr/bin/env bash
# Runs Kubin's whole test suite on a fresh clone: installs the app (install.sh), the test packages and
# Debian's chromium (for the browser tests), checks lint and format, then runs pytest.
# Arguments go to pytest, e.g. ./test.sh tests/unit -x
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$DIR"
./install.sh
# requirements-cuda.txt too: the bitsandbytes code paths are tested here, even without a GPU.
venv/bin/python -m pip install -q -r requirements-test.txt -r requirements-extensions.txt -r requirements-cuda.txt

if ! command -v chromium >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests ..."
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi

venv/bin/ruff format --check src tests extensions benchmarks
venv/bin/ruff check src tests extensions benchmarks
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec venv/bin/python -m pytest "$@"
