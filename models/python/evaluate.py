"""Evaluates an exported Sprout model (denoiser.onnx) the way it is served.

    .venv/bin/python models/python/evaluate.py --model models/sprout-tiny --limit 20 --max-tokens 64 \\
        [--threshold 0.9] [--block-size 32] [--out results.json]

Every generation goes through sample.py's `onnx_forward` + `generate`: the exported graph, decoded
with the reference of the served algorithm (blocks in order, threshold commits, greedy: each
committed token is the most probable one). Prints a short table; writes the full JSON (settings,
per-task records, decoding statistics, wall times) only when `--out` is given.

Metrics
=======

1. MBPP pass@1 (greedy, one sample per task) on the standard test split: task ids 11..510 of
   mbpp.jsonl (the dataset's README); `--limit N` takes the first N of them in task-id order.

   * Prompt: a docstring the model can continue, then the start of the function to write:
         '\"\"\"' + text + '\\n' + first test assert + '\\n\"\"\"\\n' + 'def ' + name + '('
     `name` is the first top-level `def` of the reference code whose name is called in the tests
     (reference solutions sometimes define helpers first); the first `def` if none is called. Only
     the name is revealed, not the reference's parameters: the assert shows how it is called.
     If the prompt with the assert does not leave `--max-tokens` of room in the manifest's
     `context_length` (the trained window), the assert is left out (a handful of tasks with long
     literals); if it still does not fit, the completion budget shrinks. Both are counted.
   * Candidate = 'def name(' + the completion cut before the first new top-level statement:
     the first token that starts a logical line at column 0 after the first line (found with
     `tokenize`, so strings, brackets and continuation lines are not mistaken for it). This is the
     usual "stop at the next top-level def/class/if __name__/print(" heuristic in general form:
     the function ends where anything unindented begins, so helpers the model writes after the
     function are cut too. If `tokenize` fails before finding such a token, a line rule is used:
     cut before the first line that is non-blank, unindented, not a comment and not a closing
     bracket.
   * Outcomes: syntax_error (`ast.parse` rejects the candidate; it is not run), passed (every
     assert held), failed (an assert of the tests failed), error (any other exception, e.g. a
     NameError or MemoryError, or death by a signal), timeout (wall clock or CPU limit).
   * Execution: candidate + test_setup_code + the test asserts, in a separate process
     (`sys.executable -I`) whose cwd is a fresh temporary directory, with a minimal environment,
     stdin on /dev/null, stdout/stderr to files outside that directory, and rlimits on CPU seconds,
     address space (512 MiB) and file size (set by a small bootstrap in the child itself, not by
     `preexec_fn`, which is unsafe with onnxruntime's threads in the parent). The parent enforces a
     wall-clock timeout (5 s) by killing the child's process group. Network: when
     `unshare --net --map-root-user` works here (checked once) the child runs in a new network
     namespace with no interface up; otherwise it runs without and a warning goes into the
     results. "passed" also needs a per-run nonce printed after the last assert, so a candidate that
     exits early (sys.exit(0), os._exit(0)) does not pass. The sandbox guards against accidents of a
     weak model, not against an adversary.

2. Syntax validity.
   * MBPP: the share of candidates (as above) that `ast.parse` accepts.
   * Continuations (4): the model's completion is appended to the *whole* file text before the cut
     (a prefix that parses, by choice of the cut), the result is cut after its last newline, and
     counted valid when `ast.parse` accepts it and the completion held at least one complete
     non-blank line (otherwise the parsed text would be the known-good prefix alone: a model that
     writes only newlines would score 100%). The share of blank completions is reported too. An unfinished block at the
     end (`if x:` as the last complete line) counts as invalid, so the same measure is reported
     for the true continuation of the same number of tokens as a reference point.

3. Validation loss and bits per byte, computed with the ONNX graph in the training layout:
   ids = clean ‖ noisy, positions 0..L-1 twice, attention_mask = model.training_mask(L, block),
   empty past (length 0). Windows of L = `context_length` tokens (the trained window; `--val-length`
   overrides it: the cost grows with L²) at evenly spaced offsets of
   data/validation.bin (when data/data.json names this model's tokenizer; otherwise the
   validation files of corpus.py are tokenized as `<|bos|> file <|eos|>`), several noise draws
   each, fixed seed. Two estimators of the masked-diffusion ELBO, both summed over masked
   positions and divided by L (nats per token):
   * `train`: train.py's `diffusion_loss` weighting: per block t ~ U(0.02, 1), each token masked
     with probability t, cross-entropy weighted 1/t. Comparable to the manifest's final_val_loss
     (same estimator; train.py draws its windows at random). Dropping t < 0.02 and rescaling makes
     it only approximately the ELBO, so it is not guaranteed to bound the NLL.
   * `exact`: the same integral over t in (0, 1] done analytically (∫ C(n,k) t^(k-1) (1-t)^(n-k) dt
     = 1/k): per block k ~ U{1..n} tokens masked uniformly at random, weighted n/k. No t_min cut
     and finite variance; this is the number that is a true upper bound (in expectation) on the
     negative log-likelihood of a window under the block-diffusion model.
   Bits per byte = nats/token × tokens/byte / ln 2, with tokens and bytes of the validation split
   (bos/eos included in tokens, as in the .bin). The exact ELBO is an upper bound on the NLL, not
   the NLL (a Monte-Carlo estimate of it: see sem_over_windows); the first block of each window
   has no context, as in training.

4. Continuation of held-out code (`held_out_files`: the built corpus's test split when present):
   `--continuation-files` files of it,
   chosen with the seed. Each is cut at a random line boundary where the file's text so far parses
   and the next line is not blank; the prompt is the longest run of whole lines ending at the cut
   that fits the context together with `--max-tokens`. Reported: syntax validity (2) and exact
   match of the first generated line against the true next line (trailing whitespace ignored).

5. Infilling (`evaluate_infilling`): single lines and runs of 2-4 lines cut out of held-out
   files, written between their prefix and suffix (exact match), and the middle body line of
   MBPP reference solutions (the filled program run on the task's tests). The model gets the
   fill-in-the-middle prompt both models were trained on and writes until its end token.

6. Repair (`evaluate_repair`): blocks of held-out code with 1-2 injected edits (substitution,
   insertion, deletion), repaired in place by the position-wise rule of `repair`; and QuixBugs'
   40 one-line bugs, repaired block by block and run on their tests.

Several `--model`s are evaluated one after another and printed side by side (the denoiser and
its autoregressive twin: the twin decodes one token per forward, its loss is its exact NLL).

Decoding statistics (all generations): tokens per denoising step (committed tokens / denoising
forwards), forward passes per generation (prefill + denoising steps + cache commits, counted by
wrapping the forward function), mean generated tokens and the share that ended with <|eos|>.

Known limits: a candidate cannot define helpers or imports at the top level (they are cut; it may
import inside the function); the prompt ends on the token '(' where BPE would often have merged
'(' with what follows (e.g. '():'); task 367's setup code needs the reference's `Node` class (and
the dataset notes its reference fails its own tests); one process, one sample: pass@1 only.
Cost on 2 busy CPU cores with the 1,024-token model: ~2 s per 64-token generation, so all 500
tasks at 128 tokens take about half an hour; the loss costs ~1.3 s per 1,024-token sequence.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import io
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

import corpus
from model import training_mask
from sample import empty_cache, generate, generate_autoregressive, onnx_forward, position_predictions
from tokenizer import load_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
# The evaluation sets sit in shared/ beside the checkout (SPROUT_EVAL_DIR overrides).
EVAL_DIR = Path(os.environ.get("SPROUT_EVAL_DIR", Path(__file__).resolve().parents[3] / "shared" / "eval"))
MBPP_PATH = EVAL_DIR / "mbpp" / "mbpp.jsonl"
QUIXBUGS_PATH = EVAL_DIR / "quixbugs" / "quixbugs_python.jsonl"
CORPUS_TEST = REPO_ROOT / "data" / "corpus" / "test.jsonl"  # build_corpus.py's test split, when built here


@functools.cache
def held_out_files() -> tuple[list[tuple[str, str]], str]:
    """(files, description) of code no training phase saw, for continuation, infilling and repair.

    The built corpus's test split without its standard-library files (the first training phase
    read the standard library through corpus.py, whose split differs). Without a built corpus
    (CI), corpus.py's validation split of the standard library, which is held out of that phase
    but may overlap the built corpus's training split: said in the results."""
    if CORPUS_TEST.exists():
        records = (json.loads(line) for line in CORPUS_TEST.read_text().splitlines() if line.strip())
        files = [(f"{r['source'].split('==')[0]}/{r['path']}", r["text"]) for r in records
                 if not r["source"].startswith("cpython-stdlib")]
        return files, f"{CORPUS_TEST.relative_to(REPO_ROOT)} without the standard library ({len(files)} files)"
    files = list(corpus.iter_files("validation"))
    return files, f"corpus.py's standard-library validation split ({len(files)} files; may overlap the built corpus's train split)"
