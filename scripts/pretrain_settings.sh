#!/usr/bin/env bash
# The Diffusion-ReID claim where its line of work makes it (docs/diffusion-reid.md, "Beyond supervised fine-tuning"):
# pre-trained (on identities synthesised from worlds 1 and 2) against random start, on world A (seed 0) in
#   - USL: cluster-contrast on A's training images without labels;
#   - UDA: supervised on world B (seed 3), then cluster-contrast on A from that model;
#   - cross-world: the B model evaluated on A, never trained on A (domain generalisation);
#   - small-scale: supervised on a share of A's training persons (--subset ids=R);
# each over seeds, summarised as mean ± std [min-max] by scripts/summarise_runs.py.
# Usage: scripts/pretrain_settings.sh WORKDIR [SEED ...]     (default seeds 0 1 2)
# Environment (defaults): USL_EPOCHS=30 USL_STEPS=20 USL_LR=3.5e-4 USL_EPS=0.5 USL_CAMERA_CENTRED=true B_EPOCHS=12
# SUBSET=ids=0.25 SUBSET_EPOCHS=12, and
# pretrain_recipe.sh's (PT_EPOCHS=8 PT_STEPS=40 GENERATOR=recolor BACKBONE=resnet10t LR=1e-3). Reruns reuse every step.
set -euo pipefail
W="${1:?usage: scripts/pretrain_settings.sh WORKDIR [SEED ...]}"; shift
SEEDS=("$@"); [ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0 1 2)
USL_EPOCHS="${USL_EPOCHS:-30}"; USL_STEPS="${USL_STEPS:-20}"; B_EPOCHS="${B_EPOCHS:-12}"
SUBSET="${SUBSET:-ids=0.25}"; SUBSET_EPOCHS="${SUBSET_EPOCHS:-12}"
PT="${PT_EPOCHS:-8}"; PT_STEPS="${PT_STEPS:-40}"; GEN="${GENERATOR:-recolor}"
export SOURCE_WORLDS="${SOURCE_WORLDS:-1 2}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # one thread: see pretrain_claim.sh
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python}"; RK="${REIDKIT:-reidkit}"
TAG="$GEN-w${SOURCE_WORLDS// /-w}"
mkdir -p "$W"
# constant lr, as pretrain_recipe.sh: no warm-up, no step (cluster-contrast has no warm-up setting)
printf 'warmup_epochs: 0\nmilestones: [1000]\n' > "$W/schedule.yaml"; printf 'milestones: [1000]\n' > "$W/cc-schedule.yaml"
# cluster-contrast with average pooling (its own is GeM): the pre-trained and supervised starts it is initialised from
# are average-pooled, and both arms of a comparison must be the same network. Its own lr (the reference's 3.5e-4:
# at 1e-3 the clusters collapse to a handful); clustering on camera-centred features at eps 0.5 (docs/fidelity.md:
# the synthetic cameras' backgrounds and casts otherwise make every cluster one camera).
SUP=(--strategy baseline --config "$W/schedule.yaml" --lr "${LR:-1e-3}")
USL=(--strategy cluster-contrast --config "$W/cc-schedule.yaml" --set backbone.pooling=avg --lr "${USL_LR:-3.5e-4}"
     --set eps="${USL_EPS:-0.5}" --set camera_centred="${USL_CAMERA_CENTRED:-true}")
COMMON=(--backbone "${BACKBONE:-resnet10t}" --weights none --height 64 --width 32 --num-workers 0 --device cpu)
epochs_done() { if [ -f "$1/log.csv" ]; then echo $(( $(wc -l < "$1/log.csv") - 1 )); else echo 0; fi; }
train_run() {  # OUT EPOCHS ARGS...: train, resume an interrupted run, or reuse a finished one
  local out="$1" epochs="$2"; shift 2
  if [ "$(epochs_done "$out")" -ge "$epochs" ]; then return; fi
  local resume=(); [ -f "$out/config.yaml" ] && resume=(--resume)
  "$RK" train "$@" --epochs "$epochs" --out "$out" "${resume[@]}" "${COMMON[@]}"
}
start=$(date +%s)
[ -f "$W/b.h5" ] || "$RK" adapt synthetic --out "$W/b.h5" --seed 3 >/dev/null  # B: other people than A and the sources
for s in "${SEEDS[@]}"; do
  echo "== seed $s =="
  "$HERE/pretrain_recipe.sh" "$W" 0 "$PT" "$PT_STEPS" "$GEN" "$s" "$s"  # stores, and the pre-training of seed s
  PRE="$W/pretrain-$TAG-s$s"
  # the floors: the pre-trained network as it is, and the same network with fresh weights (test features without flip,
  # as cluster-contrast's)
  [ -f "$W/untrained-pretrained-s$s.json" ] || "$RK" eval "$W/a.h5" --checkpoint "$PRE" --no-flip --json > "$W/untrained-pretrained-s$s.json"
  [ -f "$W/untrained-random-s$s.json" ] || "$PY" "$HERE/eval_untrained.py" "$W/a.h5" "$PRE" --seed "$s" > "$W/untrained-random-s$s.json"
  for init in random pretrained; do
    extra=(); [ "$init" = pretrained ] && extra=(--init-from "$PRE")
    # a start whose features DBSCAN cannot cluster stops in one line; the arm then has no result for that seed
    train_run "$W/usl-$init-s$s" "$USL_EPOCHS" "$W/a.h5" "${USL[@]}" --seed "$s" --batch 2,8 \
      --steps-per-epoch "$USL_STEPS" --eval-every "$USL_EPOCHS" "${extra[@]}" || echo "usl-$init-s$s: stopped"
    train_run "$W/b-$init-s$s" "$B_EPOCHS" "$W/b.h5" "${SUP[@]}" --seed "$s" --batch 8,4 "${extra[@]}"
    [ -f "$W/cross-$init-s$s.json" ] || "$RK" eval "$W/a.h5" --checkpoint "$W/b-$init-s$s" --json > "$W/cross-$init-s$s.json"
    train_run "$W/uda-$init-s$s" "$USL_EPOCHS" "$W/a.h5" "${USL[@]}" --seed "$s" --batch 2,8 \
      --steps-per-epoch "$USL_STEPS" --eval-every "$USL_EPOCHS" --init-from "$W/b-$init-s$s" || echo "uda-$init-s$s: stopped"
    train_run "$W/subset-$init-s$s" "$SUBSET_EPOCHS" "$W/a.h5" "${SUP[@]}" --seed "$s" --batch 4,4 \
      --subset "$SUBSET" --eval-every "$SUBSET_EPOCHS" "${extra[@]}"
  done
done
echo
echo "wall time: $(( $(date +%s) - start )) s; seeds: ${SEEDS[*]}"
join_runs() { local IFS="|"; echo "$*"; }
for setting in untrained usl cross uda subset; do
  for init in random pretrained; do
    runs=(); for s in "${SEEDS[@]}"; do
      if [ "$setting" = cross ] || [ "$setting" = untrained ]; then runs+=("$W/$setting-$init-s$s.json"); else runs+=("$W/$setting-$init-s$s"); fi
    done
    "$PY" "$HERE/summarise_runs.py" "$setting, $init=$(join_runs "${runs[@]}")" || true  # an arm without results says so
  done
done
