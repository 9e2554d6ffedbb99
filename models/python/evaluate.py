"""Evaluates exported Sprout models (denoiser.onnx) the way they are served, side by side.

    .venv/bin/python models/python/evaluate.py --model models/sprout-tiny [--model models/sprout-tiny-ar] \\
        --limit 20 --max-tokens 64 [--threshold 0.9] [--block-size 32] [--out results.json] [--record]

Every generation goes through sample.py's `onnx_forward` + `generate`. The tasks: MBPP pass@1
(mbpp.py's prompt and candidate, run in sandbox.py), continuation and infilling of held-out code,
repair of injected edits and QuixBugs, validation loss (likelihood.py), decoding statistics.
Prints a table (report.py); what each number measures: models/python/README.md, "Evaluation".
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

import corpus
import graph_io
import likelihood
import mbpp
import report
from sample import empty_cache, generate, generate_autoregressive, onnx_forward, position_predictions
from sandbox import OUTCOMES, Limits, network_isolation, parses, run_program
from tokenizer import load_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
QUIXBUGS_PATH = mbpp.EVAL_DIR / "quixbugs" / "quixbugs_python.jsonl"
CORPUS_TEST = REPO_ROOT / "data" / "corpus" / "test.jsonl"  # build_corpus.py's test split, when built here


@functools.cache
def held_out_files() -> tuple[list[tuple[str, str]], str]:
    """(files, description) of code no training phase saw, for continuation, infilling and repair.

    The built corpus's test split without its standard-library files (the first training phase
    read the standard library through corpus/stdlib.py, whose split differs). Without a built corpus
    (CI), corpus/stdlib.py's validation split of the standard library, which is held out of that phase
    but may overlap the built corpus's training split: said in the results."""
    if CORPUS_TEST.exists():
        records = (json.loads(line) for line in CORPUS_TEST.read_text().splitlines() if line.strip())
        files = [
            (f"{r['source'].split('==')[0]}/{r['path']}", r["text"])
            for r in records
            if not r["source"].startswith("cpython-stdlib")
        ]
        return files, f"{CORPUS_TEST.relative_to(REPO_ROOT)} without the standard library ({len(files)} files)"
    files = list(corpus.iter_files("validation"))
    return (
        files,
        f"corpus/stdlib.py's standard-library validation split ({len(files)} files; "
        "may overlap the built corpus's train split)",
    )


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class CountingForward:
    """Wraps a forward function and counts its calls (forward passes per generation)."""

    def __init__(self, forward: Callable) -> None:
        self.forward = forward
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.forward(*args, **kwargs)


@dataclass
class Model:
    directory: Path
    manifest: dict
    tokenizer: Tokenizer
    forward: CountingForward  # sample.py's onnx_forward, counted
    session: onnxruntime.InferenceSession  # the same graph, for the two-stream loss
    onnx_sha256: str

    @property
    def objective(self) -> str:
        """ "diffusion" (the denoiser) or "ar" (the autoregressive twin): how it decodes."""
        return self.manifest.get("objective", "diffusion")

    @property
    def context_length(self) -> int:
        return int(self.manifest["context_length"])

    @property
    def onnx_path(self) -> Path:
        return self.directory / self.manifest["graph"]["file"]

    def empty_cache(self):
        arch = self.manifest["architecture"]
        return empty_cache(arch["n_layers"], arch["n_heads"], arch["head_dim"])

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids


def load_model(directory: Path) -> Model:
    """Loads the graph twice (sample.py's forward, and a session for the loss) and makes sure both
    are the file whose sha256 is reported: a model re-exported meanwhile is refused."""
    manifest = json.loads((directory / "manifest.json").read_text())
    onnx_path = directory / manifest["graph"]["file"]
    graph = onnx_path.read_bytes()
    forward = onnx_forward(onnx_path)
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    digest = hashlib.sha256(graph).hexdigest()
    if graph_io.sha256(onnx_path) != digest:
        raise RuntimeError(f"{onnx_path} changed while it was being loaded; try again")
    return Model(
        directory=directory,
        manifest=manifest,
        tokenizer=load_tokenizer(directory / "tokenizer.json"),
        forward=CountingForward(forward),
        session=session,
        onnx_sha256=digest,
    )


