#!/usr/bin/env bash
# Figures 3 (right) and 5 at CPU scale: fine-tune checkpoints of the main sweep with a lower and
# a higher ELR. Needs train/sweep_mnist1d.sh first. FROM_LOW: a regime-1 run; FROM_HIGH: a
# regime-2 run (pick them from `landscape regimes runs/mnist1d-k16`).
set -euo pipefail
SWEEP=${SWEEP:-runs/mnist1d-k16}
FROM_LOW=${FROM_LOW:-1e-3}
FROM_HIGH=${FROM_HIGH:-0.02}
EPOCH=${EPOCH:-75}
EPOCHS=${EPOCHS:-75}
OUT=${OUT:-runs/mnist1d-k16-finetune}
mkdir -p "$OUT"
for ELR in 2e-4 5e-3; do   # Figure 3 right: from a regime-1 solution, lower and higher ELR
  [ -f "$OUT/from$FROM_LOW-to$ELR.h5" ] || landscape train --init "$SWEEP/elr$FROM_LOW.h5@$EPOCH" --elr "$ELR" \
    --epochs "$EPOCHS" --save-every 25 --device cpu -q -o "$OUT/from$FROM_LOW-to$ELR.h5"
done
for ELR in 1e-3 5e-2; do   # Figure 5: from a regime-2 point, a regime-1 and another regime-2 ELR
  [ -f "$OUT/from$FROM_HIGH-to$ELR.h5" ] || landscape train --init "$SWEEP/elr$FROM_HIGH.h5@$EPOCH" --elr "$ELR" \
    --epochs "$EPOCHS" --save-every 25 --device cpu -q -o "$OUT/from$FROM_HIGH-to$ELR.h5"
done
