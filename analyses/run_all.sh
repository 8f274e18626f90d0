#!/usr/bin/env bash
# Rebuild every figure at CPU scale on MNIST-1D: trains what is missing (re-running resumes),
# then writes analyses/out/*.png and *.json. About 45 minutes on a 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash train/sweep_mnist1d.sh
bash train/label_noise_mnist1d.sh
bash train/finetune_mnist1d.sh
for script in fig1_regimes fig3_sharpness fig4_equal_ess fig6_transitions fig5_finetune appendix_g_double_descent; do
  python "analyses/$script.py"
done
