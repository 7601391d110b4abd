#!/usr/bin/env bash
# Diffusion-ReID recipe on the synthetic world (docs/diffusion-reid.md): random init vs pre-trained on
# other synthetic identities, both fine-tuned on world A with the same budget. CPU, no downloads.
# Usage: scripts/pretrain_recipe.sh [WORKDIR] [FINETUNE_EPOCHS] [PRETRAIN_EPOCHS] [PRETRAIN_STEPS_PER_EPOCH] [GENERATOR]
set -euo pipefail
W="${1:-recipe}"; FT="${2:-6}"; PT="${3:-3}"; PT_STEPS="${4:-40}"; GEN="${5:-recolor}"
mkdir -p "$W"
# small on purpose (2-core CPU): ResNet-18 from scratch at 64x32, P8 x K4; a short schedule (no warm-up,
# constant lr 3.5e-4): BoT's 10 warm-up epochs would keep a budget of a few epochs at a tenth of the lr
printf 'warmup_epochs: 0\nmilestones: [1000]\n' > "$W/schedule.yaml"
COMMON=(--backbone resnet18 --weights none --height 64 --width 32 --batch 8,4 --num-workers 0 --device cpu --config "$W/schedule.yaml")
# A: the benchmark we evaluate on. B: other people (another seed), the source of pre-training identities.
[ -f "$W/a.h5" ] || reidkit adapt synthetic --out "$W/a.h5" --seed 0 >/dev/null
[ -f "$W/b.h5" ] || reidkit adapt synthetic --out "$W/b.h5" --seed 1 >/dev/null
# Generated images of B's training identities. Without diffusion weights on this machine the weight-free
# generator stands in; with weights: --generator diffusion-reid --set per_identity=150 (see the docs).
[ -f "$W/pre.h5" ] || reidkit expand "$W/b.h5" --generator "$GEN" --variants 4 --name pre --seed 0 --filter sanity >/dev/null
[ -f "$W/pre.h5" ] || reidkit pretrain-store --source "$W/b.h5" --run pre --with-real --eval-store "$W/a.h5" --out "$W/pre.h5"
[ -f "$W/pretrain/backbone.safetensors" ] || reidkit train "$W/pre.h5" --plugin pretrain --epochs "$PT" --steps-per-epoch "$PT_STEPS" --out "$W/pretrain" "${COMMON[@]}"
for init in random pretrained; do
  extra=(); [ "$init" = pretrained ] && extra=(--init-from "$W/pretrain")
  [ -f "$W/ft-$init/model.safetensors" ] || reidkit train "$W/a.h5" --plugin baseline --epochs "$FT" --eval-every "$FT" \
      --out "$W/ft-$init" "${COMMON[@]}" "${extra[@]}"
  echo "$init: $(tail -1 "$W/ft-$init/log.csv")"
done
