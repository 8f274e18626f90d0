#!/usr/bin/env bash
# Rebuild every figure at CPU scale on MNIST-1D: trains what is missing (re-running resumes),
# then writes analyses/out/*.png and *.json. About 45 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash train/sweep_mnist1d.sh
bash train/label_noise_mnist1d.sh
ELRS=1e-4,2e-4,5e-4 PREFIX=runs/mnist1d-k16-lowelr-noise NOISES="0.1 0.2" bash train/label_noise_mnist1d.sh
bash train/finetune_mnist1d.sh
bash train/section6_mnist1d.sh
landscape toy --alphas 1,2,4 --elrs 0.1,0.2,0.5 --steps 10000 --plot analyses/out/fig2_toy.png --json analyses/out/fig2_toy.json
for script in fig1_regimes fig3_sharpness fig4_equal_ess fig6_transitions fig5_finetune appendix_g_double_descent fig7_standard; do
  python "analyses/$script.py"
done