def model_info(model: Model) -> dict:
    expected = model.manifest.get("files", {}).get(model.onnx_path.name, {}).get("sha256")
    return {
        "name": model.manifest.get("name", model.directory.name),
        "objective": model.objective,
        "directory": str(model.directory),
        "onnx_sha256": model.onnx_sha256,
        "manifest_onnx_sha256": expected,
        "sha256_matches_manifest": expected == model.onnx_sha256,
        "context_length": model.context_length,
        "parameters": model.manifest["architecture"].get("parameters"),
        "training_steps": model.manifest.get("training", {}).get("steps"),
    }


@dataclass
class Settings:
    threshold: float = 0.9
    block_size: int = 32
    max_tokens: int = 128
    limit: int | None = None
    continuation_files: int = 10
    val_windows: int = 8
    val_draws: int = 2  # per window and estimator
    val_length: int | None = None  # None: the manifest's context_length (the trained window)
    seed: int = 0
    timeout_s: float = 5.0
    infill_cases: int = 20  # per kind: single line, multi-line, MBPP line
    quixbugs_limit: int | None = None  # first N programs (all 40 by default)
    repair_cases: int = 50
    repair_threshold: float = 0.5


@dataclass
class Generation:
    text: str
    tokens: int
    steps: int  # denoising forwards
    forwards: int  # every forward: prefill, denoising steps, cache commits
    budget: int  # the max_tokens it ran with

    @property
    def ended_with_eos(self) -> bool:
        return self.tokens < self.budget  # generate() stops early only at <|eos|>


def run_generation(
    model: Model, prompt: str, max_tokens: int, settings: Settings, suffix: str | None = None
) -> Generation:
    before = model.forward.calls
    if model.objective == "ar":
        result = generate_autoregressive(
            model.forward, model.empty_cache(), model.tokenizer, prompt, max_tokens, suffix
        )
    else:
        result = generate(
            model.forward,
            model.empty_cache(),
            model.tokenizer,
            prompt,
            max_tokens,
            settings.block_size,
            settings.threshold,
            suffix,
        )
    blocks = result["blocks"]
    return Generation(
        text=result["text"],
        tokens=sum(b["tokens"] for b in blocks),
        steps=sum(b["steps"] for b in blocks),
        forwards=model.forward.calls - before,
        budget=max_tokens,
    )


def decoding_stats(generations: list[Generation]) -> dict:
    if not generations:
        return {"generations": 0}
    tokens = sum(g.tokens for g in generations)
    steps = sum(g.steps for g in generations)
    return {
        "generations": len(generations),
        "tokens_per_step": tokens / steps if steps else None,
        "forwards_per_generation": float(np.mean([g.forwards for g in generations])),
        "tokens_per_generation": tokens / len(generations),
        "ended_with_eos": float(np.mean([g.ended_with_eos for g in generations])),
    }


# --------------------------------------------------------------------------------------------
# MBPP
# --------------------------------------------------------------------------------------------


def mbpp_task(model: Model, task: dict, settings: Settings, limits: Limits) -> tuple[dict, Generation]:
    """One task: the prompt with its assert when that leaves `max_tokens` of room in the context,
    else without (and then the budget shrinks if it must); the candidate run on the tests."""
    prompt = mbpp.prompt(task)
    room = model.context_length - 1 - len(model.encode(prompt))  # 1: <|bos|>
    with_assert = room >= settings.max_tokens
    if not with_assert:
        prompt = mbpp.prompt(task, with_assert=False)
        room = model.context_length - 1 - len(model.encode(prompt))
    budget = max(1, min(settings.max_tokens, room))
    generation = run_generation(model, prompt, budget, settings)
    candidate = mbpp.candidate(task, generation.text)
    record = {
        "task_id": task["task_id"],
        "entry_point": mbpp.entry_point(task),
        "prompt_with_assert": with_assert,
        "max_tokens": budget,
        "tokens": generation.tokens,
        "steps": generation.steps,
        "completion": generation.text,
        "candidate": candidate,
    }
    if not parses(candidate):
        return {**record, "outcome": "syntax_error"}, generation
    execution = run_program(mbpp.program(task, candidate), limits)
    last_line = execution.stderr.strip().splitlines()[-1:] or [""]
    return {
        **record,
        "outcome": execution.outcome,
        "stderr_last_line": last_line[0][:300],
        "seconds": round(execution.seconds, 3),
    }, generation


