#!/usr/bin/env bash
# Installs trbert (first run only) and runs the main job on the embedded default model (MiniLM-L6).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/trbert speed "$@"
