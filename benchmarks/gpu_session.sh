#!/usr/bin/env bash
# The GPU measurement in one call of the device tool, correctness before timing:
#   run(command="bash benchmarks/gpu_session.sh", timeout_s=560)
# Everything lands under $OUT (the device tool's folder; /tmp/gpu-out elsewhere): gpu.txt (the
# card), gpu_check.json/.log, gpu_speed.json/.log. gpu_speed.json is rewritten after every
# figure, so a run cut short keeps what it measured. The machine's own PyTorch is used; the
# package runs from the working tree (no install: that machine reaches no registry).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch, torchvision, h5py; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'h5py', h5py.__version__)"
} 2>&1 | tee "$OUT/gpu.txt"
timeout "${CHECK_SECONDS:-150}" $PY benchmarks/gpu_check.py --json "$OUT/gpu_check.json" ${CHECK_ARGS:-} 2>&1 | tee "$OUT/gpu_check.log"
timeout "${SPEED_SECONDS:-380}" $PY benchmarks/gpu_speed.py --json "$OUT/gpu_speed.json" --resnet18 ${SPEED_ARGS:-} 2>&1 \
  | grep -v -i "warn" | tee "$OUT/gpu_speed.log"
echo "done: $(ls "$OUT")"
