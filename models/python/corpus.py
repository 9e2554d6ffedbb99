"""The skeleton's training corpus: Python standard-library source on this machine.

Every machine of this kind has it, it is PSF-licensed, and it is real, idiomatic Python. Test
suites, IDLE and lib2to3 (grammar fixtures, odd encodings) are left out. Files are split into
train / validation by a hash of their path, so the split is stable across machines.

Issue 3 replaces this with a larger, deduplicated, decontaminated corpus; this module keeps the
interface (`iter_files(split)`) that the tokenizer and training code read through.
"""

from __future__ import annotations

import hashlib
import sysconfig
from collections.abc import Iterator
from pathlib import Path

EXCLUDED_PARTS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "__pycache__", "turtledemo"}
VALIDATION_SHARE = 0.05


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relative_path: str) -> str:
    digest = hashlib.sha256(relative_path.encode()).digest()
    return "validation" if digest[0] / 256 < VALIDATION_SHARE else "train"


def iter_files(split: str | None = None) -> Iterator[tuple[str, str]]:
    """Yields (relative path, source text) for each kept file, in a stable order."""
    root = stdlib_root()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if EXCLUDED_PARTS.intersection(path.relative_to(root).parts):
            continue
        if split is not None and split_of(relative) != split:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if text.strip():
            yield relative, text
