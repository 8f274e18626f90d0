#!/usr/bin/env bash
# Appendix G at CPU scale: label noise 0, 10% and 20%, ELRs around the regime-1/2 boundary,
# ConvNet k=16 on MNIST-1D, 150 epochs. About 8 minutes on a 2-core CPU.
set -euo pipefail
EPOCHS=${EPOCHS:-150}
ELRS=${ELRS:-2e-3,5e-3,1e-2}
for NOISE in 0 0.1 0.2; do
  landscape sweep --elrs "$ELRS" -o "runs/mnist1d-k16-noise$NOISE" --width 16 --epochs "$EPOCHS" \
    --label-noise "$NOISE" --save-every 25 --device cpu -q "$@"
done
