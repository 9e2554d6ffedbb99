"""Builds Sprout's training corpus: permissively licensed, filtered, deduplicated and
decontaminated Python source, read only from this machine.

    .venv/bin/python models/python/build_corpus.py --out data/corpus [--max-mb N] [--progress]

The pipeline, in source order (the standard library, then one wheel per project): licenses →
path and content filters → exact duplicates → decontamination → near duplicates → the size cap
→ a train/validation/test split by file. Each step is a module of `corpus/`; every rule, and the
output's format: models/python/README.md, "Corpus". Deterministic: the same inputs give
byte-identical output.
"""

from __future__ import annotations

import argparse
import ast
import email.parser
import hashlib
import json
import sys
import sysconfig
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mbpp
from corpus.decontaminate import (
    BENCHMARK_ASSERT_THRESHOLD,
    CONTAMINATION_NGRAM,
    MIN_PROMPT_WORDS,
    Decontaminator,
    EvalSet,
)
from corpus.dedup import (
    LSH_BANDS,
    MINHASH_PERMUTATIONS,
    NEAR_DUPLICATE_JACCARD,
    SHINGLE_WORDS,
    NearDuplicateIndex,
    exact_key,
)
from corpus.filters import MAX_FILE_BYTES, content_drop_reason, path_drop_reason
from corpus.licenses import classify_license
from corpus.stdlib import iter_source_files
from corpus.wheels import (
    find_wheels,
    iter_wheel_python_files,
    parse_wheel_filename,
    read_wheel_metadata,
    select_newest_wheels,
)

DEFAULT_WHEEL_ROOTS = (Path("/opt/pypi/files"), Path("/opt/pypi-more"), Path("/opt/wheels"))
DEFAULT_EVAL_ROOT = mbpp.EVAL_DIR  # MBPP and QuixBugs (SPROUT_EVAL_DIR overrides)

SPLIT_SHARES = (("train", 0.90), ("validation", 0.05), ("test", 0.05))
SPLITS = tuple(name for name, _ in SPLIT_SHARES)

STDLIB_PROJECT = "cpython-stdlib"
STDLIB_LICENSE = "PSF-2.0"

DROP_REASONS = (
    "license",
    "vendored",
    "tests",
    "generated",
    "too_large",
    "not_utf8",
    "long_lines",
    "too_short",
    "unparsable",
    "exact_duplicate",
    "contaminated",
    "benchmark_like",
    "near_duplicate",
)


