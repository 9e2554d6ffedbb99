#!/usr/bin/env bash
# The prepared training run for a lent GPU (the `device` tool): one call, under 10 minutes.
#
#   1. here:   npm run model:data                 (data/ must hold train.bin and validation.bin)
#   2. device: run(command="bash models/python/gpu_train.sh", carry=["data"], timeout_s=600)
#   3. here:   .venv/bin/python models/python/export.py --checkpoint <files_at>/weights --out models/sprout-tiny
#
# Trains in bf16 for $MINUTES (default 8), the whole recipe: fill-in-the-middle on half the
# windows, stage 2 (edit corruption) over the last 20% of the schedule; OBJECTIVE=ar trains the
# autoregressive twin instead (same windows, same schedule). Leaves in $OUT: weights/weights.pt.partN (bf16,
# ≤ 15 MiB each, rewritten at every checkpoint so a timeout still returns weights) and log.jsonl.
# The GPU image has PyTorch, numpy and tokenizers; nothing is installed.
# Size: the shipped float32 ONNX is 4 bytes a parameter and the working tree that travels to the
# device is capped at 64 MiB, so stay near 10M parameters (or export in fp16/int8) — the default
# below is 10.0M (d 320, 6 layers).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?run this through the device tool, which sets OUT}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
export PYTHONUNBUFFERED=1
python models/python/train.py --data data --run /tmp/sprout-run --weights-out "$OUT/weights" \
  --minutes "${MINUTES:-8}" --steps "${STEPS:-6000}" --batch "${BATCH:-64}" --length "${LENGTH:-512}" \
  --d-model "${D_MODEL:-320}" --layers "${LAYERS:-6}" --heads "${HEADS:-5}" --lr "${LR:-1.5e-3}" \
  --warmup 300 --eval-every 500 --checkpoint-every 250 ${COMPILE:+--compile} \
  --objective "${OBJECTIVE:-diffusion}" --fim-rate 0.5 --stage2-from $(( ${STEPS:-6000} * 8 / 10 )) || status=$?
cp /tmp/sprout-run/log.jsonl "$OUT/log.jsonl" 2>/dev/null || true
ls -la "$OUT" "$OUT/weights" || true
exit "${status:-0}"
