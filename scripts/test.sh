#!/usr/bin/env bash
# Runs the whole test suite (creating .venv with the test tools on first use). Extra arguments go
# to pytest. Without arguments the suite runs in SENTINEL_TEST_WORKERS processes (pytest-xdist,
# default 4, one test file per worker at a time so a file's servers start once): most slow tests
# wait on daemons, mail and Alertmanager timers rather than use the CPU, so 4 workers on 2 cores
# overlap those waits. With arguments (a file, -k, -x) it runs in one process, as before.
set -euo pipefail
cd "$(dirname "$0")/.."
SENTINEL_EXTRAS=test,uvloop source scripts/venv.sh
if [ "$#" -eq 0 ]; then
  exec .venv/bin/python -m pytest -n "${SENTINEL_TEST_WORKERS:-4}" --dist loadfile
fi
exec .venv/bin/python -m pytest "$@"
