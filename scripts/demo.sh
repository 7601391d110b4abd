#!/usr/bin/env bash
# Install reidkit with the tested versions into .venv and run the main job on the synthetic world:
# adapt -> expand (recolor) -> train with and without the expansion -> evaluate, side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
PYTHON="${PYTHON:-python3}"
VENV="${REIDKIT_VENV:-.venv}"
QUIET=--quiet  # a rerun only refreshes reidkit: no need to list every package again
[ -x "$VENV/bin/python" ] || { "$PYTHON" -m venv "$VENV"; QUIET=; }
"$VENV/bin/python" -m pip install --quiet --upgrade pip
[ -n "$QUIET" ] || echo "Installing reidkit with the tested versions into $VENV: about 6 GB (torch brings its CUDA wheels even on a CPU-only machine), a few minutes on the first run." >&2
"$VENV/bin/python" -m pip install $QUIET --progress-bar on -c constraints.txt .
"$VENV/bin/reidkit" demo --out demo-output "$@"
