"""Duplicates: exact (sha256 of the text with line endings and trailing whitespace normalised) and
near (MinHash over 5-word shingles, LSH bands, every candidate pair verified). The first file in
source order survives."""

from __future__ import annotations

import hashlib

import numpy as np

from .hashing import hash_tokens, ngram_hashes, stable_odd_constants

SHINGLE_WORDS = 5
MINHASH_PERMUTATIONS = 64
LSH_BANDS = 16
NEAR_DUPLICATE_JACCARD = 0.85

_MINHASH_A = stable_odd_constants("sprout-minhash-a", MINHASH_PERMUTATIONS)[:, None]
_MINHASH_B = stable_odd_constants("sprout-minhash-b", MINHASH_PERMUTATIONS)[:, None]


def exact_key(text: str) -> bytes:
    normalised = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip("\n")
    return hashlib.sha256(normalised.encode("utf-8")).digest()


def word_shingles(text: str) -> np.ndarray:
    """Distinct hashes of the 5-word shingles of the whitespace-split text (a shorter text is
    one shingle)."""
    token_hashes = hash_tokens(text.encode("utf-8").split())
    if len(token_hashes) == 0:
        return np.zeros(1, dtype=np.uint64)
    return np.unique(ngram_hashes(token_hashes, min(SHINGLE_WORDS, len(token_hashes))))


def minhash_signature(text: str) -> np.ndarray:
    """MINHASH_PERMUTATIONS minima of multiply-shift hashes ((a*x + b) mod 2^64) >> 32 over the
    shingles of `text`."""
    shingles = word_shingles(text)
    with np.errstate(over="ignore"):
        permuted = (_MINHASH_A * shingles[None, :] + _MINHASH_B) >> np.uint64(32)
    return permuted.min(axis=1).astype(np.uint32)


class NearDuplicateIndex:
    """Streaming MinHash-LSH: `add_unless_duplicate` keeps the first file of each cluster."""

    def __init__(self, bands: int = LSH_BANDS, threshold: float = NEAR_DUPLICATE_JACCARD) -> None:
        if MINHASH_PERMUTATIONS % bands:
            raise ValueError("bands must divide the number of permutations")
        self.bands = bands
        self.rows = MINHASH_PERMUTATIONS // bands
        self.threshold = threshold
        self.signatures = np.zeros((1024, MINHASH_PERMUTATIONS), dtype=np.uint32)
        self.count = 0
        self.buckets: dict[bytes, list[int]] = {}
        self.candidate_checks = 0

    def _band_keys(self, signature: np.ndarray) -> list[bytes]:
        return [
            bytes([band]) + signature[band * self.rows : (band + 1) * self.rows].tobytes() for band in range(self.bands)
        ]

    def find_duplicate(self, signature: np.ndarray) -> int | None:
        candidates: set[int] = set()
        for key in self._band_keys(signature):
            candidates.update(self.buckets.get(key, ()))
        if not candidates:
            return None
        indices = np.fromiter(sorted(candidates), dtype=np.int64, count=len(candidates))
        self.candidate_checks += len(indices)
        similarity = (self.signatures[indices] == signature[None, :]).mean(axis=1)
        best = int(np.argmax(similarity))
        return int(indices[best]) if similarity[best] >= self.threshold else None

    def add(self, signature: np.ndarray) -> int:
        if self.count == len(self.signatures):
            self.signatures = np.concatenate([self.signatures, np.zeros_like(self.signatures)])
        index = self.count
        self.signatures[index] = signature
        self.count += 1
        for key in self._band_keys(signature):
            self.buckets.setdefault(key, []).append(index)
        return index

    def add_unless_duplicate(self, text: str) -> bool:
        """True if `text` was new (and is now indexed), False if it near-duplicates a kept file."""
        signature = minhash_signature(text)
        if self.find_duplicate(signature) is not None:
            return False
        self.add(signature)
        return True
