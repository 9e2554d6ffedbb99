"""The Python standard library of this machine as training text: PSF-licensed, real, idiomatic
Python. Test suites, IDLE and lib2to3 (grammar fixtures, odd encodings) are left out.

`iter_files(split)` is the first training phase's corpus (tokenizer.py, data.py; evaluate.py's
fallback held-out code), split train / validation by a hash of the path, stable across machines.
build_corpus.py reads the same files through `iter_source_files` and splits them its own way.
"""

from __future__ import annotations

import hashlib
import sysconfig
from collections.abc import Iterator
from pathlib import Path

EXCLUDED_DIRS = frozenset({"test", "tests", "idlelib", "lib2to3", "site-packages", "__pycache__", "turtledemo"})
VALIDATION_SHARE = 0.05


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relative_path: str) -> str:
    digest = hashlib.sha256(relative_path.encode()).digest()
    return "validation" if digest[0] / 256 < VALIDATION_SHARE else "train"


def iter_source_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, absolute path) of every .py file outside the excluded directories, sorted."""
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if EXCLUDED_DIRS.intersection(relative.parts[:-1]):
            continue
        yield relative.as_posix(), path


def iter_files(split: str | None = None) -> Iterator[tuple[str, str]]:
    """Yields (relative path, source text) for each kept file, in a stable order."""
    for relative, path in iter_source_files(stdlib_root()):
        if split is not None and split_of(relative) != split:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if text.strip():
            yield relative, text