MBPP_TEST_IDS = range(11, 511)  # the dataset's README: task ids 11-510 are the test split
T_MIN = 0.02  # train.py's diffusion_loss default


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
        """"diffusion" (the denoiser) or "ar" (the autoregressive twin): how it decodes."""
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


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_model(directory: Path) -> Model:
    """Loads the graph twice (sample.py's forward, and a session for the loss) and makes sure both
    are the file whose sha256 is reported: a model re-exported meanwhile is refused."""
    manifest = json.loads((directory / "manifest.json").read_text())
    onnx_path = directory / manifest["graph"]["file"]
    graph = onnx_path.read_bytes()
    forward = onnx_forward(onnx_path)
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    digest = hashlib.sha256(graph).hexdigest()
    if sha256_file(onnx_path) != digest:
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


def run_generation(model: Model, prompt: str, max_tokens: int, settings: Settings, suffix: str | None = None) -> Generation:
    before = model.forward.calls
    if model.objective == "ar":
        result = generate_autoregressive(model.forward, model.empty_cache(), model.tokenizer, prompt, max_tokens, suffix)
    else:
        result = generate(model.forward, model.empty_cache(), model.tokenizer, prompt, max_tokens,
                          settings.block_size, settings.threshold, suffix)
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


def parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return False
    return True


