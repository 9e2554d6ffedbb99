"""Stages 3-4 (distill.py) on a tiny random model: the trajectories are well formed, the training
states are the states along them, and the verifier is verify.ts's. (The rollouts themselves are
sample.py's `generate_batch`: tests/test_sample.py.)"""

import math
import re
import sys
from pathlib import Path

import numpy as np
import torch

import distill
from model import Denoiser, ModelConfig
from sample import banned_ids
from tokenizer import SHIPPED_TOKENIZER, load_tokenizer, special_ids
from train import MASK_ID
from weights import save_parts

BLOCK, BLOCKS, PROMPT = 8, 2, 16
TOKENIZER = load_tokenizer(SHIPPED_TOKENIZER)
ORDINARY = max(special_ids(TOKENIZER).all()) + 1  # the first id that is not a control token
VERIFY_TS = Path(__file__).resolve().parents[2] / "src" / "verify.ts"


def tiny_model() -> Denoiser:
    torch.manual_seed(0)
    return Denoiser(ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, ffn_hidden=64)).eval()


def prompts(batch: int) -> torch.Tensor:
    return torch.randint(ORDINARY, 64, (batch, PROMPT + BLOCKS * BLOCK), generator=torch.Generator().manual_seed(1))


def test_the_verifier_reads_the_function_the_completion_writes():
    task = {
        "task_id": 0,
        "text": "Add two numbers.",
        "code": "def add(a, b):\n    return a + b",
        "test_list": ["assert add(1, 2) == 3"],
        "test_setup_code": "",
    }
    clean = list(range(ORDINARY, ORDINARY + BLOCK * BLOCKS))
    # Ended by a new top-level line: the function alone is judged, and its tests run.
    done = distill.verify_rollout(task, "a, b):\n    return a + b\n\nprint(add(", clean, BLOCKS, BLOCK, 0.5)
    assert done == {"loops": False, "parses": True, "plausible": True, "tests_passed": True, "verified": True}
    # Cut off mid-line: the unfinished last line is dropped (tests/test_mbpp.py); wrong code parses but fails its tests.
    wrong = distill.verify_rollout(task, "a, b):\n    return a - b\n    if (", clean, BLOCKS, BLOCK, 0.5)
    assert wrong["verified"] and not wrong["tests_passed"]
    assert not distill.verify_rollout(task, "a, b):\n    return (a +\n\nx = 1", clean, BLOCKS, BLOCK, 0.5)["parses"]
    assert not distill.verify_rollout(task, "a, b):\n    return a + b\n", [7, 8, 9, 10] * 4, BLOCKS, BLOCK, 0.5)[
        "verified"
    ]
    assert not distill.verify_rollout(task, "a, b):\n    return a + b\n", clean, BLOCKS, BLOCK, 0.001)["plausible"]


@torch.no_grad()
def test_self_verification_is_verify_ts_score():
    """Each token scored once, with the other half of its block visible and everything before the
    block as context: the same figure as masking position by position, the slow way."""
    model = tiny_model()
    context, code = [1, *range(20, 30)], list(range(30, 49))  # 19 tokens: blocks of 8, 8 and 3
    banned = banned_ids(TOKENIZER)
    log_p = 0.0
    for i, token in enumerate(code):
        start = i - i % BLOCK
        block = code[start : start + BLOCK]
        shown = torch.tensor([[MASK_ID if j % 2 == i % 2 else t for j, t in enumerate(block)]])
        ids = torch.cat([torch.tensor([context + code[:start]]), shown], dim=1)
        length = ids.shape[1]
        mask = torch.ones(length, length, dtype=torch.bool).tril()
        mask[-len(block) :, -len(block) :] = True  # the block sees itself whole
        logits, _, _ = model(ids, torch.arange(length)[None], *model.empty_cache(1), mask[None])
        logits = logits[0, length - len(block) + i % BLOCK].double()
        logits[banned] = -math.inf
        log_p += float(logits.log_softmax(-1)[token])
    score = distill.self_verification(model, TOKENIZER, context, code, BLOCK)
    assert 0 < score <= 1 and math.isclose(score, math.exp(log_p / len(code)), rel_tol=1e-5)
    assert distill.self_verification(model, TOKENIZER, context, [], BLOCK) == 1.0