def evaluate_mbpp(
    model: Model, settings: Settings, tasks: list[dict], log: Callable[[str], None]
) -> tuple[dict, list[Generation]]:
    limits = Limits(timeout_s=settings.timeout_s)
    records, generations = [], []
    for i, task in enumerate(tasks, 1):
        record, generation = mbpp_task(model, task, settings, limits)
        records.append(record)
        generations.append(generation)
        log(f"MBPP {i}/{len(tasks)} task {task['task_id']}: {record['outcome']}")
    counts = {o: sum(r["outcome"] == o for r in records) for o in OUTCOMES}
    total = len(records)
    return {
        "split": "test (task ids 11-510)",
        "tasks_in_split": len(mbpp.TEST_IDS),
        "total": total,
        "passed": counts["passed"],
        "pass_at_1": counts["passed"] / total if total else None,
        "outcomes": counts,
        "syntax_valid_rate": (total - counts["syntax_error"]) / total if total else None,
        "blank_completions": sum(not r["completion"].strip() for r in records),
        "prompts_without_assert": sum(not r["prompt_with_assert"] for r in records),
        "tasks": records,
    }, generations


# --------------------------------------------------------------------------------------------
# Validation loss
# --------------------------------------------------------------------------------------------


def validation_loss(model: Model, settings: Settings, data_dir: Path) -> dict:
    """The denoiser's ELBO (both estimators), or the twin's NLL, on evenly spaced windows of the
    validation split (likelihood.py)."""
    data = likelihood.load_validation_tokens(data_dir, model.tokenizer, model.directory / "tokenizer.json")
    length = settings.val_length or model.context_length
    arch = model.manifest["architecture"]
    if data.tokens.size < length or int(data.tokens.max()) >= arch["vocab_size"]:
        raise ValueError(f"validation tokens unusable for this model: {data.source}")
    if model.objective == "ar":
        return likelihood.autoregressive_nll(model.session, arch, data, length, settings.val_windows, settings.seed)
    return likelihood.diffusion_elbo(
        model.session,
        arch,
        model.manifest["special_tokens"]["mask"],
        data,
        length,
        settings.block_size,
        settings.val_windows,
        settings.val_draws,
        settings.seed,
    )


# --------------------------------------------------------------------------------------------
# Continuation of held-out code
# --------------------------------------------------------------------------------------------


@dataclass
class ContinuationCase:
    path: str
    prefix: str  # the whole file up to the cut (parses)
    prompt: str  # the last lines of prefix that fit the context
    next_line: str
    true_continuation: str  # the file's text after the cut


def continuation_case(
    model: Model, path: str, text: str, prompt_budget: int, rng: np.random.Generator, tries: int = 100
) -> ContinuationCase | None:
    lines = text.splitlines(keepends=True)
    cuts = [c for c in range(1, len(lines)) if lines[c].strip()]
    for cut in rng.permutation(cuts)[:tries]:
        prefix = "".join(lines[:cut])
        if not parses(prefix):
            continue
        prompt = _longest_fitting_suffix(model, lines[:cut], prompt_budget)
        if prompt:
            return ContinuationCase(path, prefix, prompt, lines[cut].rstrip("\n"), "".join(lines[cut:]))
    return None


def _longest_fitting_suffix(model: Model, lines: list[str], budget: int) -> str:
    prompt = ""
    for line in reversed(lines):
        if len(model.encode(line + prompt)) > budget:
            break
        prompt = line + prompt
    return prompt


def continuation_valid(prefix: str, completion: str) -> bool:
    """The completion holds a complete non-blank line, and prefix + completion up to its last
    newline parses. (Blank lines alone would leave the known-good prefix, which always parses.)"""
    complete = completion[: completion.rfind("\n") + 1]
    return bool(complete.strip()) and parses(prefix + complete)


def first_line_matches(completion: str, next_line: str) -> bool:
    return completion.split("\n", 1)[0].rstrip() == next_line.rstrip()


