#!/usr/bin/env bash
# Reproduce the paper at CPU scale (the recipe of train/recipe.env, the paper's protocol): train
# what is missing, then write every figure and analyses/out/*.json from the checkpoint metrics,
# the same claims from training's epoch means in analyses/out/epoch-means/ (the second column),
# and analyses/out/summary.png. Resumable: re-running continues interrupted sweeps and skips
# finished runs. One progress line per stage; the time it takes is in analyses/REPRODUCTION.md.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
OUT=${ANALYSES_OUT:-analyses/out}  # where figures, JSON and logs go
export ANALYSES_OUT=$OUT
STAGES=9  # the training, fig3, the second column's start, 4 scripts, the wait, the summary
STAGE=0
stage() {  # one line per stage: number, what, time since the start
  STAGE=$((STAGE + 1))
  printf '[%2d/%d %5ds] %s\n' "$STAGE" "$STAGES" "$(( $(date +%s) - START ))" "$*"
}
source analyses/logged.sh
source train/recipe.env  # SEEDS, RECIPE: the recipe's, or the environment's
export RECIPE
quietly() { logged "$OUT/logs/$1.log" "${@:2}"; }  # LOG CMD...: CMD's output in OUT/logs/LOG.log
elapsed() { printf '        [%5ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }
epoch_means() { ANALYSES_OUT=$OUT/epoch-means quietly "epoch-means-$1" python "analyses/$1.py" --metrics epoch "${@:2}"; }
figure() {  # SCRIPT [ARGS]: a figure script in both columns (checkpoint metrics, epoch means)
  quietly "$1" python "analyses/$1.py" "${@:2}"
  epoch_means "$@"
  elapsed "figure: analyses/$1.py, both columns"
  verdicts "$OUT/logs/$1.log"
}
# The training scripts run at once, their sweeps' workers sharing one run slot per core
# (LANDSCAPE_SLOTS): the cores stay busy to the end instead of idling at each sweep's last run.
# A figure whose runs are all trained starts at once beside the training, so the cores' last
# minutes go to figures rather than to one run alone.
export LANDSCAPE_SLOTS=${LANDSCAPE_SLOTS:-${SLOTS:-$(nproc)}}
read -r FIRST REST <<< "$SEEDS"
stage "train, on $LANDSCAPE_SLOTS run slots at once: the main sweeps, fine-tuning, label noise, Section 6 (and the figures whose runs are done)"
( # fine-tuning starts from the first seed's runs, beside the other seeds' sweeps
  SEEDS=$FIRST quietly sweep-seed$FIRST bash train/sweep_mnist1d.sh
  elapsed "trained: the main ELR sweep of seed $FIRST (train/sweep_mnist1d.sh)"
  SWEEP=$RECIPE/sweep-seed$FIRST quietly finetune bash train/finetune_mnist1d.sh
  elapsed "trained: fine-tuning from seed $FIRST's runs (train/finetune_mnist1d.sh)"
  figure fig5_finetune "$RECIPE/finetune" "$RECIPE/sweep-seed$FIRST"
) & MAIN=$!
PIDS=($MAIN)
if [ -n "$REST" ]; then
  ( SEEDS=$REST quietly sweep bash train/sweep_mnist1d.sh
    elapsed "trained: the main ELR sweep of seeds $REST (train/sweep_mnist1d.sh)" ) & PIDS+=($!)
fi
( quietly label_noise bash train/label_noise_mnist1d.sh
  elapsed "trained: label noise 10/20% up to the 1/2 boundary, no crops (train/label_noise_mnist1d.sh; 0% is the main sweep's seed 0)"
  figure appendix_g_double_descent
  quietly fig2_toy landscape toy --alphas 1,2,4 --elrs 0.1,0.2,0.5 --steps 10000 \
    --plot "$OUT/fig2_toy.png" --json "$OUT/fig2_toy.json"
  elapsed "figure: landscape toy (figure 2)" ) & PIDS+=($!)
( quietly section6 bash train/section6_mnist1d.sh
  elapsed "trained: Section 6, outside the sphere (train/section6_mnist1d.sh)"
  figure fig7_standard ) & PIDS+=($!)
FAILED=0
for pid in "${PIDS[@]}"; do wait "$pid" || FAILED=1; done  # the others finish (resumable)
[ "$FAILED" = 0 ] || exit 1
# fig3 first and alone: its Hessian traces use both cores' threads (beside another script they
# took 3x as long); then the checkpoint column's other scripts here and, beside them on the
# other core, the epoch-mean column (the scripts' own work is single-threaded)
stage "analyses/fig3_sharpness.py (checkpoint metrics; alone: its Hessian traces use every core)"
quietly fig3_sharpness python analyses/fig3_sharpness.py
verdicts "$OUT/logs/fig3_sharpness.log"
SCRIPTS="fig1_regimes fig4_equal_ess fig6_transitions appendix_m_random_walk"
stage "started beside the checkpoint column: the same claims from training's epoch means ($OUT/epoch-means/)"
(
  # fig3 reuses the sharpness the checkpoint column's fig3 stored in the runs
  for script in fig3_sharpness $SCRIPTS; do
    case $script in appendix_m_random_walk) continue ;; esac  # the angle to the start: a checkpoint metric only
    epoch_means "$script"
  done
) & SECOND=$!
for script in $SCRIPTS; do
  stage "analyses/$script.py (checkpoint metrics)"
  quietly "$script" python "analyses/$script.py"
  verdicts "$OUT/logs/$script.log"
done
stage "waiting for the second column (epoch means)"
wait "$SECOND"
stage "analyses/summary.py"
quietly summary python analyses/summary.py
printf "[done %5ds] figures, JSON and summary.png in $OUT/ (logs: $OUT/logs/)\n" "$(( $(date +%s) - START ))"
