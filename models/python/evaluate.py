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

4. Continuation of held-out code: `--continuation-files` files of corpus.iter_files("validation"),
   chosen with the seed. Each is cut at a random line boundary where the file's text so far parses
   and the next line is not blank; the prompt is the longest run of whole lines ending at the cut
   that fits the context together with `--max-tokens`. Reported: syntax validity (2) and exact
   match of the first generated line against the true next line (trailing whitespace ignored).

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
from sample import empty_cache, generate, onnx_forward

REPO_ROOT = Path(__file__).resolve().parents[2]
# The evaluation sets sit in shared/ beside the checkout (SPROUT_EVAL_DIR overrides).
EVAL_DIR = Path(os.environ.get("SPROUT_EVAL_DIR", Path(__file__).resolve().parents[3] / "shared" / "eval"))
MBPP_PATH = EVAL_DIR / "mbpp" / "mbpp.jsonl"
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
        tokenizer=Tokenizer.from_file(str(directory / "tokenizer.json")),
        forward=CountingForward(forward),
        session=session,
        onnx_sha256=digest,
    )


def model_info(model: Model) -> dict:
    expected = model.manifest.get("files", {}).get(model.onnx_path.name, {}).get("sha256")
    return {
        "name": model.manifest.get("name", model.directory.name),
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


def run_generation(model: Model, prompt: str, max_tokens: int, settings: Settings) -> Generation:
    before = model.forward.calls
    result = generate(model.forward, model.empty_cache(), model.tokenizer, prompt, max_tokens,
                      settings.block_size, settings.threshold)
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


def validation_loss(model: Model, settings: Settings, data_dir: Path) -> dict:
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
    files = list(corpus.iter_files("validation"))
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
        "mbpp": mbpp,
        "continuation": continuation,
        "validation": validation,
        "decoding": {
            "mbpp": decoding_stats(mbpp_generations),
            "continuation": decoding_stats(continuation_generations),
            "all": decoding_stats(mbpp_generations + continuation_generations),
        },
        "wall_time_s": {k: round(v, 2) for k, v in wall.items()},
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def format_table(results: dict) -> str:
    m, c, v, d = results["mbpp"], results["continuation"], results["validation"], results["decoding"]["all"]
    s, info = results["settings"], results["model"]
    counts = ", ".join(f"{k} {n}" for k, n in m["outcomes"].items() if k != "passed")
    sha = f"{info['onnx_sha256'][:12]} ({'matches' if info['sha256_matches_manifest'] else 'DOES NOT match'} manifest)"
    rows = [
        ("MBPP pass@1 (greedy)", f"{m['passed']}/{m['total']} = {_pct(m['pass_at_1'])}  [{counts}]"),
        ("MBPP candidates syntax-valid", _pct(m["syntax_valid_rate"])),
        ("continuation syntax-valid", f"{_pct(c['syntax_valid_rate'])}  (true text: {_pct(c['reference_syntax_valid_rate'])}, {c['files']} files)"),
        ("continuation next-line exact match", _pct(c["first_line_exact_match_rate"])),
        ("val ELBO, train.py weighting", f"{v['train']['nats_per_token']:.3f} nats/token, {v['train']['bits_per_byte']:.3f} bits/byte"),
        ("val ELBO, exact (NLL upper bound)", f"{v['exact']['nats_per_token']:.3f} nats/token, {v['exact']['bits_per_byte']:.3f} bits/byte"),
        ("tokens per denoising step", "n/a" if d.get("tokens_per_step") is None else f"{d['tokens_per_step']:.2f}"),
        ("forward passes per generation", "n/a" if "forwards_per_generation" not in d else f"{d['forwards_per_generation']:.1f}"),
        ("wall time", f"{results['wall_time_s']['total']:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    header = [f"{info['name']}  onnx sha256 {sha}",
              f"threshold {s['threshold']}, block {s['block_size']}, max tokens {s['max_tokens']}, "
              f"limit {s['limit']}, sandbox network: {results['sandbox']['network_isolation'] or 'NOT isolated'}"]
    notes = ["The exact ELBO is an upper bound on the negative log-likelihood, not the NLL; "
             "the train.py-weighted value is comparable to training logs, not a strict bound."]
    notes += [f"warning: {w}" for w in results["sandbox"]["warnings"]]
    return "\n".join(header + [f"{name:<{width}}  {value}" for name, value in rows] + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a model directory (manifest.json, denoiser.onnx, tokenizer.json)")
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
    parser.add_argument("--out", type=Path, default=None, help="write the full results as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args()
    settings = Settings(threshold=args.threshold, block_size=args.block_size, max_tokens=args.max_tokens,
                        limit=args.limit, continuation_files=args.continuation_files, val_windows=args.val_windows,
                        val_draws=args.val_draws, val_length=args.val_length, seed=args.seed, timeout_s=args.timeout)
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    results = evaluate(args.model, settings, args.mbpp, args.data, log)
    print(format_table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