def split_of(project: str, path: str) -> str:
    """train / validation / test from a hash of "<project>/<path>" (never changes)."""
    digest = hashlib.sha256(f"{project}/{path}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, share in SPLIT_SHARES:
        cumulative += share
        if fraction < cumulative:
            return name
    return SPLIT_SHARES[-1][0]


@dataclass
class SourceReport:
    project: str
    version: str
    license: str
    origin: str
    files_kept: int = 0
    bytes_kept: int = 0


class CorpusBuilder:
    """Streams files, in source order, through the filters into the three split files."""

    def __init__(self, out_dir: Path, decontaminator: Decontaminator, max_bytes: int | None) -> None:
        self.decontaminator = decontaminator
        self.max_bytes = max_bytes
        self.drops: Counter[str] = Counter({reason: 0 for reason in DROP_REASONS})
        self.decontaminated_files: list[dict[str, str]] = []
        self.exact_seen: set[bytes] = set()
        self.near_index = NearDuplicateIndex()
        self.split_files = {split: 0 for split in SPLITS}
        self.split_bytes = {split: 0 for split in SPLITS}
        self.total_bytes = 0
        self.capped = False
        out_dir.mkdir(parents=True, exist_ok=True)
        self.writers = {split: open(out_dir / f"{split}.jsonl", "w", encoding="utf-8") for split in SPLITS}

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()

    def offer(self, report: SourceReport, split_project: str, path: str, size: int, read: Callable[[], bytes]) -> None:
        """Runs one file through every filter; `read()` gives its bytes and is called only if needed."""
        reason = path_drop_reason(path)
        if reason is None:
            reason, text, tree = content_drop_reason(b"" if size > MAX_FILE_BYTES else read(), size)
        if reason is None:
            reason = self._duplicate_or_contaminated(report, path, text, tree)
        if reason is not None:
            self.drops[reason] += 1
            return
        encoded_size = len(text.encode("utf-8"))
        if self.max_bytes is not None and self.total_bytes + encoded_size > self.max_bytes:
            self.capped = True
            return
        split = split_of(split_project, path)
        record = {
            "source": f"{report.project}=={report.version}",
            "license": report.license,
            "path": path,
            "text": text,
        }
        self.writers[split].write(json.dumps(record, ensure_ascii=False) + "\n")
        self.split_files[split] += 1
        self.split_bytes[split] += encoded_size
        self.total_bytes += encoded_size
        report.files_kept += 1
        report.bytes_kept += encoded_size

    def _duplicate_or_contaminated(self, report: SourceReport, path: str, text: str, tree: ast.AST) -> str | None:
        key = exact_key(text)
        if key in self.exact_seen:
            return "exact_duplicate"
        self.exact_seen.add(key)
        verdict = self.decontaminator.drop_reason(text, tree)
        if verdict is not None:
            self.decontaminated_files.append(
                {"source": f"{report.project}=={report.version}", "path": path, "rule": verdict[1]}
            )
            return verdict[0]
        if not self.near_index.add_unless_duplicate(text):
            return "near_duplicate"
        return None


def add_stdlib(builder: CorpusBuilder, stdlib_root: Path) -> SourceReport:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    report = SourceReport(STDLIB_PROJECT, version, STDLIB_LICENSE, str(stdlib_root))
    for relative, absolute in iter_source_files(stdlib_root):
        if builder.capped:
            break
        builder.offer(report, STDLIB_PROJECT, relative, absolute.stat().st_size, absolute.read_bytes)
    return report


def add_wheel(builder: CorpusBuilder, wheel_path: Path) -> tuple[SourceReport | None, dict | None]:
    """(report of the kept source, None) or (None, why the wheel was dropped)."""
    try:
        archive = zipfile.ZipFile(wheel_path)
    except (zipfile.BadZipFile, OSError) as error:
        return None, {"wheel": wheel_path.name, "license": "", "why": f"unreadable: {error}", "py_files": 0}
    with archive:
        metadata = read_wheel_metadata(archive)
        message = email.parser.Parser().parsestr(metadata, headersonly=True)
        key, filename_version = parse_wheel_filename(wheel_path.name)
        name = (message.get("Name") or key).strip()
        version = (message.get("Version") or filename_version).strip()
        verdict = classify_license(metadata)
        members = list(iter_wheel_python_files(archive))
        if not verdict.keep:
            builder.drops["license"] += len(members)
            return None, {
                "project": name,
                "version": version,
                "license": verdict.license,
                "why": verdict.detail,
                "py_files": len(members),
            }
        report = SourceReport(name, version, verdict.license, str(wheel_path))
        for member, size in members:
            if builder.capped:
                break
            builder.offer(report, key, member, size, lambda member=member: archive.read(member))
    return report, None


def build_corpus(
    out_dir: Path,
    stdlib_root: Path | None,
    wheel_roots: Sequence[Path],
    eval_root: Path,
    max_bytes: int | None = None,
    progress: bool = False,
) -> dict:
    """Builds the corpus into `out_dir`; writes and returns the manifest."""
    started = time.monotonic()
    decontaminator = Decontaminator(EvalSet.load(eval_root))
    builder = CorpusBuilder(out_dir, decontaminator, max_bytes)
    sources: list[SourceReport] = []
    dropped_sources: list[dict] = []
    wheels, wheels_skipped_older = select_newest_wheels(find_wheels(wheel_roots))
    try:
        if stdlib_root is not None:
            sources.append(add_stdlib(builder, stdlib_root))
        for wheel_path in wheels:
            if builder.capped:
                break
            report, dropped = add_wheel(builder, wheel_path)
            if report is not None:
                sources.append(report)
            if dropped is not None:
                dropped_sources.append(dropped)
            if progress:
                done = f"{report.files_kept} files" if report else f"dropped: {dropped['license'] or dropped['why']}"
                print(f"{time.monotonic() - started:7.1f}s {wheel_path.name}: {done}", file=sys.stderr)
    finally:
        builder.close()

    manifest = make_manifest(builder, sources, dropped_sources, wheels_skipped_older, time.monotonic() - started)
    (out_dir / "corpus.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def make_manifest(
    builder: CorpusBuilder,
    sources: list[SourceReport],
    dropped_sources: list[dict],
    wheels_skipped_older: int,
    seconds: float,
) -> dict:
    decontaminator = builder.decontaminator
    kept_sources = [source for source in sources if source.files_kept]
    licenses: dict[str, Counter[str]] = {}
    for source in kept_sources:
        counts = licenses.setdefault(source.license, Counter())
        counts.update({"sources": 1, "files": source.files_kept, "bytes": source.bytes_kept})
    return {
        "built_with": "models/python/build_corpus.py",
        "seconds": round(seconds, 1),
        "max_bytes": builder.max_bytes,
        "capped": builder.capped,
        "splits": {
            split: {"files": builder.split_files[split], "bytes": builder.split_bytes[split]} for split in SPLITS
        },
        "total": {
            "files": sum(builder.split_files.values()),
            "bytes": builder.total_bytes,
            "sources": len(kept_sources),
        },
        "drops": dict(builder.drops),
        "wheels_skipped_older_version": wheels_skipped_older,
        "licenses_kept": {
            name: dict(counts)
            for name, counts in sorted(licenses.items(), key=lambda item: (-item[1]["bytes"], item[0]))
        },
        "decontamination": {
            "rules": [
                f"contaminated: shares a {CONTAMINATION_NGRAM}-gram of code tokens (lowercased identifiers, "
                "numbers, operators; strings and comments removed) with an MBPP code or a QuixBugs "
                "solution/buggy_program; n-grams made only "
                "of keywords, builtins, self/cls, one-letter names, 0/1/2 and operators are not used",
                f"contaminated: contains an MBPP task description (lowercased, whitespace collapsed, "
                f">= {MIN_PROMPT_WORDS} words)",
                "contaminated: defines a function with the name and parameter names of a QuixBugs program; "
                "only compound snake_case names are used (one-word names such as bitcount or gcd are "
                "ordinary library function names)",
                f"benchmark_like: >= {BENCHMARK_ASSERT_THRESHOLD} asserts of the form f(<literals>) == <literal>",
            ],
            "eval_code_ngrams": int(len(decontaminator.ngrams)),
            "eval_boilerplate_ngrams_not_used": int(len(decontaminator.boilerplate_ngrams)),
            "eval_prompts": len(decontaminator.prompts),
            "quixbugs_signatures": [
                f"{name}({', '.join(params)})" for name, params in sorted(decontaminator.signatures)
            ],
            "hits": dict(sorted(decontaminator.hits.items())),
            "most_matched_ngrams": dict(decontaminator.matched_ngrams.most_common(20)),
            "files": builder.decontaminated_files,
        },
        "near_duplicates": {
            "shingle_words": SHINGLE_WORDS,
            "permutations": MINHASH_PERMUTATIONS,
            "bands": LSH_BANDS,
            "threshold": NEAR_DUPLICATE_JACCARD,
            "candidate_checks": builder.near_index.candidate_checks,
        },
        "sources": [
            {
                "project": source.project,
                "version": source.version,
                "license": source.license,
                "files_kept": source.files_kept,
                "bytes_kept": source.bytes_kept,
                "origin": source.origin,
            }
            for source in sources
        ],
        "dropped_sources": dropped_sources,
    }


def summary(manifest: dict, top: int = 15) -> str:
    lines = [
        f"corpus: {manifest['total']['files']:,} files, {manifest['total']['bytes'] / 1e6:,.1f} MB "
        f"from {manifest['total']['sources']} sources in {manifest['seconds']:.0f}s"
        + (" (stopped at --max-mb)" if manifest["capped"] else "")
    ]
    for split, numbers in manifest["splits"].items():
        lines.append(f"  {split:<10} {numbers['files']:>7,} files {numbers['bytes'] / 1e6:>9,.1f} MB")
    largest = sorted(manifest["sources"], key=lambda source: -source["bytes_kept"])[:top]
    lines.append(
        "largest sources: "
        + ", ".join(f"{source['project']} {source['bytes_kept'] / 1e6:.1f} MB" for source in largest)
    )
    lines.append("dropped files: " + ", ".join(f"{reason} {count:,}" for reason, count in manifest["drops"].items()))
    lines.append(
        "licenses kept (sources): "
        + ", ".join(f"{name} {counts['sources']}" for name, counts in manifest["licenses_kept"].items())
    )
    lines.append(
        f"dropped projects (license): {len(manifest['dropped_sources'])}; "
        f"older wheels skipped: {manifest['wheels_skipped_older_version']}"
    )
    lines.append(
        "decontamination hits: "
        + ", ".join(f"{rule} {count}" for rule, count in manifest["decontamination"]["hits"].items())
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory, e.g. data/corpus")
    parser.add_argument("--max-mb", type=float, default=None, help="cap on the total kept megabytes (1e6 bytes)")
    parser.add_argument("--eval-root", type=Path, default=DEFAULT_EVAL_ROOT)
    parser.add_argument("--progress", action="store_true", help="one line per source on stderr")
    args = parser.parse_args(argv)
    max_bytes = None if args.max_mb is None else int(args.max_mb * 1_000_000)
    manifest = build_corpus(
        args.out,
        Path(sysconfig.get_paths()["stdlib"]),
        DEFAULT_WHEEL_ROOTS,
        args.eval_root,
        max_bytes,
        progress=args.progress,
    )
    print(summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
