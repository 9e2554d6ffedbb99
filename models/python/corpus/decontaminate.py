"""Decontamination against the evaluation sets (MBPP, QuixBugs): a file that shares an informative
10-gram of code tokens with an eval program, contains an MBPP task description, or defines a
QuixBugs function (name and parameters) is contaminated; one with 3+ MBPP-style asserts is
benchmark-like. Why each rule is as narrow as it is: models/python/README.md, "Corpus"."""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .filters import parse_python
from .hashing import hash_tokens, ngram_hashes

CONTAMINATION_NGRAM = 10
MIN_PROMPT_WORDS = 6
BENCHMARK_ASSERT_THRESHOLD = 3


_CODE_TOKEN = re.compile(rb"[a-z_][a-z0-9_]*|\d+(?:\.\d+)?|\*\*|//|==|!=|<=|>=|->|[-+*/%<>=&|^~@]")


def _boilerplate_tokens() -> frozenset[bytes]:
    """Tokens that say nothing about where code came from: keywords, builtins, self/cls,
    one-letter names, 0/1/2 and operators."""
    import builtins
    import keyword

    words = {word.lower() for word in keyword.kwlist} | {name.lower() for name in dir(builtins)}
    words |= {"self", "cls", "0", "1", "2"} | set("abcdefghijklmnopqrstuvwxyz")
    operators = {
        "**",
        "//",
        "==",
        "!=",
        "<=",
        ">=",
        "->",
        "-",
        "+",
        "*",
        "/",
        "%",
        "<",
        ">",
        "=",
        "&",
        "|",
        "^",
        "~",
        "@",
    }
    return frozenset(word.encode() for word in words | operators)


BOILERPLATE_TOKENS = _boilerplate_tokens()


def is_distinctive_function_name(name: str) -> bool:
    """QuixBugs names used by the definition rule: compound snake_case names (detect_cycle,
    shortest_path_length). One-word names (gcd, sqrt, flatten, wrap, bitcount, mergesort, ...)
    are everyday library names: sympy defines bitcount(n), numba mergesort(arr)."""
    return "_" in name.strip("_")


# Strings and comments, matched left to right so a "#" inside a string or a quote inside a
# comment is consumed by the construct it belongs to.
_STRING_OR_COMMENT = re.compile(
    r"""[rRbBuUfF]{0,2}(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|#[^\n]*"""
)


def code_tokens(text: str) -> list[bytes]:
    """Lowercased identifiers, numbers and operators outside strings and comments; brackets,
    commas and dots dropped. (Regex patterns in strings made common 10-grams otherwise.)"""
    return _CODE_TOKEN.findall(_STRING_OR_COMMENT.sub(" ", text).lower().encode("utf-8"))


def code_ngram_hashes(text: str, n: int = CONTAMINATION_NGRAM) -> np.ndarray:
    return ngram_hashes(hash_tokens(code_tokens(text)), n)


def informative_code_ngrams(text: str, n: int = CONTAMINATION_NGRAM) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """(n-gram hashes, whether each n-gram has a non-boilerplate token, the tokens)."""
    tokens = code_tokens(text)
    hashes = ngram_hashes(hash_tokens(tokens), n)
    if not len(hashes):
        return hashes, np.zeros(0, dtype=bool), tokens
    informative = np.fromiter((token not in BOILERPLATE_TOKENS for token in tokens), dtype=np.int64, count=len(tokens))
    return hashes, np.convolve(informative, np.ones(n, dtype=np.int64), mode="valid") > 0, tokens


def normalise_prompt(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".").strip()


def function_signatures(tree: ast.AST) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(name, parameter names) of every function defined in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            yield node.name, tuple(arg.arg for arg in arguments.posonlyargs + arguments.args + arguments.kwonlyargs)


@dataclass
class EvalSet:
    """The evaluation programs the corpus must not contain."""

    codes: list[str] = field(default_factory=list)  # MBPP code, QuixBugs solution + buggy_program
    prompts: list[str] = field(default_factory=list)  # MBPP text / prompt
    signatures: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # QuixBugs functions

    @classmethod
    def load(cls, eval_root: Path) -> EvalSet:
        evals = cls()
        for task in _read_jsonl(eval_root / "mbpp" / "mbpp.jsonl"):
            evals.codes.append(task.get("code", ""))
            evals.prompts.append(task.get("text", ""))
        sanitized = eval_root / "mbpp" / "sanitized-mbpp.json"
        if sanitized.is_file():
            for task in json.loads(sanitized.read_text(encoding="utf-8")):
                evals.codes.append(task.get("code", ""))
                evals.prompts.append(task.get("prompt", ""))
        for program in _read_jsonl(eval_root / "quixbugs" / "quixbugs_python.jsonl"):
            for key in ("solution", "buggy_program"):
                code = program.get(key, "")
                evals.codes.append(code)
                tree = parse_python(code)
                if tree is not None:
                    evals.signatures.extend(
                        signature for signature in function_signatures(tree) if signature[0] == program.get("name")
                    )
        evals.signatures = sorted(set(evals.signatures))
        return evals


