#!/usr/bin/env bash
# Creates .venv (once) and installs sentinel into it, editable, with the extras in $SENTINEL_EXTRAS:
# run.sh needs only what running needs ("uvloop"), test.sh adds the test tools ("test,uvloop").
# Sourced by the others. pip's own output shows the progress (the first install takes a while).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
extras=${SENTINEL_EXTRAS:-uvloop}
if [ ! -x .venv/bin/python ]; then
  echo "venv.sh: creating .venv with $PY (first run only)" >&2
  "$PY" -m venv .venv
fi
# Re-install when pyproject.toml changed since the last install with these extras (an install
# with the test tools also has everything running needs).
stamp=".venv/.sentinel-installed-${extras//,/-}"
fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ]; }
if ! fresh "$stamp" && ! { [ "$extras" = uvloop ] && fresh .venv/.sentinel-installed-test-uvloop; }; then
  echo "venv.sh: installing sentinel[$extras] into .venv" >&2
  .venv/bin/python -m pip install --progress-bar off -e ".[$extras]" >&2
  touch "$stamp"
  echo "venv.sh: done" >&2
fi
