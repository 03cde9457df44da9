#!/usr/bin/env bash
# Set up (.venv) and run the whole pipeline on the embedded dataset; extra arguments go to `automl run`,
# e.g. ./run.sh --set search.time_limit=120
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/automl run "$@"
