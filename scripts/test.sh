#!/usr/bin/env bash
# The test command of README and CI: set up .venv, lint with ruff, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
export TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=""
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --durations=15 tests "$@"
