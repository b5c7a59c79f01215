#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite (unit, integration, reliability), as CI does.
#   bash scripts/test.sh            (extra pytest arguments are passed on, e.g. -m reliability)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q tests "$@"
