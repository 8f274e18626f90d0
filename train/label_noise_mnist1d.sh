#!/usr/bin/env bash
# Appendix G at CPU scale: label noise 0, 10% and 20%, ConvNet k=16 on MNIST-1D, 150 epochs.
# ELRS: around the regime-1/2 boundary (default) or, with ELRS=1e-4,2e-4,5e-4 and
# PREFIX=runs/mnist1d-k16-lowelr-noise, well inside regime 1. About 8 minutes per 6 runs on 2 cores.
set -euo pipefail
EPOCHS=${EPOCHS:-150}
ELRS=${ELRS:-2e-3,5e-3,1e-2}
PREFIX=${PREFIX:-runs/mnist1d-k16-noise}
NOISES=${NOISES:-0 0.1 0.2}
for NOISE in $NOISES; do
  landscape sweep --elrs "$ELRS" -o "$PREFIX$NOISE" --width 16 --epochs "$EPOCHS" \
    --label-noise "$NOISE" --save-every 25 --device cpu -q "$@"
done
