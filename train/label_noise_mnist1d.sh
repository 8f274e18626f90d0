#!/usr/bin/env bash
# Appendix G at CPU scale: label noise 10% and 20% at regime-1 ELRs (the noise-free runs are the
# main sweep's, seed 0: the same initialisation and batch order). Re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
source train/recipe.env
NOISE_ELRS=${NOISE_ELRS:-5e-5,1e-4,2e-4}
for NOISE in ${NOISES:-0.1 0.2}; do
  landscape sweep --elrs "$NOISE_ELRS" -o "$RECIPE/noise$NOISE" --epochs "$EPOCHS" \
    --label-noise "$NOISE" "${COMMON[@]}" "$@"
done
