#!/usr/bin/env bash
# Beyond the paper (Section 7's open question, Appendix O's Transformer) on the recipe's task
# (train/recipe.env): one seed, the recipe's epochs, an ELR sweep each for
#   momentum  the ConvNet, projected heavy-ball SGD (momentum 0.9): ELR = lr / rho^2
#   adam      the ConvNet, projected Adam (torch's defaults): ELR = lr / rho, so its grid sits
#             lower (its angular step is about ELR x sqrt(#SI weights) x |m|/sqrt(v))
#   transformer  the SI Transformer (width 32, 2 blocks, 4 heads), the paper's SGD
# The SGD ConvNet sweep they are compared with is the recipe's own (sweep-seed0).
# Re-running continues interrupted sweeps.
set -euo pipefail
cd "$(dirname "$0")/.."
source train/recipe.env
ELRS_MOMENTUM=${ELRS_MOMENTUM:-1e-5:0.1}
ELRS_ADAM=${ELRS_ADAM:-1e-6:0.1}
ELRS_TRANSFORMER=${ELRS_TRANSFORMER:-1e-5:0.1}
SEED=(--init-seed 0 --data-seed 0 --epochs "$EPOCHS")
landscape sweep --elrs "$ELRS_MOMENTUM" --optimizer momentum --momentum 0.9 -o "$RECIPE/beyond-momentum" \
  "${SEED[@]}" "${COMMON[@]}" "$@"
landscape sweep --elrs "$ELRS_ADAM" --optimizer adam -o "$RECIPE/beyond-adam" "${SEED[@]}" "${COMMON[@]}" "$@"
# (after COMMON, whose --width is the ConvNet's: the last value given wins)
landscape sweep --elrs "$ELRS_TRANSFORMER" -o "$RECIPE/beyond-transformer" "${SEED[@]}" "${COMMON[@]}" \
  --model transformer --width 32 --depth 2 --heads 4 "$@"