# --------------------------------------------------------------------------------------------
# The sandbox
# --------------------------------------------------------------------------------------------

# Runs in the child: limits itself, runs the program, reports how it ended through its exit code.
BOOTSTRAP = r"""
import resource, sys, traceback
program, nonce, cpu, memory, fsize = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
source = open(program, encoding="utf-8").read()
del sys.argv[1:]
try:
    exec(compile(source, "candidate.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
except AssertionError:
    traceback.print_exc()
    sys.exit(1)
except BaseException:
    traceback.print_exc()
    sys.exit(2)
print(nonce, flush=True)
"""

EXIT_FAILED, EXIT_ERROR = 1, 2
OUTCOMES = ("passed", "failed", "timeout", "error", "syntax_error")


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 5.0  # wall clock, enforced by the parent
    memory_bytes: int = 512 * 2**20  # RLIMIT_AS
    file_bytes: int = 4 * 2**20  # RLIMIT_FSIZE (stdout and stderr files included)

    @property
    def cpu_s(self) -> int:
        return math.ceil(self.timeout_s) + 1


@dataclass
class Execution:
    outcome: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    pid: int
    network_isolated: bool


@functools.cache
def network_isolation() -> tuple[list[str], str | None]:
    """(prefix that runs a command without network, warning). Checked once per process."""
    prefix = ["unshare", "--net", "--map-root-user"]
    try:
        done = subprocess.run([*prefix, sys.executable, "-I", "-c", "pass"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"unshare unusable ({error}); candidates run WITH network access"
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip()
        return [], f"unshare unusable ({reason}); candidates run WITH network access"
    return prefix, None


def _tail(path: Path, limit: int = 2000) -> str:
    data = path.read_bytes() if path.exists() else b""
    return data[-limit:].decode(errors="replace")


def run_program(source: str, limits: Limits = Limits(), isolate_network: bool = True) -> Execution:
    """Runs `source` in a separate, limited process; see the module docstring."""
    prefix, _ = network_isolation() if isolate_network else ([], None)
    nonce = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="sprout-eval-") as root:
        root_path = Path(root)
        work = root_path / "work"  # the candidate's cwd: fresh and empty
        work.mkdir()
        program = root_path / "candidate.py"
        program.write_text(source, encoding="utf-8")
        stdout_path, stderr_path = root_path / "stdout", root_path / "stderr"
        command = [*prefix, sys.executable, "-I", "-c", BOOTSTRAP, str(program), nonce,
                   str(limits.cpu_s), str(limits.memory_bytes), str(limits.file_bytes)]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work), "TMPDIR": str(work)}
        started = time.monotonic()
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=err, start_new_session=True)
            try:
                returncode: int | None = process.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                returncode = None
            finally:
                _kill_group(process.pid)  # also any children it left behind
                process.wait()
        seconds = time.monotonic() - started
        stdout, stderr = _tail(stdout_path), _tail(stderr_path)
    return Execution(_outcome(returncode, stdout, nonce), returncode, stdout, stderr, seconds, process.pid, bool(prefix))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _outcome(returncode: int | None, stdout: str, nonce: str) -> str:
    if returncode is None or returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout"  # wall clock (parent) or CPU seconds (soft limit: SIGXCPU, hard: SIGKILL)
    if returncode == 0 and stdout.rstrip().endswith(nonce):
        return "passed"
    if returncode == EXIT_FAILED:
        return "failed"
    return "error"


# --------------------------------------------------------------------------------------------
# MBPP
# --------------------------------------------------------------------------------------------


