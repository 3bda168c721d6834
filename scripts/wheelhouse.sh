#!/usr/bin/env bash
# Downloads the wheels sentinel needs to run (and setuptools to build it) into .wheelhouse/, for
# the system Python (/usr/bin/python3, the one README's install uses). The real-systemd test
# installs sentinel from them inside a machine that has only loopback: pip install --no-index
# --find-links .wheelhouse. Re-run after changing the dependencies in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${SYSTEM_PYTHON:-/usr/bin/python3}
stamp=.wheelhouse/.complete
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
echo "wheelhouse: downloading sentinel's runtime wheels for $PY into .wheelhouse/" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
rm -rf .wheelhouse
"$tmp/venv/bin/python" -m pip wheel --progress-bar off --wheel-dir .wheelhouse \
  '.[uvloop]' 'setuptools>=77'
# sentinel itself is installed from its source tree, as README says; only its dependencies stay.
rm -f .wheelhouse/sentinel-*.whl
touch "$stamp"
