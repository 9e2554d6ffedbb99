#!/usr/bin/env bash
# The third-generation fine-tune of the shipped models on this CPU (issue 17), resumable: rerun it
# and every step continues where it stopped. The denoiser and its twin are fine-tuned the same
# way, side by side (one thread each), on the same windows in the same order:
#   * from the shipped weights (read from models/<name>/denoiser.onnx: the first runs are gone);
#   * data: the same 34M-token file sample as before, plus every function and method of it as a
#     sample of its own (data.py --function-copies 1, 43% of the tokens);
#   * the fixed fill-in-the-middle (fim.py) on half the windows; stage 2 (edit corruption) on;
#   * 1,024-token windows, then 2,048-token windows for the last third (rotary positions carry
#     over; the context becomes 2,048).
#
#   models/python/finetune.sh            # STEPS (80) and LONG_FROM (56) are settable
#
# Then export both (export.py --fp16 --checkpoint runs/ft3-sprout/checkpoint.pt ...) and evaluate.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/python-env.sh
export OMP_WAIT_POLICY=PASSIVE
py=.venv/bin/python
steps=${STEPS:-80} long_from=${LONG_FROM:-56}
[[ -f data/ft/train.bin ]] || $py models/python/data.py --tokenizer models/sprout-tiny/tokenizer.json \
  --corpus data/corpus --max-train-tokens 34000000 --function-copies 1 --out data/ft
tune() {  # objective, shipped model, run, threads for the long windows
  local common=(--data data/ft --run "$3" --init-from "models/$2" --objective "$1" --steps "$steps"
    --lr 3e-4 --warmup 20 --fim-rate 0.5 --eval-every 20 --eval-batches 4 --checkpoint-every 5)
  [[ $1 == ar ]] || common+=(--stage2-from 0)
  $py models/python/train.py "${common[@]}" --threads 1 --stop-at "$long_from" --length 1024 --batch 8
  $py models/python/train.py "${common[@]}" --threads "$4" --length 2048 --batch 4
}
mkdir -p runs
# The twin (one stream, no edits) is about twice as fast: it is done when the denoiser reaches its
# long windows, which then get both cores.
tune diffusion sprout-tiny runs/ft3-sprout 2 >> runs/ft3-sprout.out 2>&1 &
tune ar sprout-tiny-ar runs/ft3-twin 1 >> runs/ft3-twin.out 2>&1 &
wait
