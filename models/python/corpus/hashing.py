"""Hashes of tokens and token n-grams for dedup.py and decontaminate.py: deterministic across runs
and machines (CRC-32 and constants derived from sha256; no Python hash(), no RNG streams)."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence

import numpy as np


def stable_odd_constants(label: str, count: int) -> np.ndarray:
    values = [
        int.from_bytes(hashlib.sha256(f"{label}-{index}".encode()).digest()[:8], "little") | 1 for index in range(count)
    ]
    return np.array(values, dtype=np.uint64)


_NGRAM_MULTIPLIERS = stable_odd_constants("sprout-ngram", 32)


def hash_tokens(tokens: Sequence[bytes]) -> np.ndarray:
    return np.fromiter((zlib.crc32(token) for token in tokens), dtype=np.uint64, count=len(tokens))


def ngram_hashes(token_hashes: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit hash per window of `n` consecutive tokens (wrapping multiply-add)."""
    if len(token_hashes) < n:
        return np.zeros(0, dtype=np.uint64)
    windows = len(token_hashes) - n + 1
    combined = np.zeros(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            combined += token_hashes[offset : offset + windows] * _NGRAM_MULTIPLIERS[offset]
        combined ^= combined >> np.uint64(29)
    return combined
