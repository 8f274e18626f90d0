#!/usr/bin/env bash
# The measurements that chose the CPU-scale recipe (train/recipe.env): each candidate setting's
# regime map over {1,2,5}x10^-k, 1e-4 ... 1 (13 ELRs), ConvNet, 60 epochs, seed 0, then the
# table of analyses/REPRODUCTION.md ("Choosing the CPU-scale setting"). About 3.5 minutes per
# candidate on 2 cores (n20k: 14). Re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/candidates}
COMMON=(--elrs 1e-4:1 --epochs 60 --save-every 60 --device cpu -q)
cand() { name=$1; shift; echo "candidate $name: $*"; landscape sweep "${COMMON[@]}" -o "$OUT/$name" "$@"; }
# (a further candidate of the exploration, both generator noises scaled apart -- correlated x2,
# iid x5 -- is not a dataset name; it behaved as noise=2 with a lower test accuracy)
cand ref-k16        --dataset mnist1d --no-augment --width 16
cand aug-k16        --dataset mnist1d --augment --width 16
cand n20k-k16       --dataset mnist1d:samples=20000 --no-augment --width 16
cand noise2-k16     --dataset mnist1d:noise=2 --no-augment --width 16
cand noise3-k16     --dataset mnist1d:noise=3 --no-augment --width 16
cand noise2aug-k16  --dataset mnist1d:noise=2 --augment --width 16
python analyses/candidates.py ref-k16="$OUT/ref-k16" aug-k16="$OUT/aug-k16" n20k-k16="$OUT/n20k-k16" \
  noise2-k16="$OUT/noise2-k16" noise3-k16="$OUT/noise3-k16" noise2aug-k16="$OUT/noise2aug-k16"
