#!/usr/bin/env bash
# Runs the daemon on sites.example.toml (or the config given), creating .venv on first use with
# only what running needs. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
SENTINEL_EXTRAS=uvloop source scripts/venv.sh
exec .venv/bin/sentinel run -c "${1:-sites.example.toml}"
