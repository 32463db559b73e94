#!/usr/bin/env bash
# GPU check for a machine with one NVIDIA GPU (under 5 minutes): bash bench/gpu_check.sh
# Uses $PYTHON (default: .venv/bin/python, else python3) with a CUDA build of torch, e.g.
#   pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
# recu_core's pure-Python needs (pydantic, pydantic-settings, simplejpeg) can travel as
# wheels in .whl/ (installed here into /tmp/site when present), and CIFAR-10 as
# var/cifar10-jpeg.tar.gz (a copy of the shared archive) for the short training run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA GPU')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
ARCHIVE=()
[ -f var/cifar10-jpeg.tar.gz ] && ARCHIVE=(--cifar-archive var/cifar10-jpeg.tar.gz)
PYTHONUNBUFFERED=1 timeout 300 "$PYTHON" -m bench.gpu_check "${ARCHIVE[@]}" "$@"
