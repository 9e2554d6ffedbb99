"""MBPP, the one place its prompt and candidate rules live (evaluate.py, distill.py and the
TypeScript benchmarks all read them from here; models/python/README.md describes them).

    python models/python/mbpp.py prompts [--limit N]   # the test split's prompts, as JSON
    python models/python/mbpp.py candidates < completions.json

`candidates` reads a JSON list of {"task_id", "completion", "cut_off"} and writes the candidate
of each: how bench/quality.ts judges the functions the TypeScript runtime writes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tokenize
from pathlib import Path

# The evaluation sets sit in shared/ beside the checkout (SPROUT_EVAL_DIR overrides).
EVAL_DIR = Path(os.environ.get("SPROUT_EVAL_DIR", Path(__file__).resolve().parents[3] / "shared" / "eval"))
MBPP_PATH = EVAL_DIR / "mbpp" / "mbpp.jsonl"
TEST_IDS = range(11, 511)  # the dataset's README: task ids 11-510 are the test split
TRAIN_IDS = range(601, 975)  # 601-974: the train split (distill.py's stage 4 prompts)


def load_tasks(ids: range = TEST_IDS, path: Path = MBPP_PATH) -> list[dict]:
    """The tasks whose ids are in `ids`, in task-id order."""
    tasks = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted((t for t in tasks if t["task_id"] in ids), key=lambda t: t["task_id"])


def entry_point(task: dict) -> str:
    """The reference's first top-level function whose name the tests call (else its first)."""
    names = re.findall(r"^def\s+([A-Za-z_]\w*)\s*\(", task["code"].replace("\r\n", "\n"), flags=re.M)
    tests = "\n".join(task["test_list"])
    called = [n for n in names if re.search(rf"\b{re.escape(n)}\s*\(", tests)]
    if not (called or names):
        raise ValueError(f"MBPP task {task['task_id']}: no function in the reference code")
    return (called or names)[0]


def prompt(task: dict, with_assert: bool = True) -> str:
    """The task and its first assert as a docstring, then `def name(`: only the name is revealed."""
    shown = task["text"].strip() + ("\n" + task["test_list"][0].strip() if with_assert else "")
    return f'"""{shown}\n"""\ndef {entry_point(task)}('


def candidate(task: dict, completion: str, cut_off: bool = False) -> str:
    """The function `def name(` + completion writes: cut before the first new top-level
    statement. With `cut_off` (the tokens ran out) and nothing to cut before, the unfinished last
    line goes too, so that "parses" means "every complete line so far is valid Python"."""
    return f"def {entry_point(task)}(" + truncate_completion(completion, cut_off)


def truncate_completion(completion: str, cut_off: bool = False) -> str:
    """`candidate` without the 'def name(' part."""
    head = "def f("  # any name: only the layout matters
    source = head + completion
    kept = _cut_before_top_level(source)
    if kept is None:
        kept = source[: source.rfind("\n") + 1] if cut_off and "\n" in source else source
    return kept.rstrip()[len(head) :] + "\n"


def _cut_before_top_level(source: str) -> str | None:
    lines = source.splitlines(keepends=True)
    try:
        row = _first_top_level_row(source)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        row = _first_top_level_row_by_lines(lines)
    return "".join(lines[: row - 1]) if row is not None else None


def _first_top_level_row(source: str) -> int | None:
    """1-based row of the first token after row 1 that begins a logical line at column 0, None if
    there is none. Raises tokenize's errors if it fails before finding one (the line rule decides)."""
    skip = {tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE, tokenize.ENDMARKER}
    previous = None  # the previous significant token type
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in skip:
            if token.type == tokenize.NEWLINE:
                previous = token.type
            continue
        if previous == tokenize.NEWLINE and token.start[0] > 1 and token.start[1] == 0:
            return token.start[0]
        previous = token.type
    return None


def _first_top_level_row_by_lines(lines: list[str]) -> int | None:
    for row, line in enumerate(lines[1:], start=2):
        if line.strip() and not line[0].isspace() and not line.startswith(("#", ")", "]", "}")):
            return row
    return None


def program(task: dict, candidate: str) -> str:
    """What is executed: candidate, the task's setup code, its test asserts."""
    setup = task["test_setup_code"].replace("\r\n", "\n")
    tests = "\n".join(t.replace("\r\n", "\n") for t in task["test_list"])
    return f"{candidate}\n\n{setup}\n\n{tests}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prompts = sub.add_parser("prompts", help="the test split's prompts: [{task_id, entry_point, prompt}]")
    prompts.add_argument("--limit", type=int, default=None, help="the first N tasks of the split")
    sub.add_parser("candidates", help="stdin [{task_id, completion, cut_off}] → stdout [{task_id, candidate}]")
    args = parser.parse_args()
    if args.command == "prompts":
        tasks = load_tasks()[: args.limit]
        out = [{"task_id": t["task_id"], "entry_point": entry_point(t), "prompt": prompt(t)} for t in tasks]
    else:
        tasks = {t["task_id"]: t for t in load_tasks(range(1, 10**6))}
        out = [
            {"task_id": c["task_id"], "candidate": candidate(tasks[c["task_id"]], c["completion"], c["cut_off"])}
            for c in json.load(sys.stdin)
        ]
    json.dump(out, sys.stdout, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
