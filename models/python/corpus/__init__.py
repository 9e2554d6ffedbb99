"""Training text. `iter_files(split)`: the standard library (stdlib.py), the first training phase.
The parts build_corpus.py assembles the larger corpus from, one concern each: wheels.py (which
wheels), licenses.py (which licenses), filters.py (which files), dedup.py and decontaminate.py."""

from .stdlib import iter_files, split_of, stdlib_root

__all__ = ["iter_files", "split_of", "stdlib_root"]
