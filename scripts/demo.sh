#!/usr/bin/env bash
# Install reidkit with the tested versions into .venv and run the main job on the synthetic world:
# adapt -> expand (recolor) -> train with and without the expansion -> evaluate, side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
PYTHON="${PYTHON:-python3}"
VENV="${REIDKIT_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -c constraints.txt .
"$VENV/bin/reidkit" demo --out demo-output "$@"
