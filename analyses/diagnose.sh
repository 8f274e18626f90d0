#!/usr/bin/env bash
# Diagnose the claims the headline reproduction does not confirm, each by the smallest set of
# extra runs that separates horizon, protocol and task (resumable: re-running continues):
#   horizon   the recipe's ELRs around the regime boundaries, 400 epochs (train/horizon_mnist1d.sh),
#             judged by figures 1, 3 and 6 into OUT/horizon/ (claims 3-7, 13);
#   finetune  the regime-1 fine-tuning run 250 epochs beside its source continued as long
#             (train/diagnosis_mnist1d.sh finetune), figure 5 into OUT/diagnosis/finetune-long/ (claim 10);
#   noise     20% label noise for 400 epochs (... noise), Appendix G into OUT/diagnosis/noise-long/ (claim 14);
#   data      the regime-1 ELRs on twice the signals (... data), figure 3 into OUT/diagnosis/more-data/ (claim 5).
#     bash analyses/diagnose.sh [horizon|finetune|noise|data ...]   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
source train/recipe.env
HORIZON=${HORIZON:-400}
FT_LONG=${FT_LONG:-250}
NOISE_HORIZON=${NOISE_HORIZON:-400}
export FT_LONG NOISE_HORIZON
BASE=${ANALYSES_OUT:-analyses/out}
PARTS=${*:-horizon finetune noise data}
START=$(date +%s)
say() { printf '[%5ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }
source analyses/logged.sh
judge() {  # OUT SCRIPT ARGS...: one figure script into OUT, its verdicts printed
  say "analyses/$2.py into $1"
  logged "$1/logs/$2.log" env ANALYSES_OUT="$1" python "analyses/$2.py" "${@:3}"
  verdicts "$1/logs/$2.log"
}
train() {  # LOG CMD...: a training stage, its output in BASE/diagnosis/logs/LOG.log
  say "train: ${*:2}"
  logged "$BASE/diagnosis/logs/$1.log" "${@:2}"
}
for part in $PARTS; do
  case $part in
    horizon)
      train horizon bash train/horizon_mnist1d.sh
      for script in fig1_regimes fig3_sharpness fig6_transitions; do
        judge "$BASE/horizon" "$script" "$RECIPE/horizon$HORIZON-seed0"
      done ;;
    finetune)
      train finetune bash train/diagnosis_mnist1d.sh finetune
      judge "$BASE/diagnosis/finetune-long" fig5_finetune "$RECIPE/finetune$FT_LONG" "$RECIPE/sweep-seed0" ;;
    noise)
      train noise bash train/diagnosis_mnist1d.sh noise
      judge "$BASE/diagnosis/noise-long" appendix_g_double_descent "$RECIPE/horizon$NOISE_HORIZON-noise0.2" ;;
    data)
      train data bash train/diagnosis_mnist1d.sh data
      judge "$BASE/diagnosis/more-data" fig3_sharpness "$RECIPE/samples10000-seed0" ;;
    *) echo "unknown part $part (horizon, finetune, noise, data)" >&2; exit 2 ;;
  esac
done
say "done: $BASE/horizon/, $BASE/diagnosis/"
