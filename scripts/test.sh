#!/usr/bin/env bash
# Runs the whole test suite (creating .venv with the test tools on first use). Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
SENTINEL_EXTRAS=test,uvloop source scripts/venv.sh
exec .venv/bin/python -m pytest "$@"
