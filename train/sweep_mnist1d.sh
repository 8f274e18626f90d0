#!/usr/bin/env bash
# The ELR sweep behind Figures 1, 3 (left), 4 and 6 at CPU scale: ConvNet k=16 on MNIST-1D,
# {1,2,5}x10^-k for k = 0..5 (18 ELRs), one initialisation and batch order, 150 epochs.
# About 10 minutes on a 2-core CPU. Re-running continues an interrupted sweep.
set -euo pipefail
OUT=${OUT:-runs/mnist1d-k16}
EPOCHS=${EPOCHS:-150}
landscape sweep --elrs 1e-5:5 -o "$OUT" --width 16 --epochs "$EPOCHS" --save-every 25 --device cpu -q "$@"
