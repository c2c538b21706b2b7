#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv and installs the package
# with its test extra from setup.cfg. Idempotent: a second call only re-installs the package.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet -e ".[test]"