def load_mbpp_test_split(path: Path = MBPP_PATH) -> list[dict]:
    tasks = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted((t for t in tasks if t["task_id"] in MBPP_TEST_IDS), key=lambda t: t["task_id"])


def entry_point(task: dict) -> str:
    """The reference's first top-level function whose name the tests call (else its first)."""
    names = re.findall(r"^def\s+([A-Za-z_]\w*)\s*\(", task["code"].replace("\r\n", "\n"), flags=re.M)
    tests = "\n".join(task["test_list"])
    called = [n for n in names if re.search(rf"\b{re.escape(n)}\s*\(", tests)]
    if not (called or names):
        raise ValueError(f"MBPP task {task['task_id']}: no function in the reference code")
    return (called or names)[0]


def mbpp_prompt(task: dict, with_assert: bool = True) -> str:
    shown = task["text"].strip() + ("\n" + task["test_list"][0].strip() if with_assert else "")
    return f'"""{shown}\n"""\ndef {entry_point(task)}('


def truncate_completion(completion: str) -> str:
    """The function's text in `'def name(' + completion`, ending before the first new top-level
    statement (module docstring); returned without the 'def name(' part."""
    head = "def f("  # any name: only the layout matters
    return _cut_before_top_level(head + completion)[len(head):]


def _cut_before_top_level(source: str) -> str:
    lines = source.splitlines(keepends=True)
    try:
        row = _first_top_level_row(source)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        row = _first_top_level_row_by_lines(lines)
    kept = "".join(lines[: row - 1]) if row is not None else source
    return kept.rstrip() + "\n"


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


def mbpp_program(task: dict, candidate: str) -> str:
    """What is executed: candidate, the task's setup code, its test asserts."""
    setup = task["test_setup_code"].replace("\r\n", "\n")
    tests = "\n".join(t.replace("\r\n", "\n") for t in task["test_list"])
    return f"{candidate}\n\n{setup}\n\n{tests}\n"


def mbpp_task(model: Model, task: dict, settings: Settings, limits: Limits) -> tuple[dict, Generation]:
    prompt = mbpp_prompt(task)
    room = model.context_length - 1 - len(model.encode(prompt))  # 1: <|bos|>
    with_assert = room >= settings.max_tokens
    if not with_assert:
        prompt = mbpp_prompt(task, with_assert=False)
        room = model.context_length - 1 - len(model.encode(prompt))
    budget = max(1, min(settings.max_tokens, room))
    generation = run_generation(model, prompt, budget, settings)
    candidate = f"def {entry_point(task)}(" + truncate_completion(generation.text)
    record = {"task_id": task["task_id"], "entry_point": entry_point(task), "prompt_with_assert": with_assert,
              "max_tokens": budget, "tokens": generation.tokens, "steps": generation.steps,
              "completion": generation.text, "candidate": candidate}
    if not parses(candidate):
        return {**record, "outcome": "syntax_error"}, generation
    execution = run_program(mbpp_program(task, candidate), limits)
    last_line = execution.stderr.strip().splitlines()[-1:] or [""]
    return {**record, "outcome": execution.outcome, "stderr_last_line": last_line[0][:300],
            "seconds": round(execution.seconds, 3)}, generation


def evaluate_mbpp(model: Model, settings: Settings, tasks: list[dict], log: Callable[[str], None]) -> tuple[dict, list[Generation]]:
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
        "tasks_in_split": len(MBPP_TEST_IDS),
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


@dataclass
class ValidationTokens:
    tokens: np.ndarray
    tokens_per_byte: float
    source: str


def load_validation_tokens(model: Model, data_dir: Path) -> ValidationTokens:
    """data/validation.bin when data.json says it was made with this model's tokenizer (same
    bytes); otherwise the validation files of corpus.py, tokenized here."""
    summary_path, bin_path = data_dir / "data.json", data_dir / "validation.bin"
    if summary_path.exists() and bin_path.exists():
        summary = json.loads(summary_path.read_text())
        tokenizer_path = Path(summary.get("tokenizer", ""))
        tokenizer_path = tokenizer_path if tokenizer_path.is_absolute() else REPO_ROOT / tokenizer_path
        split = summary.get("splits", {}).get("validation", {})
        same_tokenizer = tokenizer_path.is_file() and tokenizer_path.read_bytes() == (model.directory / "tokenizer.json").read_bytes()
        if same_tokenizer and split.get("tokens") and split.get("bytes"):
            tokens = np.fromfile(bin_path, dtype=np.uint16)
            return ValidationTokens(tokens, split["tokens"] / split["bytes"], f"{bin_path} ({summary.get('source', '?')})")
    special = model.manifest["special_tokens"]
    ids: list[int] = []
    n_bytes = 0
    for _, text in corpus.iter_files("validation"):
        ids += [special["bos"], *model.encode(text), special["eos"]]
        n_bytes += len(text.encode())
    return ValidationTokens(np.asarray(ids, dtype=np.uint16), len(ids) / n_bytes, "corpus.iter_files('validation'), tokenized here")


