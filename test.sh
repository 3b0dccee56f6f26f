#!/usr/bin/env bash
# Runs Kubin's whole test suite on a fresh clone: installs the app (install.sh), the test packages and
# Debian's chromium (for the browser tests), checks lint and format, then runs pytest.
# Arguments go to pytest, e.g. ./test.sh tests/unit -x
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$DIR"
# --cluster: Ray Serve too, for the cluster tests (a local Ray instance on the CPU).
./install.sh --cluster
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
# The tests run in parallel processes (pytest-xdist), one per CPU core up to 4 (KUBIN_TEST_WORKERS sets
# another count; 0 runs them in this process, as `-n 0` does), each test file on one worker so that its
# module fixtures (a loaded model, a started server) are made once.
WORKERS="${KUBIN_TEST_WORKERS:-$(venv/bin/python -c 'import os; print(min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))')}"
exec venv/bin/python -m pytest -n "$WORKERS" --dist loadfile "$@"
