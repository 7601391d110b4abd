#!/usr/bin/env bash
# Every GPU figure of docs/benchmarks.md in one prepared run (random weights built from the real configs:
# nothing downloads). Run from a folder holding benchmarks/ and tests/ with reidkit installed (not the
# source tree's reidkit/ on sys.path); results and logs go to $OUT (default /tmp/gpu-out).
#
#   bash benchmarks/gpu_session.sh            # all parts, in priority order
#   PARTS="dlcr train" bash benchmarks/gpu_session.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
PARTS=${PARTS:-"dlcr train precision dreid eval rerank rerank-numpy rerank-test prompts"}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >"$OUT/gpu.txt" 2>&1
$PY -c "import torch, diffusers, transformers, reidkit; print(torch.__version__, diffusers.__version__, transformers.__version__, reidkit.__file__)" >>"$OUT/gpu.txt" 2>&1

part() {  # part NAME SECONDS COMMAND...: one benchmark under its own time limit; a failure never stops the others
  local name=$1 secs=$2
  shift 2
  case " $PARTS " in *" $name "*) ;; *) return ;; esac
  local t0=$SECONDS
  timeout "$secs" "$@" >"$OUT/$name.log" 2>&1
  echo "== $name: rc=$? in $((SECONDS - t0)) s"
  tail -c 2500 "$OUT/$name.log"
}

part dlcr 260 $PY benchmarks/bench_dlcr.py --full-size --device cuda --dtype bfloat16 --width 256 --height 768 --steps 50 \
  --json "$OUT/dlcr.json"
part train 120 $PY benchmarks/bench_train.py --device cuda --amp bf16 --backbone resnet50 --height 256 --width 128 \
  --batch 16,4 --ids 200 --steps 60 --workers 8
# issue 25: float32 (the references' and now reidkit's default) against the opt-in bf16, at CAL's shape (384x192, 8 x 8)
part precision 200 bash -c "$PY benchmarks/bench_train.py --device cuda --amp none --backbone resnet50 --height 384 --width 192 \
  --batch 8,8 --ids 200 --steps 40 --workers 8 && $PY benchmarks/bench_train.py --device cuda --amp bf16 --backbone resnet50 \
  --height 384 --width 192 --batch 8,8 --ids 200 --steps 40 --workers 8"
part dreid 100 $PY benchmarks/bench_diffusion_reid.py --size sd15 --device cuda --dtype bfloat16 --images 16 --micro-batch 16
part eval 200 $PY benchmarks/bench_eval.py --scale msmt --device cuda --classic-queries 1000 --json "$OUT/eval.json"
part rerank 300 $PY benchmarks/bench_rerank.py --scale msmt --device cuda --old-rows 2048 --full --old-chunks 4 \
  --json "$OUT/rerank.json"
# issue 30: the same with the sparse stages in numpy on the host (the way before rerank_device.py), to compare with the above
part rerank-numpy 300 $PY benchmarks/bench_rerank.py --scale msmt --device cuda --old-rows 2048 --full --old-chunks 4 \
  --sparse-numpy --json "$OUT/rerank-numpy.json"
# the device code's own test on the device (skipped on the CPU)
part rerank-test 120 $PY -m pytest -q tests/test_eval_rerank.py -k "device or gpu"
# issue 30: LLaVA-1.5-7B captioning + Llama-2-7b-chat summarising (random weights, real configs), batch 1 vs 8 / 16,
# typical then DLCR's token limits; each setting stops after the batch that passes 15 s, results kept after each
part prompts 420 $PY benchmarks/bench_prompts.py --size real --device cuda --dtype bfloat16 --images 16 --batch-sizes 1,8,16 \
  --max-seconds 15 --json "$OUT/prompts.json"