def noise_block_wise(clean: np.ndarray, block: int, estimator: str, rng: np.random.Generator, mask_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy ids, ELBO weight per position: 0 where not masked)."""
    length = clean.size
    weight = np.zeros(length)
    for start in range(0, length, block):
        n = min(block, length - start)
        if estimator == "train":  # train.py: t ~ U(t_min, 1), Bernoulli(t) masks, weight 1/t
            t = T_MIN + (1 - T_MIN) * rng.random()
            masked = rng.random(n) < t
            weight[start : start + n] = masked / t
        elif estimator == "exact":  # t integrated out: k ~ U{1..n} masks, weight n/k
            k = int(rng.integers(1, n + 1))
            masked = np.zeros(n, dtype=bool)
            masked[rng.choice(n, size=k, replace=False)] = True
            weight[start : start + n] = masked * (n / k)
        else:
            raise ValueError(estimator)
    noisy = np.where(weight > 0, mask_id, clean)
    return noisy, weight


def two_stream_logits(session: onnxruntime.InferenceSession, clean: np.ndarray, noisy: np.ndarray, block: int, arch: dict) -> np.ndarray:
    """Logits of the noisy stream [batch, L, vocab] for ids = clean ‖ noisy (training layout)."""
    batch, length = noisy.shape
    ids = np.concatenate([np.broadcast_to(clean, (batch, length)), noisy], axis=1).astype(np.int64)
    positions = np.broadcast_to(np.tile(np.arange(length), 2), (batch, 2 * length)).astype(np.int64)
    mask = np.ascontiguousarray(np.broadcast_to(training_mask(length, block).numpy(), (batch, 2 * length, 2 * length)))
    past = np.zeros((arch["n_layers"], batch, arch["n_heads"], 0, arch["head_dim"]), dtype=np.float32)
    (logits,) = session.run(["logits"], {"input_ids": ids, "positions": np.ascontiguousarray(positions),
                                         "past_key": past, "past_value": past, "attention_mask": mask})
    return logits[:, length:]


def weighted_cross_entropy(logits: np.ndarray, targets: np.ndarray, weight: np.ndarray) -> float:
    """Σ weight · CE over positions with weight > 0, divided by the number of positions."""
    rows = weight > 0
    chosen = logits[rows].astype(np.float64)
    top = chosen.max(-1, keepdims=True)
    log_z = np.log(np.exp(chosen - top).sum(-1)) + top[:, 0]
    ce = log_z - chosen[np.arange(len(chosen)), targets[rows]]
    return float((ce * weight[rows]).sum() / weight.size)


def causal_logits(session: onnxruntime.InferenceSession, clean: np.ndarray, arch: dict) -> np.ndarray:
    """Logits [L, vocab] of one causal pass over a window (the autoregressive twin)."""
    length = clean.size
    past = np.zeros((arch["n_layers"], 1, arch["n_heads"], 0, arch["head_dim"]), dtype=np.float32)
    mask = np.tril(np.ones((length, length), dtype=bool))[None]
    (logits,) = session.run(["logits"], {"input_ids": clean[None].astype(np.int64), "positions": np.arange(length)[None],
                                         "past_key": past, "past_value": past, "attention_mask": mask})
    return logits[0]


def validation_loss(model: Model, settings: Settings, data_dir: Path) -> dict:
    if model.objective == "ar":
        return validation_nll_autoregressive(model, settings, data_dir)
    data = load_validation_tokens(model, data_dir)
    length = settings.val_length or model.context_length
    if data.tokens.size < length or int(data.tokens.max()) >= model.manifest["architecture"]["vocab_size"]:
        raise ValueError(f"validation tokens unusable for this model: {data.source}")
    arch, mask_id = model.manifest["architecture"], model.manifest["special_tokens"]["mask"]
    rng = np.random.default_rng(settings.seed)
    starts = np.linspace(0, data.tokens.size - length, settings.val_windows).astype(int)
    per_window: dict[str, list[float]] = {"train": [], "exact": []}
    for start in starts:
        clean = data.tokens[start : start + length].astype(np.int64)
        draws = [(est, *noise_block_wise(clean, settings.block_size, est, rng, mask_id))
                 for est in per_window for _ in range(settings.val_draws)]
        logits = two_stream_logits(model.session, clean, np.stack([d[1] for d in draws]), settings.block_size, arch)
        for estimator in per_window:
            losses = [weighted_cross_entropy(logits[i], clean, w) for i, (est, _, w) in enumerate(draws) if est == estimator]
            per_window[estimator].append(float(np.mean(losses)))
    result: dict[str, Any] = {
        "data": data.source, "windows": int(len(starts)), "window_tokens": length, "draws_per_window": settings.val_draws,
        "block_size": settings.block_size, "seed": settings.seed, "tokens_per_byte": data.tokens_per_byte,
        "note": "exact: the masked-diffusion ELBO, an upper bound on the NLL (in expectation), not the NLL itself; "
                "train: train.py's estimator (t >= 0.02, rescaled), comparable to training logs, not a strict bound",
    }
    for estimator, values in per_window.items():
        nats = float(np.mean(values))
        sem = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
        result[estimator] = {"nats_per_token": nats, "sem_over_windows": sem,
                             "bits_per_byte": nats * data.tokens_per_byte / math.log(2)}
    result["train"]["weighting"] = f"train.py: per block t ~ U({T_MIN}, 1), mask prob t, CE weighted 1/t"
    result["exact"]["weighting"] = "t integrated out: per block k ~ U{1..n} masked, CE weighted n/k"
    return result


def validation_nll_autoregressive(model: Model, settings: Settings, data_dir: Path) -> dict:
    """The twin's exact NLL on the same windows as the denoiser's ELBO (each window's first token,
    which has no context, is not predicted). Reported under both keys so tables line up."""
    data = load_validation_tokens(model, data_dir)
    length = settings.val_length or model.context_length
    arch = model.manifest["architecture"]
    starts = np.linspace(0, data.tokens.size - length, settings.val_windows).astype(int)
    values = []
    for start in starts:
        clean = data.tokens[start : start + length].astype(np.int64)
        logits = causal_logits(model.session, clean, arch)[:-1]
        values.append(weighted_cross_entropy(logits, clean[1:], np.ones(length - 1)))
    nats = float(np.mean(values))
    sem = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    entry = {"nats_per_token": nats, "sem_over_windows": sem, "bits_per_byte": nats * data.tokens_per_byte / math.log(2),
             "weighting": "exact next-token NLL (causal pass), positions 1..L-1 of each window"}
    return {"data": data.source, "windows": int(len(starts)), "window_tokens": length, "draws_per_window": 1,
            "seed": settings.seed, "tokens_per_byte": data.tokens_per_byte,
            "note": "autoregressive twin: the NLL itself (no bound); same windows as the denoiser's ELBO",
            "train": entry, "exact": entry}


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


def continuation_case(model: Model, path: str, text: str, prompt_budget: int, rng: np.random.Generator, tries: int = 100) -> ContinuationCase | None:
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


def evaluate_continuation(model: Model, settings: Settings, log: Callable[[str], None]) -> tuple[dict, list[Generation]]:
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
        records.append({
            "path": path, "prompt_chars": len(case.prompt), "next_line": case.next_line,
            "completion": generation.text, "tokens": generation.tokens, "blank": not generation.text.strip(),
            "syntax_valid": continuation_valid(case.prefix, generation.text),
            "reference_syntax_valid": continuation_valid(case.prefix, reference),
            "first_line_exact_match": first_line_matches(generation.text, case.next_line),
        })
        log(f"continuation {len(records)}/{len(chosen)} {path}: valid={records[-1]['syntax_valid']}")
    done = [r for r in records if "skipped" not in r]
    rate = (lambda key: sum(r[key] for r in done) / len(done) if done else None)
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


def evaluate_infilling(model: Model, settings: Settings, tasks: list[dict], log: Callable[[str], None]) -> tuple[dict, list[Generation]]:
    """Single-line and multi-line (2-4 lines) infilling of held-out files (corpus.py's validation
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
            records.append({"kind": kind, "path": path, "line": at + 1, "middle": middle, "completion": generation.text,
                            "ended_with_eos": generation.ended_with_eos, "exact_match": middle_matches(generation.text, middle)})
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
        outcome = run_program(mbpp_program(task, filled), limits).outcome if parses(filled) else "syntax_error"
        records.append({"kind": "mbpp_line", "task_id": task["task_id"], "line": at + 1, "middle": lines[at],
                        "completion": generation.text, "exact_match": middle_matches(generation.text, lines[at]),
                        "outcome": outcome})
    log(f"infilling mbpp_line: {sum(r.get('outcome') == 'passed' for r in records)} passed")

    def summary(kind: str) -> dict:
        done = [r for r in records if r["kind"] == kind]
        result = {"cases": len(done), "exact_match_rate": sum(r["exact_match"] for r in done) / len(done) if done else None}
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


def inject_edits(tokens: list[int], block_size: int, n_edits: int, rng: np.random.Generator, pool: list[int]) -> list[int]:
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
    """Held-out code (corpus.py's validation split): a 64-token context, then a block of
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
        cases.append({"before": token_distance(corrupted, original), "after": token_distance(repaired, original),
                      "restored": repaired == original, "false_edit": untouched != original})
    log(f"repair: {sum(c['restored'] for c in cases)}/{len(cases)} restored")
    quixbugs = evaluate_quixbugs(model, settings) if QUIXBUGS_PATH.exists() else None
    n = len(cases)
    return {
        "injected": {
            "cases": n, "threshold": threshold,
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
        records.append({"name": task["name"], "changed": changed, "outcome": outcome,
                        "matches_solution": program.strip() == task["solution"].strip()})
    return {"programs": len(records), "repaired_rate": sum(r["outcome"] == "passed" for r in records) / len(records),
            "changed_rate": sum(r["changed"] for r in records) / len(records),
            "matches_solution_rate": sum(r["matches_solution"] for r in records) / len(records), "records": records}


# --------------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------------


def evaluate(model_dir: Path, settings: Settings, mbpp_path: Path = MBPP_PATH, data_dir: Path = REPO_ROOT / "data",
             log: Callable[[str], None] = lambda message: None) -> dict:
    started = time.monotonic()
    model = load_model(model_dir)
    isolation_prefix, warning = network_isolation()
    tasks = load_mbpp_test_split(mbpp_path)[: settings.limit]
    wall: dict[str, float] = {}

    clock = time.monotonic()
    mbpp, mbpp_generations = evaluate_mbpp(model, settings, tasks, log)
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
            "wall_timeout_s": limits.timeout_s, "cpu_s": limits.cpu_s,
            "memory_bytes": limits.memory_bytes, "file_bytes": limits.file_bytes,
        },
        "held_out_code": held_out_files()[1],
        "mbpp": mbpp,
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


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def table_rows(results: dict) -> list[tuple[str, str]]:
    m, c, v, d = results["mbpp"], results["continuation"], results["validation"], results["decoding"]["all"]
    f, r = results["infilling"], results["repair"]
    q, inj = r["quixbugs"], r["injected"]
    mbpp_line = f["mbpp_line"]
    return [
        ("objective", results["model"]["objective"]),
        ("MBPP pass@1 (greedy)", f"{m['passed']}/{m['total']} = {_pct(m['pass_at_1'])}"),
        ("MBPP candidates syntax-valid", _pct(m["syntax_valid_rate"])),
        ("continuation syntax-valid", f"{_pct(c['syntax_valid_rate'])} (true text {_pct(c['reference_syntax_valid_rate'])})"),
        ("continuation next-line exact", _pct(c["first_line_exact_match_rate"])),
        ("infill single line, exact", f"{_pct(f['single_line']['exact_match_rate'])} of {f['single_line']['cases']}"),
        ("infill 2-4 lines, exact", f"{_pct(f['multi_line']['exact_match_rate'])} of {f['multi_line']['cases']}"),
        ("infill MBPP line, tests pass", f"{_pct(mbpp_line['pass_rate'])} of {mbpp_line['cases']} (exact {_pct(mbpp_line['exact_match_rate'])})"),
        ("repair injected edits, restored", f"{_pct(inj['restored_rate'])} of {inj['cases']}"),
        ("repair: edit distance before → after", f"{inj['mean_distance_before']:.2f} → {inj['mean_distance_after']:.2f}"),
        ("repair: clean blocks changed", _pct(inj["false_edit_rate"])),
        ("QuixBugs repaired (tests pass)", "n/a" if q is None else f"{_pct(q['repaired_rate'])} of {q['programs']} (changed {_pct(q['changed_rate'])})"),
        ("val bits/byte (ELBO bound | AR NLL)", f"{v['exact']['bits_per_byte']:.3f}"),
        ("val nats/token (ELBO bound | AR NLL)", f"{v['exact']['nats_per_token']:.3f} ± {v['exact']['sem_over_windows'] or 0:.3f}"),
        ("tokens per step", "n/a" if d.get("tokens_per_step") is None else f"{d['tokens_per_step']:.2f}"),
        ("forward passes per generation", "n/a" if "forwards_per_generation" not in d else f"{d['forwards_per_generation']:.1f}"),
        ("wall time", f"{results['wall_time_s']['total']:.0f} s"),
    ]


def summary(results: dict) -> dict:
    """The headline figures of one model, for its manifest."""
    f, inj, q = results["infilling"], results["repair"]["injected"], results["repair"]["quixbugs"]
    return {
        "objective": results["model"]["objective"],
        "mbpp_pass_at_1": results["mbpp"]["pass_at_1"], "mbpp_tasks": results["mbpp"]["total"],
        "mbpp_syntax_valid_rate": results["mbpp"]["syntax_valid_rate"],
        "continuation_syntax_valid_rate": results["continuation"]["syntax_valid_rate"],
        "infill_single_line_exact": f["single_line"]["exact_match_rate"],
        "infill_multi_line_exact": f["multi_line"]["exact_match_rate"],
        "infill_mbpp_line_pass_rate": f["mbpp_line"]["pass_rate"],
        "repair_restored_rate": inj["restored_rate"], "repair_false_edit_rate": inj["false_edit_rate"],
        "quixbugs_repaired_rate": None if q is None else q["repaired_rate"],
        "validation_bits_per_byte": results["validation"]["exact"]["bits_per_byte"],
        "validation_measure": "NLL" if results["model"]["objective"] == "ar" else "ELBO (upper bound on NLL)",
        "tokens_per_step": results["decoding"]["all"].get("tokens_per_step"),
    }


def record_in_manifests(all_results: list[dict]) -> None:
    """Every evaluated model's manifest gets the headline figures of all of them, side by side."""
    figures = {results["model"]["name"]: summary(results) for results in all_results}
    for results in all_results:
        path = Path(results["model"]["directory"]) / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["evaluation"] = {"harness": "models/python/evaluate.py", "settings": results["settings"], "models": figures}
        path.write_text(json.dumps(manifest, indent=2) + "\n")


def format_table(all_results: list[dict]) -> str:
    """One column per model, side by side."""
    columns = [dict(table_rows(results)) for results in all_results]
    names = [results["model"]["name"] for results in all_results]
    labels = [label for label, _ in table_rows(all_results[0])]
    widths = [max(len(label) for label in labels)] + [max(len(name), *(len(col[label]) for label in labels)) for name, col in zip(names, columns)]
    line = lambda cells: "  ".join(f"{cell:<{w}}" for cell, w in zip(cells, widths)).rstrip()  # noqa: E731
    s = all_results[0]["settings"]
    header = [f"threshold {s['threshold']}, block {s['block_size']}, max tokens {s['max_tokens']}, MBPP limit {s['limit']}, "
              f"sandbox network: {all_results[0]['sandbox']['network_isolation'] or 'NOT isolated'}",
              line(["", *names])]
    notes = ["Denoiser: the exact ELBO is an upper bound on the NLL; the twin's figure is its NLL."]
    for results in all_results:
        info = results["model"]
        if not info["sha256_matches_manifest"]:
            notes.append(f"warning: {info['name']}: denoiser.onnx does not match its manifest's sha256")
        notes += [f"warning: {w}" for w in results["sandbox"]["warnings"]]
    return "\n".join(header + [line([label, *(col[label] for col in columns)]) for label in labels] + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, action="append",
                        help="a model directory (manifest.json, denoiser.onnx, tokenizer.json); repeat to compare side by side")
    parser.add_argument("--limit", type=int, default=None, help="first N MBPP test tasks (default: all 500)")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--continuation-files", type=int, default=10)
    parser.add_argument("--val-windows", type=int, default=8)
    parser.add_argument("--val-draws", type=int, default=2, help="noise draws per window and estimator")
    parser.add_argument("--val-length", type=int, default=None, help="window length (default: the manifest's context_length)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=5.0, help="wall-clock seconds per MBPP program")
    parser.add_argument("--mbpp", type=Path, default=MBPP_PATH)
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data", help="directory of validation.bin, data.json")
    parser.add_argument("--infill-cases", type=int, default=20, help="per kind: single line, 2-4 lines, MBPP line")
    parser.add_argument("--repair-cases", type=int, default=50)
    parser.add_argument("--repair-threshold", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=None, help="write the full results as JSON here (a list with several models)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--record", action="store_true", help="write the headline figures into each model's manifest.json")
    args = parser.parse_args()
    settings = Settings(threshold=args.threshold, block_size=args.block_size, max_tokens=args.max_tokens,
                        limit=args.limit, continuation_files=args.continuation_files, val_windows=args.val_windows,
                        val_draws=args.val_draws, val_length=args.val_length, seed=args.seed, timeout_s=args.timeout,
                        infill_cases=args.infill_cases, repair_cases=args.repair_cases, repair_threshold=args.repair_threshold)
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    all_results = [evaluate(model, settings, args.mbpp, args.data, log) for model in args.model]
    print(format_table(all_results))
    if args.record:
        record_in_manifests(all_results)
    if args.out:
        args.out.write_text(json.dumps(all_results[0] if len(all_results) == 1 else all_results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
