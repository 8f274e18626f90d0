#!/usr/bin/env bash
# Beyond the paper: trains the sweeps of train/beyond_mnist1d.sh (resumable), then labels their
# regimes and judges the claims of Figures 1 and 4 on each (do three regimes appear, in order?
# where are the boundaries? do the ESS equalise in regime 2?) into analyses/out/beyond/NAME/,
# checkpoint metrics (the paper's protocol). The section "Beyond the paper" of
# analyses/REPRODUCTION.md reads these.
set -euo pipefail
cd "$(dirname "$0")/.."
source train/recipe.env
source analyses/logged.sh
OUT=${ANALYSES_OUT:-analyses/out}/beyond
mkdir -p "$OUT/logs"
START=$(date +%s)
printf '[%5ds] train: momentum, Adam, Transformer sweeps (train/beyond_mnist1d.sh)\n' 0
logged "$OUT/logs/train.log" bash train/beyond_mnist1d.sh
for name in momentum adam transformer; do
  for script in fig1_regimes fig4_equal_ess; do
    printf '[%5ds] analyses/%s.py on %s\n' "$(( $(date +%s) - START ))" "$script" "$RECIPE/beyond-$name"
    mkdir -p "$OUT/$name"
    logged "$OUT/logs/$name-$script.log" env ANALYSES_OUT="$OUT/$name" python "analyses/$script.py" "$RECIPE/beyond-$name"
    verdicts "$OUT/logs/$name-$script.log" 200
  done
  landscape regimes "$RECIPE/beyond-$name" > "$OUT/$name/regimes.txt" 2>&1 || true
done
printf '[done %5ds] %s\n' "$(( $(date +%s) - START ))" "$OUT"
