#!/usr/bin/env bash
# Figures 3 (right) and 5 at CPU scale: fine-tune checkpoints of the main sweep (seed 0) with a
# lower and a higher ELR. LOW: a regime-1 run; HIGH: a regime-2 run (see `landscape regimes`).
# The four runs start at once and share the machine's run slots (LANDSCAPE_SLOTS, one core
# each), so no core idles while the last of them trains.
set -euo pipefail
cd "$(dirname "$0")/.."
source train/recipe.env
SWEEP=${SWEEP:-$RECIPE/sweep-seed0}
LOW=${LOW:-$SWEEP/elr0.0001.h5}
HIGH=${HIGH:-$SWEEP/elr0.01.h5}
EPOCH=${EPOCH:-50}
FT_EPOCHS=${FT_EPOCHS:-50}
OUT=${OUT:-$RECIPE/finetune}
mkdir -p "$OUT"
export LANDSCAPE_SLOTS=${LANDSCAPE_SLOTS:-$(nproc)}
elr_of() { basename "$1" .h5 | sed 's/^elr//'; }
tune() {  # SOURCE ELR: fine-tune SOURCE@EPOCH at ELR (an existing run is resumed, or left if complete)
  DST="$OUT/from$(elr_of "$1")-to$2.h5"
  if [ -f "$DST" ]; then landscape train --resume "$DST" -q; return; fi
  landscape train --init "$1@$EPOCH" --elr "$2" --epochs "$FT_EPOCHS" "${COMMON[@]}" -o "$DST"
}
PIDS=()
for ELR in ${LOW_TO:-2e-5 2e-4}; do tune "$LOW" "$ELR" & PIDS+=($!); done    # Fig. 3 right: lower, higher regime-1 ELR
for ELR in ${HIGH_TO:-1e-4 7e-3}; do tune "$HIGH" "$ELR" & PIDS+=($!); done  # Fig. 5: a regime-1 and another regime-2 ELR (7e-3: regime 2 under the protocol, 5e-3 is not)
FAILED=0
for pid in "${PIDS[@]}"; do wait "$pid" || FAILED=1; done  # every run finishes or fails on its own (resumable)
exit "$FAILED"
