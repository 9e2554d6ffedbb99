"""Stages 3-4 (distill.py) on a tiny random model: the trajectories are well formed and the
training states are the states along them."""

import sys
from pathlib import Path

import numpy as np
import torch

import distill
from model import Denoiser, ModelConfig
from train import MASK_ID
from weights import save_parts

BLOCK, BLOCKS, PROMPT = 8, 2, 16


def tiny_model() -> Denoiser:
    torch.manual_seed(0)
    return Denoiser(ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, ffn_hidden=64)).eval()


def prompts(batch: int) -> torch.Tensor:
    return torch.randint(distill.N_SPECIAL, 64, (batch, PROMPT + BLOCKS * BLOCK), generator=torch.Generator().manual_seed(1))


def test_a_rollout_commits_every_position_once_with_the_threshold_rule():
    model = tiny_model()
    tokens, order, score = distill.rollout(model, prompts(3)[:, :PROMPT], BLOCKS, BLOCK, threshold=0.9)
    assert ((score > 0) & (score <= 1)).all()  # a geometric-mean probability
    assert tokens.shape == order.shape == (3, BLOCKS * BLOCK)
    assert (tokens != MASK_ID).all() and (tokens >= distill.N_SPECIAL).all()  # no control tokens
    for b in range(BLOCKS):
        steps = order[:, b * BLOCK : (b + 1) * BLOCK]
        assert (steps >= 0).all() and (steps < BLOCK).all()
    # τ = 1 can never be met by a random model: one token per step, steps 0..7 each once per block.
    _, serial, _ = distill.rollout(model, prompts(2)[:, :PROMPT], BLOCKS, BLOCK, threshold=1.0)
    for b in range(BLOCKS):
        assert sorted(serial[0, b * BLOCK : (b + 1) * BLOCK].tolist()) == list(range(BLOCK))


def test_rollout_settings_are_per_row_and_sampling_is_reproducible():
    model = tiny_model()
    rows = prompts(1)[:, :PROMPT].expand(3, -1)
    # τ 0 commits a whole block in one step, τ 1 one token per step; a drawn row differs from greedy.
    run = lambda seed: distill.rollout(model, rows, BLOCKS, BLOCK, [0.0, 1.0, 0.0], [0.0, 0.0, 2.0],
                                       torch.Generator().manual_seed(seed))
    tokens, order, _ = run(0)
    assert (order[0] == 0).all() and order[1].view(BLOCKS, BLOCK).amax(-1).tolist() == [BLOCK - 1] * BLOCKS
    assert (tokens[0] != tokens[2]).any()
    again, _, _ = run(0)
    assert torch.equal(tokens, again)


def test_the_verifier_reads_the_function_the_completion_writes():
    task = {"task_id": 0, "text": "Add two numbers.", "code": "def add(a, b):\n    return a + b",
            "test_list": ["assert add(1, 2) == 3"], "test_setup_code": ""}
    clean = list(range(distill.N_SPECIAL, distill.N_SPECIAL + BLOCK * BLOCKS))
    # Ended by a new top-level line: the function alone is judged, and its tests run.
    done = distill.verify_rollout(task, "a, b):\n    return a + b\n\nprint(add(", clean, BLOCKS, BLOCK, 0.5)
    assert done == {"loops": False, "parses": True, "plausible": True, "tests_passed": True, "verified": True}
    # Cut off mid-line: the unfinished last line is dropped; wrong code parses but fails its tests.
    assert distill.function_candidate(task, "a, b):\n    return a - b\n    if (") == "def add(a, b):\n    return a - b\n"
    wrong = distill.verify_rollout(task, "a, b):\n    return a - b\n    if (", clean, BLOCKS, BLOCK, 0.5)
    assert wrong["verified"] and not wrong["tests_passed"]
    assert not distill.verify_rollout(task, "a, b):\n    return (a +\n\nx = 1", clean, BLOCKS, BLOCK, 0.5)["parses"]
    assert not distill.verify_rollout(task, "a, b):\n    return a + b\n", [7, 8, 9, 10] * 4, BLOCKS, BLOCK, 0.5)["verified"]
    assert not distill.verify_rollout(task, "a, b):\n    return a + b\n", clean, BLOCKS, BLOCK, 0.001)["plausible"]


def test_the_kept_order_is_the_most_likely_of_those_drawn():
    model = tiny_model()
    windows = prompts(4)
    order, score = distill.best_orders(model, windows, PROMPT, BLOCKS, BLOCK, orders=3, steps=4, temperature=1.0,
                                       generator=torch.Generator().manual_seed(0))
    assert order.shape == (4, BLOCKS * BLOCK) and score.shape == (4, BLOCKS)
    assert ((order >= 0) & (order < 4)).all()  # 4 steps of 2 positions each
    for b in range(BLOCKS):
        counts = torch.stack([(order[:, b * BLOCK : (b + 1) * BLOCK] == s).sum(-1) for s in range(4)], -1)
        assert (counts == BLOCK // 4).all()
    _, one_score = distill.best_orders(model, windows, PROMPT, BLOCKS, BLOCK, orders=1, steps=4, temperature=1.0,
                                         generator=torch.Generator().manual_seed(0))
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
    torch.save({"stage": 3, "prompt_len": PROMPT, "block": BLOCK, "blocks": BLOCKS, "windows": windows.int(),
                "orders": order.short()}, tmp_path / "orders.pt")
    data = tmp_path / "data"
    data.mkdir()
    np.random.default_rng(0).integers(distill.N_SPECIAL, 64, 4096).astype(np.uint16).tofile(data / "train.bin")
    parser_args = ["train", "--model", str(tmp_path / "base"), "--trajectories", str(tmp_path / "orders.pt"),
                   "--data", str(data), "--run", str(tmp_path / "run"), "--steps", "3", "--batch", "2",
                   "--anchor-length", "32", "--threads", "1"]
    sys.argv = ["distill.py", *parser_args]
    distill.main()
    trained, _ = distill.load_model(tmp_path / "run" / "weights")
    assert trained.config == model.config
    assert (tmp_path / "run" / "log.jsonl").read_text().count("\n") == 3
