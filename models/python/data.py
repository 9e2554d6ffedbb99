"""Tokenizes a corpus into flat uint16 arrays: `<|bos|> file <|eos|>` after one another.

    python models/python/data.py --tokenizer models/sprout-tiny/tokenizer.json --out data/
    python models/python/data.py --tokenizer models/sprout-tiny/tokenizer.json --out data/ \\
        --corpus data/corpus --max-train-tokens 15000000

Without `--corpus`: the Python standard library (corpus/stdlib.py), train and validation splits.
With `--corpus`: the output of build_corpus.py (train/validation/test.jsonl). `--max-train-tokens`
keeps a sample of whole files, chosen by a stable hash of source and path (not the first files
in source order, which would be mostly the standard library), so a packed set small enough to
travel to a GPU machine (tens of MiB) still covers every source; validation and test are capped
at a twentieth of it. `--function-copies K` adds, to the training split only, K copies of every
function and method of the kept files as a sample of its own (functions.py), after the files, in
a stable hash order, so a window rarely holds a function beside the file it came from. Writes
`<split>.bin` and `data.json` (files, tokens, bytes per split).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import corpus
from functions import function_samples
from tokenizer import load_tokenizer


def iter_documents(corpus_dir: Path | None, split: str) -> Iterator[tuple[str, str]]:
    """(stable key, text) of every file of a split."""
    if corpus_dir is None:
        yield from corpus.iter_files(split)
        return
    with (corpus_dir / f"{split}.jsonl").open() as lines:
        for line in lines:
            record = json.loads(line)
            yield f"{record['source'].split('==')[0]}/{record['path']}", record["text"]


def sample_order(documents: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(documents, key=lambda d: hashlib.sha256(d[0].encode()).digest())


def build(
    tokenizer_path: Path,
    out_dir: Path,
    corpus_dir: Path | None = None,
    max_train_tokens: int | None = None,
    function_copies: int = 0,
) -> dict:
    tokenizer = load_tokenizer(tokenizer_path)
    bos, eos = tokenizer.token_to_id("<|bos|>"), tokenizer.token_to_id("<|eos|>")
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = ("train", "validation") if corpus_dir is None else ("train", "validation", "test")
    source = "Python standard library (PSF-2.0)" if corpus_dir is None else f"{corpus_dir} (see its corpus.json)"
    summary = {
        "source": source,
        "tokenizer": str(tokenizer_path),
        "max_train_tokens": max_train_tokens,
        "function_copies": function_copies,
        "splits": {},
    }
    for split in splits:
        documents = list(iter_documents(corpus_dir, split))
        cap = None if max_train_tokens is None else (max_train_tokens if split == "train" else max_train_tokens // 20)
        if cap is not None:
            documents = sample_order(documents)
        ids: list[int] = []
        kept_bytes = kept_files = 0
        kept: list[tuple[str, str]] = []
        for start in range(0, len(documents), 512):
            chunk = documents[start : start + 512]
            for (key, text), enc in zip(
                chunk, tokenizer.encode_batch([t for _, t in chunk], add_special_tokens=False), strict=True
            ):
                if cap is not None and len(ids) + len(enc.ids) + 2 > cap:
                    continue  # a file that does not fit; a smaller one later may
                ids += [bos, *enc.ids, eos]
                kept_bytes += len(text.encode())
                kept_files += 1
                if split == "train" and function_copies > 0:
                    kept.append((key, text))  # their functions follow the files
            if cap is not None and len(ids) >= cap * 0.999:
                break
        file_tokens = len(ids)
        functions = 0
        if split == "train" and function_copies > 0:
            samples = [(f"{key}#{n}", s) for key, text in kept for n, s in enumerate(function_samples(text))]
            texts = [s for _, s in sample_order(samples)]
            functions = len(texts)
            for start in range(0, len(texts), 512):
                for enc in tokenizer.encode_batch(texts[start : start + 512], add_special_tokens=False):
                    ids += [bos, *enc.ids, eos] * function_copies
        array = np.asarray(ids, dtype=np.uint16)
        array.tofile(out_dir / f"{split}.bin")
        summary["splits"][split] = {"files": kept_files, "tokens": int(array.size), "bytes": kept_bytes}
        if functions:
            summary["splits"][split] |= {
                "file_tokens": file_tokens,
                "function_samples": functions,
                "function_tokens": int(array.size) - file_tokens,
            }
    (out_dir / "data.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, default=None, help="a build_corpus.py output directory")
    parser.add_argument("--max-train-tokens", type=int, default=None)
    parser.add_argument(
        "--function-copies", type=int, default=0, help="copies of each function-level sample (train split)"
    )
    args = parser.parse_args()
    print(
        json.dumps(build(args.tokenizer, args.out, args.corpus, args.max_train_tokens, args.function_copies), indent=2)
    )


if __name__ == "__main__":
    main()
