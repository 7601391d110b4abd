#!/usr/bin/env bash
# Install reidkit with the tested versions into .venv and run the test suite.
# The README's test command and CI (.ci/run) both run exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
PYTHON="${PYTHON:-python3}"
VENV="${REIDKIT_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -c constraints.txt ".[test]"
# Installed (not editable) so the tests see exactly what users get from pip.
"$VENV/bin/python" -m pytest "$@"
