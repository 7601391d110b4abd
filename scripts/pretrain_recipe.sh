#!/usr/bin/env bash
# Diffusion-ReID recipe on the synthetic world (docs/diffusion-reid.md): random init vs pre-trained on
# identities synthesised from other synthetic worlds, both fine-tuned on world A with the same budget.
# CPU, no downloads. One fine-tuning seed and one pre-training seed per call; scripts/pretrain_claim.sh
# repeats it over seeds and summarises.
# Usage: scripts/pretrain_recipe.sh [WORKDIR] [FT_EPOCHS] [PT_EPOCHS] [PT_STEPS_PER_EPOCH] [GENERATOR] [FT_SEED] [PT_SEED]
# Environment: SOURCE_WORLDS (seeds of the worlds whose training identities are synthesised; default "1 2",
# never 0 = world A), BACKBONE (resnet10t), LR (1e-3), EVAL_EVERY (FT_EPOCHS), REIDKIT (reidkit),
# MATCHED_EPOCHS (0 = off): also train random init on A for this many epochs (a control with as many batches
# in all as pre-training + fine-tuning), evaluated at its end.
# Every finished step is reused on a rerun (stores, runs, trainings; an interrupted training resumes).
set -euo pipefail
W="${1:-recipe}"; FT="${2:-12}"; PT="${3:-8}"; PT_STEPS="${4:-40}"; GEN="${5:-recolor}"; FT_SEED="${6:-0}"; PT_SEED="${7:-0}"
WORLDS="${SOURCE_WORLDS:-1 2}"; BACKBONE="${BACKBONE:-resnet10t}"; LR="${LR:-1e-3}"; EVAL_EVERY="${EVAL_EVERY:-$FT}"
RK="${REIDKIT:-reidkit}"
mkdir -p "$W"
# small on purpose (2-core CPU): a small ResNet from scratch at 64x32, P8 x K4, Adam at the rate that trains
# from scratch here (1e-3, as reidkit demo); a short schedule (no warm-up, constant lr): BoT's 10 warm-up
# epochs would keep a budget of a few epochs at a tenth of the lr.
printf 'warmup_epochs: 0\nmilestones: [1000]\n' > "$W/schedule.yaml"
COMMON=(--backbone "$BACKBONE" --weights none --height 64 --width 32 --batch 8,4 --lr "$LR" --num-workers 0 --device cpu
        --config "$W/schedule.yaml")
epochs_done() { if [ -f "$1/log.csv" ]; then echo $(( $(wc -l < "$1/log.csv") - 1 )); else echo 0; fi; }
train_run() {  # OUT EPOCHS ARGS...: train, resume an interrupted run, or reuse a finished one
  local out="$1" epochs="$2"; shift 2
  if [ "$(epochs_done "$out")" -ge "$epochs" ]; then return; fi
  local resume=(); [ -f "$out/config.yaml" ] && resume=(--resume)  # an interrupted run continues
  "$RK" train "$@" --epochs "$epochs" --out "$out" "${resume[@]}" "${COMMON[@]}"
}
# A: the benchmark we evaluate on (world seed 0). Source worlds: other people (other seeds).
[ -f "$W/a.h5" ] || "$RK" adapt synthetic --out "$W/a.h5" --seed 0 >/dev/null
SOURCES=(); TAG="$GEN"
for s in $WORLDS; do
  [ "$s" = 0 ] && { echo "source world seed 0 is world A itself: choose other seeds" >&2; exit 2; }
  [ -f "$W/w$s.h5" ] || "$RK" adapt synthetic --out "$W/w$s.h5" --seed "$s" >/dev/null
  # Generated images of the world's training identities. Without diffusion weights on this machine the
  # weight-free generator stands in; with weights: --generator diffusion-reid --set per_identity=150 (see the docs).
  # (expand is resumable: a finished run is reused.)
  "$RK" expand "$W/w$s.h5" --generator "$GEN" --variants 4 --name "pre-$GEN" --seed 0 --filter sanity >/dev/null
  SOURCES+=(--source "$W/w$s.h5"); TAG="$TAG-w$s"
done
# One --run applies to every source (give it once: a repeated --run would take each source's run twice).
[ -f "$W/pre-$TAG.h5" ] || "$RK" pretrain-store "${SOURCES[@]}" --run "pre-$GEN" --with-real --eval-store "$W/a.h5" --out "$W/pre-$TAG.h5"
PRE="$W/pretrain-$TAG-s$PT_SEED"
train_run "$PRE" "$PT" "$W/pre-$TAG.h5" --plugin pretrain --steps-per-epoch "$PT_STEPS" --seed "$PT_SEED"
[ "$FT" -gt 0 ] || exit 0  # FT_EPOCHS 0: the stores and the pre-training only (scripts/pretrain_settings.sh)
for init in random pretrained; do
  if [ "$init" = pretrained ]; then out="$W/ft-pretrained-$TAG-p$PT_SEED-s$FT_SEED"; extra=(--init-from "$PRE")
  else out="$W/ft-random-s$FT_SEED"; extra=(); fi
  train_run "$out" "$FT" "$W/a.h5" --plugin baseline --seed "$FT_SEED" --eval-every "$EVAL_EVERY" "${extra[@]}"
  echo "$init: $(tail -1 "$out/log.csv")"
done
M="${MATCHED_EPOCHS:-0}"
if [ "$M" -gt 0 ]; then
  out="$W/ft-random-e$M-s$FT_SEED"
  train_run "$out" "$M" "$W/a.h5" --plugin baseline --seed "$FT_SEED" --eval-every "$M"
  echo "random, $M epochs: $(tail -1 "$out/log.csv")"
fi
