#!/usr/bin/env bash
# Packs training tokens for the lent GPU (see gpu_train.sh): tokenizes $TOKENS (default 34M)
# tokens of data/corpus (build_corpus.py's output) and xz-compresses them into data/gpu/
# (~3.8x smaller: 34M tokens travel in ~19 MB beside the ~45 MB repo, under the 64 MiB cap).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/python-env.sh
tmp=data/gpu-raw
.venv/bin/python models/python/data.py --tokenizer models/sprout-tiny/tokenizer.json --out "$tmp" \
  --corpus data/corpus --max-train-tokens "${TOKENS:-34000000}"
mkdir -p data/gpu
xz -T0 -6 -c "$tmp/train.bin" > data/gpu/train.bin.xz
xz -T0 -6 -c "$tmp/validation.bin" > data/gpu/validation.bin.xz
cp "$tmp/data.json" data/gpu/
du -b data/gpu/*
