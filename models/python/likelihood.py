"""Validation loss of an exported graph: the masked-diffusion ELBO (two estimators) of the
denoiser, the exact NLL of its autoregressive twin, in nats per token and bits per byte.

The estimators and why they bound what they bound: models/python/README.md, "Validation loss".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

import corpus
import graph_io
from model import training_mask
from tokenizer import special_ids

REPO_ROOT = Path(__file__).resolve().parents[2]
T_MIN = 0.02  # train.py's diffusion_loss default


@dataclass
class ValidationTokens:
    tokens: np.ndarray
    tokens_per_byte: float
    source: str


def load_validation_tokens(data_dir: Path, tokenizer: Tokenizer, tokenizer_file: Path) -> ValidationTokens:
    """data/validation.bin when data.json says it was made with this tokenizer file (same bytes);
    otherwise the validation files of corpus/stdlib.py, tokenized here as `<|bos|> file <|eos|>`."""
    summary_path, bin_path = data_dir / "data.json", data_dir / "validation.bin"
    if summary_path.exists() and bin_path.exists():
        summary = json.loads(summary_path.read_text())
        packed_with = Path(summary.get("tokenizer", ""))
        packed_with = packed_with if packed_with.is_absolute() else REPO_ROOT / packed_with
        split = summary.get("splits", {}).get("validation", {})
        same_tokenizer = packed_with.is_file() and packed_with.read_bytes() == tokenizer_file.read_bytes()
        if same_tokenizer and split.get("tokens") and split.get("bytes"):
            tokens = np.fromfile(bin_path, dtype=np.uint16)
            return ValidationTokens(
                tokens, split["tokens"] / split["bytes"], f"{bin_path} ({summary.get('source', '?')})"
            )
    special = special_ids(tokenizer)
    ids: list[int] = []
    n_bytes = 0
    for _, text in corpus.iter_files("validation"):
        ids += [special.bos, *tokenizer.encode(text, add_special_tokens=False).ids, special.eos]
        n_bytes += len(text.encode())
    return ValidationTokens(
        np.asarray(ids, dtype=np.uint16), len(ids) / n_bytes, "corpus.iter_files('validation'), tokenized here"
    )


def window_starts(data: ValidationTokens, length: int, windows: int) -> np.ndarray:
    """Evenly spaced windows of `length` tokens: the same for the denoiser and the twin."""
    return np.linspace(0, data.tokens.size - length, windows).astype(int)


def noise_block_wise(
    clean: np.ndarray, block: int, estimator: str, rng: np.random.Generator, mask_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy ids, ELBO weight per position: 0 where not masked)."""
    length = clean.size
    weight = np.zeros(length)
    for start in range(0, length, block):
        n = min(block, length - start)
        if estimator == "train":  # train.py: t ~ U(t_min, 1), Bernoulli(t) masks, weight 1/t
            t = T_MIN + (1 - T_MIN) * rng.random()
            masked = rng.random(n) < t
            weight[start : start + n] = masked / t
        elif estimator == "exact":  # t integrated out: k ~ U{1..n} masks, weight n/k
            k = int(rng.integers(1, n + 1))
            masked = np.zeros(n, dtype=bool)
            masked[rng.choice(n, size=k, replace=False)] = True
            weight[start : start + n] = masked * (n / k)
        else:
            raise ValueError(estimator)
    noisy = np.where(weight > 0, mask_id, clean)
    return noisy, weight


def two_stream_logits(
    session: onnxruntime.InferenceSession, clean: np.ndarray, noisy: np.ndarray, block: int, arch: dict
) -> np.ndarray:
    """Logits of the noisy stream [batch, L, vocab] for ids = clean ‖ noisy (training layout)."""
    batch, length = noisy.shape
    ids = np.concatenate([np.broadcast_to(clean, (batch, length)), noisy], axis=1).astype(np.int64)
    positions = np.broadcast_to(np.tile(np.arange(length), 2), (batch, 2 * length)).astype(np.int64)
    mask = np.ascontiguousarray(np.broadcast_to(training_mask(length, block).numpy(), (batch, 2 * length, 2 * length)))
    past = np.zeros((arch["n_layers"], batch, arch["n_heads"], 0, arch["head_dim"]), dtype=np.float32)
    (logits,) = session.run(
        ["logits"],
        graph_io.feeds(
            session,
            {
                "input_ids": ids,
                "positions": np.ascontiguousarray(positions),
                "past_key": past,
                "past_value": past,
                "attention_mask": mask,
            },
        ),
    )
    return logits[:, length:]


