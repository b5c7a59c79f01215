#!/usr/bin/env bash
# Create .venv and install Gemma-Embed with everything the demo and the tests need. Safe to re-run.
#   bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch pulls a several-GB CUDA build from the registry
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[train,demo,dev]"
