"""Tokenizes the corpus into flat uint16 arrays: `<|bos|> file <|eos|>` after one another.

    python models/python/data.py --tokenizer models/sprout-tiny/tokenizer.json --out data/

Writes `train.bin`, `validation.bin` and `data.json` (files, tokens, bytes per split).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

import corpus


def build(tokenizer_path: Path, out_dir: Path) -> dict:
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    bos, eos = tokenizer.token_to_id("<|bos|>"), tokenizer.token_to_id("<|eos|>")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"source": "Python standard library (PSF-2.0)", "tokenizer": str(tokenizer_path), "splits": {}}
    for split in ("train", "validation"):
        files = list(corpus.iter_files(split))
        encoded = tokenizer.encode_batch([text for _, text in files], add_special_tokens=False)
        ids = []
        for enc in encoded:
            ids.append(bos)
            ids.extend(enc.ids)
            ids.append(eos)
        array = np.asarray(ids, dtype=np.uint16)
        array.tofile(out_dir / f"{split}.bin")
        summary["splits"][split] = {
            "files": len(files),
            "tokens": int(array.size),
            "bytes": sum(len(text.encode()) for _, text in files),
        }
    (out_dir / "data.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(build(args.tokenizer, args.out), indent=2))


if __name__ == "__main__":
    main()
