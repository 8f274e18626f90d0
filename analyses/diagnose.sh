#!/usr/bin/env bash
# Diagnose the claims the headline reproduction does not confirm: is it the horizon? Trains the
# longer runs of train/horizon_mnist1d.sh (resumable), then judges the claims about regimes 1
# and 2 on them (figures 1, 3 and 6) into analyses/out/horizon/, beside the 100-epoch verdicts.
set -euo pipefail
cd "$(dirname "$0")/.."
source train/recipe.env
HORIZON=${HORIZON:-400}
OUT=${ANALYSES_OUT:-analyses/out}/horizon
mkdir -p "$OUT/logs"
START=$(date +%s)
printf '[%5ds] train: %s epochs, one seed (train/horizon_mnist1d.sh)\n' 0 "$HORIZON"
bash train/horizon_mnist1d.sh > "$OUT/logs/train.log" 2>&1 || { tail -5 "$OUT/logs/train.log"; exit 1; }
for script in fig1_regimes fig3_sharpness fig6_transitions; do
  printf '[%5ds] analyses/%s.py on the %s-epoch runs\n' "$(( $(date +%s) - START ))" "$script" "$HORIZON"
  ANALYSES_OUT=$OUT python "analyses/$script.py" "$RECIPE/horizon$HORIZON-seed0" > "$OUT/logs/$script.log" 2>&1 ||
    { tail -5 "$OUT/logs/$script.log"; exit 1; }
  grep -E '^\[(confirmed|NOT confirmed|undetermined)\]' "$OUT/logs/$script.log" | cut -c1-160 || true
done
printf '[done %5ds] %s\n' "$(( $(date +%s) - START ))" "$OUT"
