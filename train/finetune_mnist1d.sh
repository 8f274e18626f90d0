#!/usr/bin/env bash
# Figures 3 (right) and 5 at CPU scale: fine-tune checkpoints of the sweeps with a lower and a
# higher ELR. Needs train/sweep_mnist1d.sh first. FROM_LOW: a regime-1 run of the main sweep;
# FROM_HIGH: a regime-2 run of the fine grid (pick them with `landscape regimes`).
set -euo pipefail
LOW=${LOW:-runs/mnist1d-k16/elr0.001.h5}
HIGH=${HIGH:-runs/mnist1d-k16-fine/elr0.0144493.h5}
EPOCH=${EPOCH:-75}
EPOCHS=${EPOCHS:-75}
OUT=${OUT:-runs/mnist1d-k16-finetune}
mkdir -p "$OUT"
elr_of() { basename "$1" .h5 | sed 's/^elr//'; }
for ELR in 2e-4 5e-3; do    # Figure 3 right: from a regime-1 solution, a lower and a higher ELR
  DST="$OUT/from$(elr_of "$LOW")-to$ELR.h5"
  [ -f "$DST" ] || landscape train --init "$LOW@$EPOCH" --elr "$ELR" --epochs "$EPOCHS" --save-every 25 --device cpu -q -o "$DST"
done
for ELR in 1e-3 0.018; do   # Figure 5: from regime 2, a regime-1 ELR and another regime-2 ELR
  DST="$OUT/from$(elr_of "$HIGH")-to$ELR.h5"
  [ -f "$DST" ] || landscape train --init "$HIGH@$EPOCH" --elr "$ELR" --epochs "$EPOCHS" --save-every 25 --device cpu -q -o "$DST"
done
