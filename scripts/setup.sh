#!/usr/bin/env bash
# Create .venv and install dfrobust into it (editable, with the test extra) when needed.
# Idempotent: a second call does nothing unless pyproject.toml changed.
# Extras: DFROBUST_EXTRAS="test,faceswap,bench" scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
extras=${DFROBUST_EXTRAS:-test}
stamp=".venv/.installed-${extras//,/-}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "error: dfrobust needs Python >= 3.10 (found $("$py" --version 2>&1)); set PYTHON=python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$py" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing dfrobust[$extras] into .venv (first time: a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
  touch "$stamp"
fi
