#!/usr/bin/env bash
# GPU check for a machine with one CUDA GPU (runs in well under 5 minutes):
#   bash bench/gpu_check.sh
# Uses $PYTHON (default: .venv/bin/python, else python3) with a CUDA build of torch, e.g.
#   pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA GPU')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 300 "$PYTHON" -m bench.gpu_check
