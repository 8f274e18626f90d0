#!/usr/bin/env bash
# Appendix G at CPU scale: label noise 0, 10% and 20% at ELRs up to the regime-1/2 boundary of
# the recipe's task *without* augmentation (as the paper's runs on the sphere): epoch-wise double
# descent needs runs that come to fit the noisy labels, which random crops prevent within 100
# epochs (measured: train loss 0.5-1.1 at the end, no peak). Re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
AUGMENT=${AUGMENT---no-augment}
source train/recipe.env
NOISE_ELRS=${NOISE_ELRS:-2e-4,5e-4,1e-3}
for NOISE in ${NOISES:-0 0.1 0.2}; do
  landscape sweep --elrs "$NOISE_ELRS" -o "$RECIPE/noise$NOISE" --epochs "$EPOCHS" \
    --label-noise "$NOISE" "${COMMON[@]}" "$@"
done
