"""The wheels of the local mirror: one per project, the newest version, and the .py files and
METADATA inside it."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from packaging.version import InvalidVersion, Version


def normalise_project_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def version_sort_key(version: str) -> tuple:
    """PEP 440 order (`packaging`), without the +local part (a local tag such as +cpu names a build
    of the same release); a version packaging cannot parse sorts before every valid one."""
    try:
        return (1, Version(Version(version).public))
    except InvalidVersion:
        return (0, version)


def parse_wheel_filename(filename: str) -> tuple[str, str]:
    """(normalised project name, version) from ``{name}-{version}(-{build})?-{py}-{abi}-{plat}.whl``."""
    parts = filename[: -len(".whl")].split("-")
    return normalise_project_name(parts[0]), parts[1] if len(parts) > 1 else ""


def find_wheels(roots: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_dir():
            found.extend(sorted(root.rglob("*.whl")))
    return found


def select_newest_wheels(paths: Iterable[Path]) -> tuple[list[Path], int]:
    """One wheel per project: the newest version (first path in sorted order among equals),
    returned sorted by project name; also the number of other wheels skipped."""
    best: dict[str, tuple[tuple, str, Path]] = {}
    count = 0
    for path in paths:
        count += 1
        key, version = parse_wheel_filename(path.name)
        candidate = (version_sort_key(version), str(path), path)
        current = best.get(key)
        if current is None or candidate[0] > current[0] or (candidate[0] == current[0] and candidate[1] < current[1]):
            best[key] = candidate
    chosen = [best[key][2] for key in sorted(best)]
    return chosen, count - len(chosen)


def read_wheel_metadata(archive: zipfile.ZipFile) -> str:
    names = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA") and name.count("/") == 1]
    if not names:
        return ""
    return archive.read(sorted(names)[0]).decode("utf-8", errors="replace")


def iter_wheel_python_files(archive: zipfile.ZipFile) -> Iterator[tuple[str, int]]:
    """(member name, uncompressed size) of every .py member, sorted by name."""
    infos = [info for info in archive.infolist() if info.filename.endswith(".py") and not info.is_dir()]
    for info in sorted(infos, key=lambda item: item.filename):
        yield info.filename, info.file_size
