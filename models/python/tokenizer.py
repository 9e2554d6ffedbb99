"""Trains Sprout's byte-level BPE tokenizer with Hugging Face `tokenizers`.

One `tokenizer.json` serves both sides: Python training reads it with `tokenizers`, the
TypeScript runtime with `@huggingface/tokenizers`. Special tokens take the first ids so that
their ids never move when the vocabulary is retrained at another size.

    python models/python/tokenizer.py --out models/sprout-tiny/tokenizer.json
"""

from __future__ import annotations

import argparse
from dataclasses import astuple, dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import corpus

SHIPPED_TOKENIZER = Path(__file__).resolve().parents[1] / "sprout-tiny" / "tokenizer.json"

# What a new tokenizer is trained with; the order fixes the ids it assigns (pad=0, bos=1, …).
# Everything else reads the ids from a tokenizer (`special_ids`) or a manifest, never from here.
SPECIAL_TOKENS = [
    "<|pad|>",
    "<|bos|>",
    "<|eos|>",
    "<|mask|>",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
]


@dataclass(frozen=True)
class SpecialIds:
    """The control tokens' ids by name: `special_ids(tokenizer)` or `SpecialIds(**manifest["special_tokens"])`."""

    pad: int
    bos: int
    eos: int
    mask: int
    fim_prefix: int
    fim_suffix: int
    fim_middle: int

    def all(self) -> list[int]:
        return list(astuple(self))


def special_ids(tokenizer: Tokenizer) -> SpecialIds:
    ids = {token.strip("<|>"): tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    missing = [name for name, i in ids.items() if i is None]
    if missing:
        raise ValueError(f"the tokenizer has no control token for {missing}")
    return SpecialIds(**ids)


def train(vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((text for _, text in corpus.iter_files("train")), trainer)
    return tokenizer


def load_tokenizer(path: Path | str) -> Tokenizer:
    """The tokenizer as every encoder here uses it: text that spells a control token (a literal
    `<|mask|>` in a file or prompt) is encoded as the plain text it is, never as the control token
    (the runtime's TextTokenizer does the same)."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.encode_special_tokens = True
    return tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vocab-size", type=int, default=8192)
    args = parser.parse_args()
    tokenizer = train(args.vocab_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(args.out))
    print(f"wrote {args.out} ({tokenizer.get_vocab_size()} tokens)")


if __name__ == "__main__":
    main()
