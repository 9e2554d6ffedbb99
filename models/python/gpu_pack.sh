#!/usr/bin/env bash
# Packs training tokens for the lent GPU (see gpu_train.sh): $TOKENS (default 20M) tokens of whole
# files of data/corpus (build_corpus.py's output) plus every function and method of those files
# as a sample of its own (data.py --function-copies 1, about 0.75 token per file token), xz-
# compressed into data/gpu/ (~3.8x smaller: ~35M tokens travel in ~19 MB beside the ~45 MB repo,
# under the 64 MiB cap).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/python-env.sh
tmp=data/gpu-raw
.venv/bin/python models/python/data.py --tokenizer models/sprout-tiny/tokenizer.json --out "$tmp" \
  --corpus data/corpus --max-train-tokens "${TOKENS:-20000000}" --function-copies 1
mkdir -p data/gpu
xz -T0 -6 -c "$tmp/train.bin" > data/gpu/train.bin.xz
xz -T0 -6 -c "$tmp/validation.bin" > data/gpu/validation.bin.xz
cp "$tmp/data.json" data/gpu/
du -b data/gpu/*
