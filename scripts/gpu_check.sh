#!/usr/bin/env bash
# Device check: short AMP trainings (dual encoder, CRET with GEES and with NCE) on SynthVTT at a larger size, GPU
# query latency at a 1,000-video gallery, CRET step time with GEES vs NCE at 4 and 16 frames (one table), and CLIP
# ViT-B/32 sizing (random init, dual_seq, 12 frames of 224 px, batch 16-128: step time and peak memory).
# Needs one GPU and the repo; under 6 minutes on one H100. CPU test mode: scripts/gpu_check.sh --tiny
#   scripts/gpu_check.sh [--tiny] [--out DIR] [--device auto|cpu|cuda]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

# A Python that has the dependencies: $PYTHON, else .venv, else the system one (e.g. a CUDA PyTorch image); when none
# has them, create .venv (it sees the system packages, so a preinstalled CUDA torch is reused) and install the repo.
has_deps() { "$1" -c "import torch, transformers, datasets, vtrbench" >/dev/null 2>&1; }
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]] && has_deps .venv/bin/python; then
    PY=.venv/bin/python
  elif has_deps python3; then
    PY=python3
  else
    [[ -x .venv/bin/python ]] || python3 -m venv --system-site-packages .venv
    .venv/bin/pip install --quiet -e . || .venv/bin/pip install --quiet --no-deps -e .
    PY=.venv/bin/python
  fi
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu only')"
exec "$PY" -m vtrbench.gpu_check "$@"
