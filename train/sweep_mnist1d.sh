#!/usr/bin/env bash
# The ELR sweep behind Figures 1, 3 (left), 4 and 6 at CPU scale (train/recipe.env): one sweep
# folder per seed ($RECIPE/sweep-seedS: --init-seed S --data-seed S), every ELR of a folder
# sharing its initialisation and batch order. Re-running continues an interrupted sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
source train/recipe.env
for S in $SEEDS; do
  landscape sweep --elrs "$ELRS" -o "$RECIPE/sweep-seed$S" --epochs "$EPOCHS" \
    --init-seed "$S" --data-seed "$S" "${COMMON[@]}" "$@"
done
