#!/usr/bin/env bash
# The prepared training run for a lent GPU (the `device` tool): one call, under 10 minutes.
#
#   1. here:   models/python/gpu_pack.sh                (tokenizes data/corpus and packs data/gpu/*.xz)
#   2. device: run(command="bash models/python/gpu_train.sh", carry=["data/gpu"], timeout_s=600)
#   3. here:   .venv/bin/python models/python/export.py --fp16 --data data/gpu-raw --checkpoint <files_at>/weights --out models/sprout-tiny
#              .venv/bin/python models/python/export.py --fp16 --data data/gpu-raw --name sprout-tiny-ar --checkpoint <files_at>/twin --out models/sprout-tiny-ar
#
# Trains the denoiser and its autoregressive twin side by side on the one GPU (a 10M-parameter
# model leaves most of an H100 idle), in bf16, for $MINUTES (default 7.5) each, the whole recipe:
# 2,048-token windows, fill-in-the-middle (fim.py) on half the windows, function-level samples
# in the data, stage 2 (edit corruption) over the last 20% of the schedule. Speed: flex attention
# (the block-causal mask's empty tiles skipped, nothing of size time² stored), torch.compile,
# fused AdamW, batches drawn and laid out a step ahead in a thread, large batches. `--fit-schedule` shrinks the step count to what the measured speed finishes in time,
# so the learning rate anneals and stage 2 happens even when the GPU is slower than hoped.
# Leaves in $OUT: weights/ and twin/ with weights.pt.partN (bf16, ≤ 15 MiB each, rewritten at
# every checkpoint so a timeout still returns weights) and the two logs.
# The GPU image has PyTorch, numpy and tokenizers; nothing is installed.
# Size: the working tree that travels is capped at 64 MiB (the repo is ~45 MB of it), hence the
# xz-packed tokens. The default model is 10.0M parameters (d 320, 6 layers); export with --fp16.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?run this through the device tool, which sets OUT}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"  || true
export PYTHONUNBUFFERED=1
RUNS=${RUNS:-/tmp}  # run directories (checkpoints: a rerun on the same machine resumes)
DATA=$RUNS/sprout-data
PACKED=${PACKED:-data/gpu}
mkdir -p "$DATA"
for f in "$PACKED"/*.bin.xz; do python3 -c "import lzma,sys,shutil; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$f" "$DATA/$(basename "$f" .xz)"; done
cp "$PACKED"/data.json "$DATA/" 2>/dev/null || true
ls -la "$DATA"

train() {  # objective, run dir, weights dir
  python3 models/python/train.py --data "$DATA" --run "$2" --weights-out "$3" --objective "$1" \
    --minutes "${MINUTES:-7.5}" --fit-schedule --steps "${STEPS:-20000}" --batch "${BATCH:-96}" --length "${LENGTH:-2048}" \
    --d-model "${D_MODEL:-320}" --layers "${LAYERS:-6}" --heads "${HEADS:-5}" --lr "${LR:-1.5e-3}" \
    --warmup 300 --eval-every 250 --checkpoint-every 250 --threads 4 --flex-attention $([[ ${COMPILE:-1} == 1 ]] && echo --compile) \
    --block-sizes ${BLOCK_SIZES:-32 16 64} --fim-rate 0.5 --stage2-from $(( ${STEPS:-20000} * 8 / 10 ))
}
train diffusion $RUNS/sprout-run "$OUT/weights" > "$OUT/diffusion.out" 2>&1 & diffusion=$!
train ar $RUNS/twin-run "$OUT/twin" > "$OUT/twin.out" 2>&1 & twin=$!
wait $diffusion || status=$?
wait $twin || status=${status:-$?}
cp $RUNS/sprout-run/log.jsonl "$OUT/weights/log.jsonl" 2>/dev/null || true
cp $RUNS/twin-run/log.jsonl "$OUT/twin/log.jsonl" 2>/dev/null || true
tail -n 5 "$OUT/diffusion.out" "$OUT/twin.out"
ls -la "$OUT" "$OUT/weights" "$OUT/twin" || true
exit "${status:-0}"
