#!/usr/bin/env bash
# Install reidkit with the tested versions into .venv and run the test suite.
# The README's test command and CI (.ci/run) both run exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
PYTHON="${PYTHON:-python3}"
VENV="${REIDKIT_VENV:-.venv}"
QUIET=--quiet  # a rerun only refreshes reidkit: no need to list every package again
[ -x "$VENV/bin/python" ] || { "$PYTHON" -m venv "$VENV"; QUIET=; }
"$VENV/bin/python" -m pip install --quiet --upgrade pip
[ -n "$QUIET" ] || echo "Installing reidkit with the tested versions into $VENV: about 6 GB (torch brings its CUDA wheels even on a CPU-only machine), a few minutes on the first run." >&2
"$VENV/bin/python" -m pip install $QUIET --progress-bar on -c constraints.txt ".[test]"
# Installed (not editable) so the tests see exactly what users get from pip.
"$VENV/bin/python" -m pytest "$@"
