#!/usr/bin/env bash
# The diagnosis of the claims that neither the recipe nor the longer horizon (horizon_mnist1d.sh)
# decides, each by the smallest set of extra runs that separates horizon, protocol and task:
#   claim 10: the regime-1 fine-tuning (1e-4 -> 2e-4 from epoch 50) run FT_LONG epochs instead of
#             50, beside the source continued at its own ELR for as long (the reference);
#   claim 14: 20% label noise at the recipe's noisy ELRs, NOISE_HORIZON epochs instead of 100;
#   claim 5:  the recipe's regime-1 ELRs on MORE_DATA (twice the signals: 8000 train, 2000
#             test; a larger task and a test error with half the sampling variance).
# One seed, the recipe's setting otherwise (train/recipe.env). Re-running continues every run.
set -euo pipefail
cd "$(dirname "$0")/.."
source train/recipe.env
FT_LONG=${FT_LONG:-250}
NOISE_HORIZON=${NOISE_HORIZON:-400}
MORE_DATA=${MORE_DATA:-mnist1d:noise=2,samples=10000}
PART=${1:-all}
if [ "$PART" = all ] || [ "$PART" = finetune ]; then
  SOURCE=${LOW:-$RECIPE/sweep-seed0/elr0.0001.h5}
  SOURCE_ELR=$(basename "$SOURCE" .h5 | sed 's/^elr//')
  OUT=$RECIPE/finetune$FT_LONG
  mkdir -p "$OUT"
  for ELR in "$SOURCE_ELR" ${LOW_TO:-2e-4}; do  # the source continued, then the higher regime-1 ELR
    DST=$OUT/from$SOURCE_ELR-to$ELR.h5
    if [ -f "$DST" ]; then landscape train --resume "$DST" -q &
    else landscape train --init "$SOURCE@${EPOCH:-50}" --elr "$ELR" --epochs "$FT_LONG" "${COMMON[@]}" -o "$DST" & fi
  done
  wait
fi
if [ "$PART" = all ] || [ "$PART" = noise ]; then
  landscape sweep --elrs "${NOISE_ELRS:-2e-4,5e-4,1e-3}" -o "$RECIPE/horizon$NOISE_HORIZON-noise0.2" \
    --epochs "$NOISE_HORIZON" --label-noise 0.2 "${COMMON[@]}"
fi
if [ "$PART" = all ] || [ "$PART" = data ]; then
  landscape sweep --elrs "${DATA_ELRS:-1e-5,2e-5,5e-5,1e-4,2e-4,5e-4,1e-3,2e-3,3e-3,5e-3}" \
    -o "$RECIPE/samples10000-seed0" --epochs "$EPOCHS" --init-seed 0 --data-seed 0 \
    "${COMMON[@]}" --dataset "$MORE_DATA"
fi
