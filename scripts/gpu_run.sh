#!/usr/bin/env bash
# On a GPU machine, with .gpu/ from scripts/gpu_prepare.sh beside the code: installs the carried wheels,
# widens MiniLM back to float32, then runs scripts/gpu_check.py (parity, speed, the BBC News model, long
# digests; about 6 minutes), its JSON files and log written to $OUT (default: gpu-out).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
${PYTHON:-python3} -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH="$PWD/src:/tmp/site" PYTHONUNBUFFERED=1
nvidia-smi 2>/dev/null --query-gpu=name,memory.total,driver_version --format=csv,noheader
${PYTHON:-python3} -c "
import torch
from transformers import AutoModel, AutoTokenizer
AutoModel.from_pretrained('.gpu/minilm', dtype=torch.float32).save_pretrained('/tmp/minilm')
AutoTokenizer.from_pretrained('.gpu/minilm').save_pretrained('/tmp/minilm')
print('torch', torch.__version__, 'cuda', torch.version.cuda)
" || exit 1
${PYTHON:-python3} scripts/gpu_check.py --backbone /tmp/minilm --run-dir /tmp/bbc-gpu --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