def evaluate_continuation(
    model: Model, settings: Settings, log: Callable[[str], None]
) -> tuple[dict, list[Generation]]:
    rng = np.random.default_rng(settings.seed)
    files = held_out_files()[0]
    chosen = sorted(rng.choice(len(files), size=min(settings.continuation_files, len(files)), replace=False))
    budget = model.context_length - 1 - settings.max_tokens
    records, generations = [], []
    for index in chosen:
        path, text = files[index]
        case = continuation_case(model, path, text, budget, rng)
        if case is None:
            records.append({"path": path, "skipped": "no usable cut"})
            continue
        generation = run_generation(model, case.prompt, settings.max_tokens, settings)
        generations.append(generation)
        true_ids = model.encode(case.true_continuation)[: max(generation.tokens, 1)]
        reference = model.tokenizer.decode(true_ids)
        records.append(
            {
                "path": path,
                "prompt_chars": len(case.prompt),
                "next_line": case.next_line,
                "completion": generation.text,
                "tokens": generation.tokens,
                "blank": not generation.text.strip(),
                "syntax_valid": continuation_valid(case.prefix, generation.text),
                "reference_syntax_valid": continuation_valid(case.prefix, reference),
                "first_line_exact_match": first_line_matches(generation.text, case.next_line),
            }
        )
        log(f"continuation {len(records)}/{len(chosen)} {path}: valid={records[-1]['syntax_valid']}")
    done = [r for r in records if "skipped" not in r]

    def rate(key: str) -> float | None:
        return sum(r[key] for r in done) / len(done) if done else None

    return {
        "files": len(done),
        "skipped": len(records) - len(done),
        "syntax_valid_rate": rate("syntax_valid"),
        "blank_completion_rate": rate("blank"),
        "reference_syntax_valid_rate": rate("reference_syntax_valid"),
        "first_line_exact_match_rate": rate("first_line_exact_match"),
        "measured": "prefix = whole file up to a cut that parses; valid = completion has a complete non-blank line and "
        "prefix + completion up to its last newline parses; reference = same for the true "
        "continuation of the same token count; exact match = first generated line == true next line "
        "(trailing whitespace ignored)",
        "cases": records,
    }, generations


# --------------------------------------------------------------------------------------------
# Infilling: a middle between a given prefix and suffix, its length unknown to the model
# --------------------------------------------------------------------------------------------


def _lines_that_fit(model: Model, lines: list[str], budget: int, from_end: bool) -> str:
    """As many whole lines as fit in `budget` tokens, taken from the end (prefix) or the start (suffix)."""
    kept: list[str] = []
    for line in reversed(lines) if from_end else lines:
        candidate = [line, *kept] if from_end else [*kept, line]
        if len(model.encode("".join(candidate))) > budget:
            break
        kept = candidate
    return "".join(kept)


def middle_matches(completion: str, middle: str) -> bool:
    """Exact match, line by line, trailing whitespace and blank lines at either end ignored."""
    norm = lambda text: [line.rstrip() for line in text.strip("\n").splitlines()]  # noqa: E731
    return norm(completion) == norm(middle)


def run_infill(model: Model, prefix: str, suffix: str, max_tokens: int, settings: Settings) -> Generation:
    return run_generation(model, prefix, max_tokens, settings, suffix=suffix)


