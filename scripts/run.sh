#!/usr/bin/env bash
# Runs the daemon on sites.example.toml (creating .venv on first use). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
exec .venv/bin/sentinel run -c "${1:-sites.example.toml}"
