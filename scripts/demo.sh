#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded default: the real Gemma 3 270M.
#   bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
python train/demo.py