def evaluate_infilling(
    model: Model, settings: Settings, tasks: list[dict], log: Callable[[str], None]
) -> tuple[dict, list[Generation]]:
    """Single-line and multi-line (2-4 lines) infilling of held-out files (corpus/stdlib.py's validation
    split: exact match), and single-line infilling of MBPP reference solutions (pass rate of the
    filled program on the task's tests). Prefix: up to 120 tokens of whole lines; suffix: up to 64."""
    rng = np.random.default_rng(settings.seed + 1)
    files = held_out_files()[0]
    records, generations = [], []
    for kind, span in (("single_line", (1, 1)), ("multi_line", (2, 4))):
        for index in rng.choice(len(files), size=min(settings.infill_cases, len(files)), replace=False):
            path, text = files[index]
            lines = text.splitlines(keepends=True)
            n = int(rng.integers(span[0], span[1] + 1))
            starts = [i for i in range(1, len(lines) - n) if all(lines[j].strip() for j in range(i, i + n))]
            if not starts:
                continue
            at = int(rng.choice(starts))
            middle = "".join(lines[at : at + n])
            prefix = _lines_that_fit(model, lines[:at], 120, from_end=True)
            suffix = _lines_that_fit(model, lines[at + n :], 64, from_end=False)
            generation = run_infill(model, prefix, suffix, 24 * n + 8, settings)
            generations.append(generation)
            records.append(
                {
                    "kind": kind,
                    "path": path,
                    "line": at + 1,
                    "middle": middle,
                    "completion": generation.text,
                    "ended_with_eos": generation.ended_with_eos,
                    "exact_match": middle_matches(generation.text, middle),
                }
            )
        log(f"infilling {kind}: {sum(r['exact_match'] for r in records if r['kind'] == kind)} exact")
    limits = Limits(timeout_s=settings.timeout_s)
    for task in tasks[: settings.infill_cases]:
        code = task["code"].replace("\r\n", "\n").replace("\t", "    ")
        lines = code.splitlines(keepends=True)
        body = [i for i, line in enumerate(lines) if line.startswith(" ") and line.strip()]
        if not body:
            continue
        at = body[len(body) // 2]
        prefix = f'"""{task["text"].strip()}\n{task["test_list"][0].strip()}\n"""\n' + "".join(lines[:at])
        suffix = "".join(lines[at + 1 :])
        generation = run_infill(model, prefix, suffix, 32, settings)
        generations.append(generation)
        filled = "".join(lines[:at]) + generation.text.rstrip("\n") + "\n" + suffix
        outcome = run_program(mbpp.program(task, filled), limits).outcome if parses(filled) else "syntax_error"
        records.append(
            {
                "kind": "mbpp_line",
                "task_id": task["task_id"],
                "line": at + 1,
                "middle": lines[at],
                "completion": generation.text,
                "exact_match": middle_matches(generation.text, lines[at]),
                "outcome": outcome,
            }
        )
    log(f"infilling mbpp_line: {sum(r.get('outcome') == 'passed' for r in records)} passed")

    def summary(kind: str) -> dict:
        done = [r for r in records if r["kind"] == kind]
        result = {
            "cases": len(done),
            "exact_match_rate": sum(r["exact_match"] for r in done) / len(done) if done else None,
        }
        if kind == "mbpp_line":
            result["pass_rate"] = sum(r["outcome"] == "passed" for r in done) / len(done) if done else None
        return result

    return {
        "single_line": summary("single_line"),
        "multi_line": summary("multi_line"),
        "mbpp_line": summary("mbpp_line"),
        "measured": "prompt <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|>; the model writes until <|eos|> "
        "(budget 24 tokens a line + 8); exact match line by line, trailing whitespace ignored; "
        "mbpp_line: the middle body line of the reference solution, filled program run on the task's tests",
        "cases": records,
    }, generations


# --------------------------------------------------------------------------------------------
# Repair: find and fix edited tokens in visible code
# --------------------------------------------------------------------------------------------


def inject_edits(
    tokens: list[int], block_size: int, n_edits: int, rng: np.random.Generator, pool: list[int]
) -> list[int]:
    """n substitutions/insertions/deletions at random places of the first `block_size` tokens;
    returns `block_size` tokens (`tokens` holds n_edits more, which deletions pull in)."""
    assert len(tokens) >= block_size + n_edits
    out = list(tokens)
    for _ in range(n_edits):
        at, kind = int(rng.integers(0, block_size)), int(rng.integers(3))
        if kind == 0:
            out[at] = int(rng.choice(pool))
        elif kind == 1:
            out.insert(at, int(rng.choice(pool)))
        else:
            del out[at]
    return out[:block_size]


def repair(model: Model, context: list[int], block: list[int], threshold: float, rounds: int = 2) -> list[int]:
    """Up to `rounds` passes: every position whose predicted token differs from the visible one
    with probability ≥ threshold is replaced (both models, same rule; see position_predictions)."""
    block = list(block)
    for _ in range(rounds):
        probs = position_predictions(model.forward, model.empty_cache(), context, block, model.objective)
        confidence, best = probs.max(-1)
        changes = [i for i in range(len(block)) if int(best[i]) != block[i] and float(confidence[i]) >= threshold]
        if not changes:
            break
        for i in changes:
            block[i] = int(best[i])
    return block


def token_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        row, previous = [i], row
        for j, y in enumerate(b, 1):
            row.append(min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (x != y)))
    return row[-1]


