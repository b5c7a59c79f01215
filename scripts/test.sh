#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite (unit, integration, reliability), as CI does.
#   bash scripts/test.sh            (extra pytest arguments are passed on, e.g. -m reliability)
#   GEMMA_EMBED_PRECISION=bf16 bash scripts/test.sh -m precision    (the precision-sensitive tests, forced to bf16)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m gemma_embed.precision   # the CPU model and the precision the suite runs in
python -m pytest -q tests "$@"