def test_the_self_verification_threshold_is_the_runtime_default():
    match = re.search(r"export const DEFAULT_VERIFY_THRESHOLD = ([0-9.e-]+);", VERIFY_TS.read_text())
    assert match and float(match.group(1)) == distill.SELF_VERIFY_THRESHOLD


def test_the_kept_order_is_the_most_likely_of_those_drawn():
    model = tiny_model()
    windows = prompts(4)
    order, score = distill.best_orders(
        model,
        windows,
        PROMPT,
        BLOCKS,
        BLOCK,
        orders=3,
        steps=4,
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
        banned=banned_ids(TOKENIZER),
    )
    assert order.shape == (4, BLOCKS * BLOCK) and score.shape == (4, BLOCKS)
    assert ((order >= 0) & (order < 4)).all()  # 4 steps of 2 positions each
    for b in range(BLOCKS):
        counts = torch.stack([(order[:, b * BLOCK : (b + 1) * BLOCK] == s).sum(-1) for s in range(4)], -1)
        assert (counts == BLOCK // 4).all()
    _, one_score = distill.best_orders(
        model,
        windows,
        PROMPT,
        BLOCKS,
        BLOCK,
        orders=1,
        steps=4,
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
        banned=banned_ids(TOKENIZER),
    )
    # Block 0's first draw is the same in both runs (same generator), so the best of 3 is no worse.
    assert (score[:, 0] >= one_score[:, 0] - 1e-6).all()


def test_training_states_lie_along_the_trajectory():
    windows = prompts(6)
    order = torch.stack([torch.randperm(BLOCK) for _ in range(6 * BLOCKS)]).view(6, BLOCKS * BLOCK)
    data = {"stage": 4, "prompt_len": PROMPT, "block": BLOCK, "blocks": BLOCKS, "windows": windows, "orders": order}
    clean, noisy, weight = distill.trajectory_batch(data, 32, np.random.default_rng(0), edit_rate=0)
    assert (noisy[:, :PROMPT] == clean[:, :PROMPT]).all()  # the prompt is never masked
    masked = noisy == MASK_ID
    assert ((weight > 0) == masked).all()
    rows = clean.shape[0]
    for r in range(rows):
        row = int(torch.nonzero((windows == clean[r]).all(-1))[0])
        for b in range(BLOCKS):
            region = slice(PROMPT + b * BLOCK, PROMPT + (b + 1) * BLOCK)
            steps = order[row, b * BLOCK : (b + 1) * BLOCK]
            cut = steps[masked[r, region]].min() if masked[r, region].any() else BLOCK
            assert (masked[r, region] == (steps >= cut)).all()  # masked = committed at or after one step


def test_a_loop_is_rejected_and_training_writes_exportable_weights(tmp_path: Path):
    assert distill.repeats_too_much([5, 6, 7, 8] * 8)
    assert not distill.repeats_too_much(list(range(32)))
    model = tiny_model()
    state = {"config": model.config.to_dict(), "model": model.state_dict(), "step": 0, "args": {"length": 64}}
    save_parts(state, tmp_path / "base")
    windows = prompts(8)
    order = torch.stack([torch.randperm(BLOCK) for _ in range(8 * BLOCKS)]).view(8, BLOCKS * BLOCK)
    torch.save(
        {
            "stage": 3,
            "prompt_len": PROMPT,
            "block": BLOCK,
            "blocks": BLOCKS,
            "windows": windows.int(),
            "orders": order.short(),
        },
        tmp_path / "orders.pt",
    )
    data = tmp_path / "data"
    data.mkdir()
    np.random.default_rng(0).integers(ORDINARY, 64, 4096).astype(np.uint16).tofile(data / "train.bin")
    parser_args = [
        "train",
        "--model",
        str(tmp_path / "base"),
        "--trajectories",
        str(tmp_path / "orders.pt"),
        "--data",
        str(data),
        "--run",
        str(tmp_path / "run"),
        "--steps",
        "3",
        "--batch",
        "2",
        "--anchor-length",
        "32",
        "--threads",
        "1",
    ]
    sys.argv = ["distill.py", *parser_args]
    distill.main()
    trained, _ = distill.load_model(tmp_path / "run" / "weights")
    assert trained.config == model.config
    assert (tmp_path / "run" / "log.jsonl").read_text().count("\n") == 3