def evaluate_repair(model: Model, settings: Settings, log: Callable[[str], None]) -> dict:
    """Held-out code (corpus/stdlib.py's validation split): a 64-token context, then a block of
    `block_size` tokens with 1-2 injected edits; the model repairs the block in place. Reported:
    exact restoration, the token edit distance to the original before and after, and how often the
    same procedure changes an unedited block (false edits). QuixBugs: each buggy program is
    repaired block by block (the repaired text is the next block's context) and run on its tests."""
    rng = np.random.default_rng(settings.seed + 2)
    files = held_out_files()[0]
    bos = model.manifest["special_tokens"]["bos"]
    block_size, threshold = settings.block_size, settings.repair_threshold
    cases = []
    while len(cases) < settings.repair_cases:
        _, text = files[int(rng.integers(len(files)))]
        ids = model.encode(text)
        if len(ids) < 64 + block_size + 2:
            continue
        start = int(rng.integers(64, len(ids) - block_size - 1))
        context, original = [bos, *ids[start - 64 : start]], ids[start : start + block_size]
        corrupted = inject_edits(ids[start : start + block_size + 2], block_size, int(rng.integers(1, 3)), rng, ids)
        repaired, untouched = repair(model, context, corrupted, threshold), repair(model, context, original, threshold)
        cases.append(
            {
                "before": token_distance(corrupted, original),
                "after": token_distance(repaired, original),
                "restored": repaired == original,
                "false_edit": untouched != original,
            }
        )
    log(f"repair: {sum(c['restored'] for c in cases)}/{len(cases)} restored")
    quixbugs = evaluate_quixbugs(model, settings) if QUIXBUGS_PATH.exists() else None
    n = len(cases)
    return {
        "injected": {
            "cases": n,
            "threshold": threshold,
            "restored_rate": sum(c["restored"] for c in cases) / n,
            "mean_distance_before": sum(c["before"] for c in cases) / n,
            "mean_distance_after": sum(c["after"] for c in cases) / n,
            "false_edit_rate": sum(c["false_edit"] for c in cases) / n,
        },
        "quixbugs": quixbugs,
        "measured": f"position-wise repair: a visible token is replaced by the model's prediction when that has "
        f"probability >= {threshold} (up to 2 rounds); the denoiser sees the block bidirectionally, the "
        f"autoregressive twin predicts each token from those before it",
    }


def evaluate_quixbugs(model: Model, settings: Settings) -> dict:
    limits = Limits(timeout_s=settings.timeout_s)
    bos, block_size = model.manifest["special_tokens"]["bos"], settings.block_size
    records = []
    for line in QUIXBUGS_PATH.read_text().splitlines()[: settings.quixbugs_limit]:
        task = json.loads(line)
        ids = model.encode(task["buggy_program"])
        fixed: list[int] = []
        for start in range(0, len(ids), block_size):
            context = [bos, *(fixed[-(model.context_length - block_size - 1) :])]
            fixed += repair(model, context, ids[start : start + block_size], settings.repair_threshold)
        program = model.tokenizer.decode(fixed)
        changed = program != task["buggy_program"]
        if not changed:
            outcome = "unchanged"
        elif not parses(program):
            outcome = "syntax_error"
        else:
            outcome = run_program(f"{program}\n\n{task['tests']}\n", limits).outcome
        records.append(
            {
                "name": task["name"],
                "changed": changed,
                "outcome": outcome,
                "matches_solution": program.strip() == task["solution"].strip(),
            }
        )
    return {
        "programs": len(records),
        "repaired_rate": sum(r["outcome"] == "passed" for r in records) / len(records),
        "changed_rate": sum(r["changed"] for r in records) / len(records),
        "matches_solution_rate": sum(r["matches_solution"] for r in records) / len(records),
        "records": records,
    }


# --------------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------------


