#!/usr/bin/env bash
# Every GPU figure of docs/benchmarks.md in one prepared run (random weights built from the real configs:
# nothing downloads). Run from a folder holding benchmarks/ and tests/ with reidkit installed (not the
# source tree's reidkit/ on sys.path); results and logs go to $OUT (default /tmp/gpu-out).
#
# A lent GPU has minutes, not hours: parts run in this file's order (issue 30's open goals first), each cut to
# what is left of BUDGET seconds; a part that cannot get 45 s is not started, and the last line names those
# left for the next session (PARTS="..." runs just them).
#
#   bash benchmarks/gpu_session.sh            # in priority order, within BUDGET (default 540 s)
#   PARTS="dlcr train-bf16" BUDGET=1200 bash benchmarks/gpu_session.sh   # PARTS picks, the file orders
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-540}
PARTS=${PARTS:-"rerank-test rerank rerank-numpy train-bf16 dlcr-graphs train-fp32 prompts dlcr precision dreid eval"}  # the file orders them
LEFT_OUT=""
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >"$OUT/gpu.txt" 2>&1
$PY -c "import torch, diffusers, transformers, reidkit; print(torch.__version__, diffusers.__version__, transformers.__version__, reidkit.__file__)" >>"$OUT/gpu.txt" 2>&1

part() {  # part NAME SECONDS COMMAND...: one benchmark under its own time limit; a failure never stops the others
  local name=$1 secs=$2
  shift 2
  case " $PARTS " in *" $name "*) ;; *) return ;; esac
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 45 ]; then
    LEFT_OUT="$LEFT_OUT $name"
    echo "== $name: not started (${left} s of the budget left)"
    return
  fi
  [ "$secs" -gt "$left" ] && secs=$left
  local t0=$SECONDS
  timeout "$secs" "$@" >"$OUT/$name.log" 2>&1
  echo "== $name: rc=$? in $((SECONDS - t0)) s (limit $secs s)"
  tail -c 2500 "$OUT/$name.log"
}

# issue 30, in order: the device re-ranking's CUDA tests, then its time with every stage on the GPU against the
# sparse stages in numpy on the host (the way measured on 2026-11-26: 23-37 s), both feature kinds, MSMT17 scale
part rerank-test 90 $PY -m pytest -q tests/test_eval_rerank.py -k "device or gpu"
part rerank 150 $PY benchmarks/bench_rerank.py --scale msmt --device cuda --old-rows 2048 --full --old-chunks 2 \
  --json "$OUT/rerank.json"
part rerank-numpy 150 $PY benchmarks/bench_rerank.py --scale msmt --device cuda --old-rows 2048 --full --old-chunks 0 \
  --sparse-numpy --json "$OUT/rerank-numpy.json"
# the pipeline's cost over training from memory (goal under 10 %) in bf16 and float32 (the default), ResNet-50,
# 256 x 128, and the background checkpoint writer's cost to the next epoch (goal under 2 %)
part train-bf16 150 $PY benchmarks/bench_train.py --device cuda --amp bf16 --backbone resnet50 --height 256 --width 128 \
  --batch 16,4 --ids 200 --steps 60 --workers 8 --writer-cost
# DLCR's loop (batch 5, fp16, DDIM-50) against CUDA graphs, batch 32 and autotuned kernels at DDIM-50 (compiled
# batch 16 was 2.04x, 0.37 of the bf16 peak); each configuration prints its row as it ends
part dlcr-graphs 300 $PY benchmarks/bench_dlcr.py --full-size --device cuda --dtype bfloat16 --width 256 --height 768 \
  --steps 50 --only issue30 --json "$OUT/dlcr-graphs.json"
part train-fp32 150 $PY benchmarks/bench_train.py --device cuda --amp none --backbone resnet50 --height 256 --width 128 \
  --batch 16,4 --ids 200 --steps 60 --workers 8
# LLaVA-1.5-7B captioning + Llama-2-7b-chat summarising (random weights, real configs), batch 1 vs 8 / 16,
# typical then DLCR's token limits; each setting stops after the batch that passes 15 s, results kept after each
part prompts 420 $PY benchmarks/bench_prompts.py --size real --device cuda --dtype bfloat16 --images 16 --batch-sizes 1,8,16 \
  --max-seconds 15 --json "$OUT/prompts.json"

# earlier sessions' parts, measured on 2026-11-26 (docs/benchmarks.md): run again where time is left
part dlcr 260 $PY benchmarks/bench_dlcr.py --full-size --device cuda --dtype bfloat16 --width 256 --height 768 --steps 50 \
  --json "$OUT/dlcr.json"
# issue 25: float32 (the references' and now reidkit's default) against the opt-in bf16, at CAL's shape (384x192, 8 x 8)
part precision 200 bash -c "$PY benchmarks/bench_train.py --device cuda --amp none --backbone resnet50 --height 384 --width 192 \
  --batch 8,8 --ids 200 --steps 40 --workers 8 && $PY benchmarks/bench_train.py --device cuda --amp bf16 --backbone resnet50 \
  --height 384 --width 192 --batch 8,8 --ids 200 --steps 40 --workers 8"
part dreid 100 $PY benchmarks/bench_diffusion_reid.py --size sd15 --device cuda --dtype bfloat16 --images 16 --micro-batch 16
part eval 200 $PY benchmarks/bench_eval.py --scale msmt --device cuda --classic-queries 1000 --json "$OUT/eval.json"

echo "== done in $SECONDS s of $BUDGET; not started:${LEFT_OUT:- none}"
[ -n "$LEFT_OUT" ] && echo "== next session: PARTS=\"${LEFT_OUT# }\" bash benchmarks/gpu_session.sh"
exit 0
