#!/usr/bin/env bash
# The Diffusion-ReID claim on the synthetic world, over seeds (docs/diffusion-reid.md): pre-train on identities
# synthesised from two other worlds (seeds 1 and 2), fine-tune briefly on world A (seed 0), compare with the
# same fine-tuning from random init; prints mean ± std [min-max] over seeds per arm.
# Usage: scripts/pretrain_claim.sh WORKDIR [SEED ...]          (default seeds: 0 1 2)
# Each SEED is the fine-tuning seed of both arms and, unless PT_SEED fixes one pre-training for all, the seed
# of that seed's pre-training run too (so the spread covers both). Settings (environment, defaults):
# FT_EPOCHS=12 PT_EPOCHS=8 PT_STEPS=40 EVAL_EVERY=4 GENERATOR=recolor SOURCE_WORLDS="1 2" BACKBONE=resnet10t LR=1e-3.
# MATCHED_EPOCHS (default: FT_EPOCHS + the pre-training's batches in epochs of A, 17 batches of P8 x K4 each;
# 0 = off) adds a third arm: random init trained that long, as many batches in all as the pre-trained arm.
# A rerun reuses every finished step.
set -euo pipefail
W="${1:?usage: scripts/pretrain_claim.sh WORKDIR [SEED ...]}"; shift
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2)
FT="${FT_EPOCHS:-12}"; PT="${PT_EPOCHS:-8}"; PT_STEPS="${PT_STEPS:-40}"; GEN="${GENERATOR:-recolor}"
export MATCHED_EPOCHS="${MATCHED_EPOCHS:-$(( FT + (PT * PT_STEPS + 16) / 17 ))}"
export SOURCE_WORLDS="${SOURCE_WORLDS:-1 2}" EVAL_EVERY="${EVAL_EVERY:-4}"
# One BLAS/OpenMP thread per process: on a 2-core machine shared with other jobs, torch's default of one
# thread per core made training about 7x slower (threads wait for each other; measured 10 vs 75 img/s).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python}"
start=$(date +%s)
for s in "${SEEDS[@]}"; do
  echo "== seed $s (pre-training seed ${PT_SEED:-$s}) =="
  "$HERE/pretrain_recipe.sh" "$W" "$FT" "$PT" "$PT_STEPS" "$GEN" "$s" "${PT_SEED:-$s}"
done
TAG="$GEN-w${SOURCE_WORLDS// /-w}"
# summarise exactly the runs of these seeds (one glob alternative per run folder)
join_runs() { local IFS="|"; echo "$*"; }
random=(); pretrained=(); matched=()
for s in "${SEEDS[@]}"; do
  random+=("$W/ft-random-s$s"); pretrained+=("$W/ft-pretrained-$TAG-p${PT_SEED:-$s}-s$s"); matched+=("$W/ft-random-e$MATCHED_EPOCHS-s$s")
done
arms=("random init=$(join_runs "${random[@]}")" "pre-trained ($TAG)=$(join_runs "${pretrained[@]}")")
[ "$MATCHED_EPOCHS" -gt 0 ] && arms+=("random init, matched batches=$(join_runs "${matched[@]}")")
echo
echo "wall time: $(( $(date +%s) - start )) s; seeds: ${SEEDS[*]}; fine-tuning $FT epochs on A; pre-training $PT x $PT_STEPS batches"
"$PY" "$HERE/summarise_runs.py" "${arms[@]}"
