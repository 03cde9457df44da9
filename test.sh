#!/usr/bin/env bash
# Set up (.venv) and run the test suite; extra arguments go to pytest, e.g. ./test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