def _read_jsonl(path: Path) -> Iterator[dict]:
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Starred):  # QuixBugs style: f(*[127])
        node = node.value
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _is_literal_call(node: ast.AST, depth: int = 0) -> bool:
    """f(<literals>) with f a plain name, possibly wrapped once: set(f(...)), round(f(...), 2)."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return False
    if all(_is_literal(arg) for arg in node.args) and all(_is_literal(kw.value) for kw in node.keywords):
        return True
    return (
        depth == 0
        and len(node.args) >= 1
        and _is_literal_call(node.args[0], depth + 1)
        and all(_is_literal(arg) for arg in node.args[1:])
    )


_ASSERT_CALL = re.compile(r"^\s*assert\s+\(?\s*[A-Za-z_]\w*\(", re.MULTILINE)  # cheap pre-check


def count_benchmark_asserts(tree: ast.AST) -> int:
    """Asserts of the MBPP shape: ``assert f(<literals>) == <literal or literal call>``."""
    count = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert) or not isinstance(node.test, ast.Compare):
            continue
        compare = node.test
        if (
            len(compare.ops) == 1
            and isinstance(compare.ops[0], (ast.Eq, ast.Is))
            and _is_literal_call(compare.left)
            and (_is_literal(compare.comparators[0]) or _is_literal_call(compare.comparators[0]))
        ):
            count += 1
    return count


class Decontaminator:
    """Judges files against an EvalSet; counts which rule fired (and on what) in `hits`."""

    def __init__(self, evals: EvalSet) -> None:
        informative_hashes, boilerplate_hashes = [np.zeros(0, np.uint64)], [np.zeros(0, np.uint64)]
        self.ngram_text: dict[int, str] = {}
        for code in evals.codes:
            hashes, informative, tokens = informative_code_ngrams(code)
            informative_hashes.append(hashes[informative])
            boilerplate_hashes.append(hashes[~informative])
            for index in np.flatnonzero(informative):
                self.ngram_text[int(hashes[index])] = b" ".join(tokens[index : index + CONTAMINATION_NGRAM]).decode()
        self.ngrams = np.unique(np.concatenate(informative_hashes))
        # Only counted, never used to drop: how many files the boilerplate n-grams would have hit.
        self.boilerplate_ngrams = np.setdiff1d(np.unique(np.concatenate(boilerplate_hashes)), self.ngrams)
        prompts = {normalise_prompt(prompt) for prompt in evals.prompts}
        self.prompts = sorted(prompt for prompt in prompts if len(prompt.split()) >= MIN_PROMPT_WORDS)
        prefixes = sorted({" ".join(prompt.split()[:3]) for prompt in self.prompts})
        self.prompt_prefix_pattern = re.compile("|".join(map(re.escape, prefixes))) if prefixes else None
        self.signatures = {signature for signature in evals.signatures if is_distinctive_function_name(signature[0])}
        names = sorted({name for name, _ in self.signatures})
        self.def_pattern = (
            re.compile(r"^\s*(?:async\s+)?def\s+(?:" + "|".join(map(re.escape, names)) + r")\s*\(", re.MULTILINE)
            if names
            else None
        )
        self.hits: Counter[str] = Counter()
        self.matched_ngrams: Counter[str] = Counter()

    def shared_ngram(self, text: str) -> str | None:
        """The text of an informative eval 10-gram that `text` contains, if any."""
        hashes = code_ngram_hashes(text)
        found = _members(hashes, self.ngrams)
        if found.any():
            return self.ngram_text.get(int(hashes[np.flatnonzero(found)[0]]), "?")
        if _members(hashes, self.boilerplate_ngrams).any():
            self.hits["boilerplate_10gram_ignored"] += 1
        return None

    def contains_prompt(self, text: str) -> bool:
        if self.prompt_prefix_pattern is None:
            return False
        flat = " ".join(text.lower().split())
        for match in self.prompt_prefix_pattern.finditer(flat):
            if any(flat.startswith(prompt, match.start()) for prompt in self.prompts):
                return True
        return False

    def defined_eval_function(self, text: str, tree: ast.AST) -> str | None:
        if self.def_pattern is None or not self.def_pattern.search(text):
            return None
        for signature in function_signatures(tree):
            if signature in self.signatures:
                return signature[0]
        return None

    def drop_reason(self, text: str, tree: ast.AST) -> tuple[str, str] | None:
        """("contaminated" | "benchmark_like", which rule) or None."""
        ngram = self.shared_ngram(text)
        if ngram is not None:
            self.hits["code_10gram"] += 1
            self.matched_ngrams[ngram] += 1
            return "contaminated", f"10-gram: {ngram}"
        if self.contains_prompt(text):
            self.hits["mbpp_prompt"] += 1
            return "contaminated", "MBPP prompt"
        name = self.defined_eval_function(text, tree)
        if name is not None:
            self.hits[f"quixbugs_def:{name}"] += 1
            return "contaminated", f"QuixBugs def {name}"
        if (
            len(_ASSERT_CALL.findall(text)) >= BENCHMARK_ASSERT_THRESHOLD
            and count_benchmark_asserts(tree) >= BENCHMARK_ASSERT_THRESHOLD
        ):
            self.hits["benchmark_asserts"] += 1
            return "benchmark_like", "MBPP-style asserts"
        return None


def _members(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if not len(values) or not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    positions = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[positions] == values
