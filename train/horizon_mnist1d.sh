#!/usr/bin/env bash
# The diagnosis of the claims the 100-epoch recipe does not confirm: the same setting (train/
# recipe.env), one seed, the ELRs around the regime 1/2 and 2/3 boundaries, trained HORIZON
# epochs (4x the recipe's) so that the regime-1 runs the claims are about reach a low train loss.
# Re-running continues an interrupted sweep (it may take several sittings).
set -euo pipefail
cd "$(dirname "$0")/.."
source train/recipe.env
HORIZON=${HORIZON:-400}
HORIZON_ELRS=${HORIZON_ELRS:-1e-3,2e-3,3e-3,5e-3,7e-3,1e-2,1.5e-2,2e-2}
landscape sweep --elrs "$HORIZON_ELRS" -o "$RECIPE/horizon$HORIZON-seed0" --epochs "$HORIZON" \
  --init-seed 0 --data-seed 0 "${COMMON[@]}" "$@"
