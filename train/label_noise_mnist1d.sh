#!/usr/bin/env bash
# Appendix G at CPU scale: label noise 10% and 20% at ELRs up to the regime-1/2 boundary of
# the recipe's task *without* augmentation (as the paper's runs on the sphere): epoch-wise double
# descent needs runs that come to fit the noisy labels, which random crops prevent within 100
# epochs (measured: train loss 0.5-1.1 at the end, no peak). Re-running resumes.
# Without noise these runs are the main sweep's seed-0 runs at the same ELRs
# (train/sweep_mnist1d.sh: the same configuration, their trajectories equal bit for bit), so 0%
# is not trained twice; NOISES="0 0.1 0.2" trains a noise0/ folder of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
AUGMENT=${AUGMENT---no-augment}
source train/recipe.env
NOISE_ELRS=${NOISE_ELRS:-2e-4,5e-4,1e-3}
for NOISE in ${NOISES:-0.1 0.2}; do
  landscape sweep --elrs "$NOISE_ELRS" -o "$RECIPE/noise$NOISE" --epochs "$EPOCHS" \
    --label-noise "$NOISE" "${COMMON[@]}" "$@"
done
