#!/usr/bin/env bash
# The commands that made the shipped models, in order (about 6 CPU hours on 2 cores; every
# training step is resumable, so rerunning this script continues where it stopped).
#
#   models/python/reproduce.sh            # data, the denoiser, the twin, export, evaluation
#
# The denoiser and its autoregressive twin see the same windows in the same order (same seed,
# same schedule; FIM draws are keyed by step), so their token budgets and data are equal.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/python-env.sh
export OMP_WAIT_POLICY=PASSIVE
py=.venv/bin/python
train() { $py models/python/train.py --steps 3600 --eval-every 200 "$@"; }

# Data: the standard library, then the built corpus (licenses, dedup, decontamination) and a
# 15M-token sample of it.
[[ -f data/train.bin ]] || $py models/python/data.py --tokenizer models/sprout-tiny/tokenizer.json --out data
[[ -f data/corpus/train.jsonl ]] || $py models/python/build_corpus.py --out data/corpus
[[ -f data/wheels-15m/train.bin ]] || $py models/python/data.py --tokenizer models/sprout-tiny/tokenizer.json \
  --corpus data/corpus --max-train-tokens 15000000 --out data/wheels-15m

for objective in diffusion ar; do
  run=runs/$([[ $objective == ar ]] && echo twin || echo sprout)
  # Stage 1: the standard library to step 1,600, then the corpus sample to step 2,987.
  train --objective "$objective" --data data --run "$run" --stop-at 1600
  train --objective "$objective" --data data/wheels-15m --run "$run" --stop-at 2987
  [[ $objective == ar || -f runs/sprout-stage1.pt ]] || cp runs/sprout/checkpoint.pt runs/sprout-stage1.pt  # "before stage 2"
  # Last 17% of steps: fill-in-the-middle on half the windows and, for the denoiser, stage 2
  # (edit corruption on half the sequences, loss on every visible token).
  train --objective "$objective" --data data/wheels-15m --run "$run" --fim-rate 0.5 --stage2-from 2880
done
mkdir -p models/sprout-tiny-ar runs/eval/stage1
cp models/sprout-tiny/tokenizer.json models/sprout-tiny-ar/
cp models/sprout-tiny/tokenizer.json runs/eval/stage1/
$py models/python/export.py --checkpoint runs/sprout-stage1.pt --out runs/eval/stage1 --name sprout-tiny-stage1
$py models/python/export.py --checkpoint runs/sprout/checkpoint.pt --out models/sprout-tiny --name sprout-tiny
$py models/python/export.py --checkpoint runs/twin/checkpoint.pt --out models/sprout-tiny-ar --name sprout-tiny-ar
$py models/python/plot.py --run runs/sprout --run runs/twin --out models/sprout-tiny/loss.png
(cd models/python && ../../.venv/bin/python evaluate.py --model ../sprout-tiny --model ../sprout-tiny-ar --model ../../runs/eval/stage1 \
  --limit 200 --infill-cases 50 --repair-cases 100 --continuation-files 30 --val-windows 32 \
  --data ../../data/wheels-15m --record --out ../sprout-tiny/evaluation.json)
