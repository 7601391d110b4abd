#!/usr/bin/env bash
# Install reidkit with the tested versions into .venv and run the main job on the synthetic world.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
PYTHON="${PYTHON:-python3}"
VENV="${REIDKIT_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -c constraints.txt .
mkdir -p demo-output
"$VENV/bin/reidkit" adapt synthetic --out demo-output/world.h5 --force
"$VENV/bin/reidkit" info demo-output/world.h5 --preview demo-output/world-preview.png
