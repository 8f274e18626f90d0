#!/usr/bin/env bash
# Section 6 / Figure 7 at CPU scale (train/recipe.env: the recipe's ConvNet and MNIST-1D) outside
# the sphere, 100 epochs, one initialisation and batch order per sweep.
#   left  : the fully SI ConvNet in the whole parameter space, plain SGD, weight decay (below)
#   middle: a conventional ResNet-18 of width 8 (BN affine, trainable last layer), momentum 0.9,
#           weight decay 5e-4 (the paper's for its ResNet-18), augmentation, constant LR
#   right : the same with a cosine schedule over the run
# About 30 minutes on a 2-core CPU. Re-running continues an interrupted sweep.
# CIFAR-10 (the paper's setting; on a GPU): add --dataset cifar10 --data-root DATA --download
# --model resnet18 --width 64 --epochs 200 and --weight-decay 5e-4 for the ResNet, e.g.
#   landscape sweep --lrs 1e-3:10 --conventional --model resnet18 --dataset cifar10 --download \
#     --momentum 0.9 --weight-decay 5e-4 --augment --schedule cosine --epochs 200 --device cuda \
#     -o runs/cifar10-resnet18-conv-cosine
set -euo pipefail
cd "$(dirname "$0")/.."
source train/recipe.env
LRS=${LRS:-1e-2:1e2:9}
# the SI net equilibrates its norm in about 1/(lr wd) steps at an ELR near sqrt(2 lr wd)/grad:
# at CPU scale (100 epochs) weight decay 1e-3 and LRs up to 1e3 reach regimes 2 and 3 (the
# paper: 1e-4 over far longer runs)
LRS_SI=${LRS_SI:-1e-1:1e3:9}
WD_SI=${WD_SI:-1e-3}
PREFIX=${PREFIX:-$RECIPE/s6}
COMMON+=(--epochs "$EPOCHS")
CONV=(--model resnet18 --width "${CONV_WIDTH:-8}" --conventional --momentum 0.9 --weight-decay "${WD_CONV:-5e-4}" --augment)
# compiled: the ResNet's epochs 1.3-1.5x faster on a CPU, after one first compile of about 4
# minutes (the workers after it compile from inductor's warm cache in 15-18 s; with
# LANDSCAPE_SLOTS they wait for it without a slot); CONV_COMPILE= trains eager (benchmarks/RESULTS.md)
CONV+=(${CONV_COMPILE---compile})
landscape sweep --lrs "$LRS" -o "$PREFIX-conv-constant" "${COMMON[@]}" "${CONV[@]}" "$@"
landscape sweep --lrs "$LRS" --schedule cosine -o "$PREFIX-conv-cosine" "${COMMON[@]}" "${CONV[@]}" "$@"
# the SI ConvNet's short runs last: beside the other training scripts (run_all.sh) the machine's
# last minutes are then short runs, not a ResNet run with one core idle beside it
landscape sweep --lrs "$LRS_SI" --space whole --weight-decay "$WD_SI" -o "$PREFIX-si-whole" "${COMMON[@]}" "$@"
