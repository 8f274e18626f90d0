#!/usr/bin/env bash
# Reproduce the paper at CPU scale (the recipe of train/recipe.env): train what is missing, then
# write every figure, analyses/out/*.json and analyses/out/summary.png. Resumable: re-running
# continues interrupted sweeps and skips finished runs. One progress line per stage.
# About 50 minutes on a 2-core CPU from nothing (measured: analyses/REPRODUCTION.md); minutes
# once the runs exist.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
STAGES=13
STAGE=0
stage() {  # one line per stage: number, what, time since the start
  STAGE=$((STAGE + 1))
  printf '[%2d/%d %5ds] %s\n' "$STAGE" "$STAGES" "$(( $(date +%s) - START ))" "$*"
}
quietly() {  # LOG CMD...: run CMD with its output in analyses/out/logs/LOG.log; on failure, say where
  mkdir -p analyses/out/logs
  "${@:2}" > "analyses/out/logs/$1.log" 2>&1 || {
    echo "failed: ${*:2} (its output: analyses/out/logs/$1.log)" >&2; tail -5 "analyses/out/logs/$1.log" >&2; exit 1; }
}
stage "train: the main ELR sweep, one per seed (train/sweep_mnist1d.sh)"
quietly sweep bash train/sweep_mnist1d.sh
stage "train: label noise 0/10/20% up to the 1/2 boundary, no crops (train/label_noise_mnist1d.sh)"
quietly label_noise bash train/label_noise_mnist1d.sh
stage "train: fine-tuning from regimes 1 and 2 (train/finetune_mnist1d.sh)"
quietly finetune bash train/finetune_mnist1d.sh
stage "train: Section 6, outside the sphere (train/section6_mnist1d.sh)"
quietly section6 bash train/section6_mnist1d.sh
stage "figure 2: the toy model"
quietly fig2_toy landscape toy --alphas 1,2,4 --elrs 0.1,0.2,0.5 --steps 10000 \
  --plot analyses/out/fig2_toy.png --json analyses/out/fig2_toy.json
for script in fig1_regimes fig3_sharpness fig4_equal_ess fig5_finetune fig6_transitions \
              appendix_g_double_descent fig7_standard summary; do
  stage "analyses/$script.py"
  quietly "$script" python "analyses/$script.py"
  grep -E '^\[(confirmed|NOT confirmed|undetermined)\]' "analyses/out/logs/$script.log" | cut -c1-160 || true
done
printf '[done %5ds] figures, JSON and summary.png in analyses/out/ (logs: analyses/out/logs/)\n' "$(( $(date +%s) - START ))"