def weighted_cross_entropy(logits: np.ndarray, targets: np.ndarray, weight: np.ndarray) -> float:
    """Σ weight · CE over positions with weight > 0, divided by the number of positions."""
    rows = weight > 0
    chosen = logits[rows].astype(np.float64)
    top = chosen.max(-1, keepdims=True)
    log_z = np.log(np.exp(chosen - top).sum(-1)) + top[:, 0]
    ce = log_z - chosen[np.arange(len(chosen)), targets[rows]]
    return float((ce * weight[rows]).sum() / weight.size)


def causal_logits(session: onnxruntime.InferenceSession, clean: np.ndarray, arch: dict) -> np.ndarray:
    """Logits [L, vocab] of one causal pass over a window (the autoregressive twin)."""
    length = clean.size
    past = np.zeros((arch["n_layers"], 1, arch["n_heads"], 0, arch["head_dim"]), dtype=np.float32)
    mask = np.tril(np.ones((length, length), dtype=bool))[None]
    (logits,) = session.run(
        ["logits"],
        graph_io.feeds(
            session,
            {
                "input_ids": clean[None].astype(np.int64),
                "positions": np.arange(length)[None],
                "past_key": past,
                "past_value": past,
                "attention_mask": mask,
            },
        ),
    )
    return logits[0]


def _per_token(values: list[float], tokens_per_byte: float) -> dict:
    nats = float(np.mean(values))
    sem = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return {"nats_per_token": nats, "sem_over_windows": sem, "bits_per_byte": nats * tokens_per_byte / math.log(2)}


def diffusion_elbo(
    session: onnxruntime.InferenceSession,
    arch: dict,
    mask_id: int,
    data: ValidationTokens,
    length: int,
    block_size: int,
    windows: int,
    draws: int,
    seed: int,
) -> dict:
    """Both ELBO estimators over the same windows, `draws` noise draws per window and estimator."""
    rng = np.random.default_rng(seed)
    starts = window_starts(data, length, windows)
    per_window: dict[str, list[float]] = {"train": [], "exact": []}
    for start in starts:
        clean = data.tokens[start : start + length].astype(np.int64)
        noise = [
            (est, *noise_block_wise(clean, block_size, est, rng, mask_id)) for est in per_window for _ in range(draws)
        ]
        logits = two_stream_logits(session, clean, np.stack([d[1] for d in noise]), block_size, arch)
        for estimator in per_window:
            losses = [
                weighted_cross_entropy(logits[i], clean, w) for i, (est, _, w) in enumerate(noise) if est == estimator
            ]
            per_window[estimator].append(float(np.mean(losses)))
    result: dict[str, Any] = {
        "data": data.source,
        "windows": int(len(starts)),
        "window_tokens": length,
        "draws_per_window": draws,
        "block_size": block_size,
        "seed": seed,
        "tokens_per_byte": data.tokens_per_byte,
        "note": "exact: the masked-diffusion ELBO, an upper bound on the NLL (in expectation), not the NLL itself; "
        "train: train.py's estimator (t >= 0.02, rescaled), comparable to training logs, not a strict bound",
    }
    for estimator, values in per_window.items():
        result[estimator] = _per_token(values, data.tokens_per_byte)
    result["train"]["weighting"] = f"train.py: per block t ~ U({T_MIN}, 1), mask prob t, CE weighted 1/t"
    result["exact"]["weighting"] = "t integrated out: per block k ~ U{1..n} masked, CE weighted n/k"
    return result


def autoregressive_nll(
    session: onnxruntime.InferenceSession, arch: dict, data: ValidationTokens, length: int, windows: int, seed: int
) -> dict:
    """The twin's exact NLL on the same windows as the denoiser's ELBO (each window's first token,
    which has no context, is not predicted). Reported under both keys so tables line up."""
    starts = window_starts(data, length, windows)
    values = []
    for start in starts:
        clean = data.tokens[start : start + length].astype(np.int64)
        logits = causal_logits(session, clean, arch)[:-1]
        values.append(weighted_cross_entropy(logits, clean[1:], np.ones(length - 1)))
    entry = {
        **_per_token(values, data.tokens_per_byte),
        "weighting": "exact next-token NLL (causal pass), positions 1..L-1 of each window",
    }
    return {
        "data": data.source,
        "windows": int(len(starts)),
        "window_tokens": length,
        "draws_per_window": 1,
        "seed": seed,
        "tokens_per_byte": data.tokens_per_byte,
        "note": "autoregressive twin: the NLL itself (no bound); same windows as the denoiser's ELBO",
        "train": entry,
        "exact": entry,
    }
