#!/usr/bin/env bash
# The main job of README's quick start: set up .venv, then run transfusion-demo
# (extra arguments are passed on, e.g. --quick or --output_dir=DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# transfusion-demo keeps TensorFlow's C++ and Python log chatter off the console itself.
.venv/bin/transfusion-demo "$@"
