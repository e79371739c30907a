#!/usr/bin/env bash
# Installs trbert (first run only) and runs the main job on the embedded default: the whole TR-BERT
# recipe (fine-tune, policy, joint tuning, evaluation against the full model and truncation) with
# all-MiniLM-L6-v2 on BBC News, quick preset. Options pass through, e.g. `--preset full --report`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/trbert run "$@"