def evaluate(
    model_dir: Path,
    settings: Settings,
    mbpp_path: Path = mbpp.MBPP_PATH,
    data_dir: Path = REPO_ROOT / "data",
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    started = time.monotonic()
    model = load_model(model_dir)
    isolation_prefix, warning = network_isolation()
    tasks = mbpp.load_tasks(mbpp.TEST_IDS, mbpp_path)[: settings.limit]
    wall: dict[str, float] = {}

    clock = time.monotonic()
    mbpp_results, mbpp_generations = evaluate_mbpp(model, settings, tasks, log)
    wall["mbpp"] = time.monotonic() - clock

    clock = time.monotonic()
    continuation, continuation_generations = evaluate_continuation(model, settings, log)
    wall["continuation"] = time.monotonic() - clock

    clock = time.monotonic()
    infilling, infill_generations = evaluate_infilling(model, settings, tasks, log)
    wall["infilling"] = time.monotonic() - clock

    clock = time.monotonic()
    repair_results = evaluate_repair(model, settings, log)
    wall["repair"] = time.monotonic() - clock

    clock = time.monotonic()
    validation = validation_loss(model, settings, data_dir)
    wall["validation_loss"] = time.monotonic() - clock
    wall["total"] = time.monotonic() - started

    limits = Limits(timeout_s=settings.timeout_s)
    return {
        "model": model_info(model),
        "settings": asdict(settings),
        "sandbox": {
            "network_isolation": " ".join(isolation_prefix) or None,
            "warnings": [warning] if warning else [],
            "wall_timeout_s": limits.timeout_s,
            "cpu_s": limits.cpu_s,
            "memory_bytes": limits.memory_bytes,
            "file_bytes": limits.file_bytes,
        },
        "held_out_code": held_out_files()[1],
        "mbpp": mbpp_results,
        "continuation": continuation,
        "infilling": infilling,
        "repair": repair_results,
        "validation": validation,
        "decoding": {
            "mbpp": decoding_stats(mbpp_generations),
            "continuation": decoding_stats(continuation_generations),
            "infilling": decoding_stats(infill_generations),
            "all": decoding_stats(mbpp_generations + continuation_generations + infill_generations),
        },
        "wall_time_s": {k: round(v, 2) for k, v in wall.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        type=Path,
        required=True,
        action="append",
        help="a model directory (manifest.json, denoiser.onnx, tokenizer.json); repeat to compare side by side",
    )
    parser.add_argument("--limit", type=int, default=None, help="first N MBPP test tasks (default: all 500)")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--continuation-files", type=int, default=10)
    parser.add_argument("--val-windows", type=int, default=8)
    parser.add_argument("--val-draws", type=int, default=2, help="noise draws per window and estimator")
    parser.add_argument(
        "--val-length", type=int, default=None, help="window length (default: the manifest's context_length)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0, help="wall-clock seconds per MBPP program")
    parser.add_argument("--mbpp", type=Path, default=mbpp.MBPP_PATH)
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data", help="directory of validation.bin, data.json")
    parser.add_argument("--infill-cases", type=int, default=20, help="per kind: single line, 2-4 lines, MBPP line")
    parser.add_argument("--repair-cases", type=int, default=50)
    parser.add_argument("--repair-threshold", type=float, default=0.5)
    parser.add_argument(
        "--out", type=Path, default=None, help="write the full results as JSON here (a list with several models)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--record", action="store_true", help="write the headline figures into each model's manifest.json"
    )
    args = parser.parse_args()
    settings = Settings(
        threshold=args.threshold,
        block_size=args.block_size,
        max_tokens=args.max_tokens,
        limit=args.limit,
        continuation_files=args.continuation_files,
        val_windows=args.val_windows,
        val_draws=args.val_draws,
        val_length=args.val_length,
        seed=args.seed,
        timeout_s=args.timeout,
        infill_cases=args.infill_cases,
        repair_cases=args.repair_cases,
        repair_threshold=args.repair_threshold,
    )
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    all_results = [evaluate(model, settings, args.mbpp, args.data, log) for model in args.model]
    print(report.format_table(all_results))
    if args.record:
        report.record_in_manifests(all_results)
    if args.out:
        args.out.write_text(json.dumps(all_results[0] if len(all_results) == 1 else all_results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
