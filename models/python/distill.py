"""Seed stages three and four at small scale: constrained-order distillation and on-policy step
reduction, both as fine-tuning of a trained (stage 1-2) denoiser.

    # stage 3: for each training block, K teacher-forced orders; keep the most likely; states along it
    python models/python/distill.py trajectories --stage 3 --model runs/gpu2/weights --data data/gpu-raw \\
        --out runs/distill/orders.pt --samples 512 --orders 4
    # stage 4: the model's own decoding of MBPP training prompts, verified; the fewest-forwards kept
    python models/python/distill.py trajectories --stage 4 --prompts mbpp --model runs/gpu2/weights \\
        --data data/gpu-raw --out runs/distill/mbpp-rollouts.pt --samples 300 --prompt-len 32
    python models/python/distill.py train --model runs/gpu2/weights --trajectories runs/distill/orders.pt \\
        --trajectories runs/distill/mbpp-rollouts.pt --data data/gpu-raw --run runs/distill --steps 300
    python models/python/export.py --fp16 --checkpoint runs/distill/weights --out <dir>

A trajectory is one block after a prompt: its final tokens and the step at which each was
committed; `train` fine-tunes on the states along stored trajectories, mixed with train.py's loss.
Stage 3 draws teacher-forced orders of real code and keeps the most likely; stage 4 keeps the
model's own verified rollouts (sample.py's `generate_batch`) with the fewest forwards. The whole
recipe: models/python/README.md, "Stages 3 and 4".
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

import mbpp
from model import Denoiser, ModelConfig, training_mask
from sample import Prompt, banned_ids, block_logits, encode_prompt, extend, generate_batch, prefill
from sandbox import Limits, parses, run_program
from tokenizer import SHIPPED_TOKENIZER, load_tokenizer, special_ids
from train import MASK_ID, diffusion_loss, edit_corrupt, learning_rate, load_split, sample_windows
from weights import load_checkpoint, save_parts

# models/src/verify.ts's DEFAULT_VERIFY_THRESHOLD (tests/test_distill.py reads it there: they stay equal).
SELF_VERIFY_THRESHOLD = 0.01


def load_model(path: Path) -> tuple[Denoiser, dict]:
    state = load_checkpoint(path)
    model = Denoiser(ModelConfig(**state["config"]))
    model.load_state_dict({k: v.float() for k, v in state["model"].items()})
    return model.eval(), state


def prompt_windows(
    tokens: np.ndarray, samples: int, prompt_len: int, blocks: int, block: int, seed: int
) -> torch.Tensor:
    """Windows of prompt + generated length from the data (a fixed seed: the same windows every run)."""
    return sample_windows(tokens, samples, prompt_len + blocks * block, np.random.default_rng(seed))


@torch.no_grad()
def self_verification(model: Denoiser, tokenizer: Tokenizer, context: list[int], code: list[int], block: int) -> float:
    """verify.ts's score of `code` after `context`: each block of the code re-masked in two halves
    (even positions, then odd) against all earlier text as cached context; the geometric-mean
    probability the model gives the code's own tokens (control tokens but the end token ruled out)."""
    if not code:
        return 1.0
    mask, banned = special_ids(tokenizer).mask, banned_ids(tokenizer)
    k, v = prefill(model, torch.tensor([context + code]))
    log_p = 0.0
    for start in range(0, len(code), block):
        piece = torch.tensor(code[start : start + block])
        cut = len(context) + start
        cache = (k[:, :, :, :cut].expand(-1, 2, -1, -1, -1), v[:, :, :, :cut].expand(-1, 2, -1, -1, -1))
        hidden = torch.stack([torch.arange(len(piece)) % 2 == parity for parity in (0, 1)])
        logits = block_logits(model, cache, torch.where(hidden, mask, piece)).double()
        logits[..., banned] = -math.inf
        chosen = logits.log_softmax(-1).gather(-1, piece.expand(2, -1)[..., None])[..., 0]
        log_p += float(chosen.clamp_min(math.log(1e-12))[hidden].sum())
    return math.exp(log_p / len(code))


@torch.no_grad()
def best_orders(
    model: Denoiser,
    windows: torch.Tensor,
    prompt_len: int,
    blocks: int,
    block: int,
    orders: int,
    steps: int,
    temperature: float,
    generator: torch.Generator,
    banned: torch.Tensor,
):
    """Stage 3: per block of true tokens, `orders` teacher-forced orders; the most likely kept.
    Returns the order (commit step per position) and its log-likelihood per token (over the ids
    the model may write: `banned`, sample.py's `banned_ids`, ruled out)."""
    batch = windows.shape[0]
    per_step = math.ceil(block / steps)
    best_order = torch.zeros(batch, blocks * block, dtype=torch.long)
    best_score = torch.full((batch, blocks), -math.inf)
    cache = prefill(model, windows[:, :prompt_len])
    for b in range(blocks):
        start = prompt_len + b * block
        truth = windows[:, start : start + block]
        for _ in range(orders):
            x = torch.full((batch, block), MASK_ID)
            step_of = torch.full((batch, block), -1)
            score = torch.zeros(batch)
            for step in range(steps):
                masked = step_of < 0
                if not masked.any():
                    break
                logits = block_logits(model, cache, x).float()
                logits[..., banned] = -math.inf
                logp = logits.log_softmax(-1).gather(-1, truth[..., None])[..., 0]
                gumbel = -torch.log(-torch.log(torch.rand(batch, block, generator=generator).clamp_min(1e-9)))
                key = torch.where(masked, logp / temperature + gumbel, torch.tensor(-math.inf))
                chosen = key.topk(min(per_step, block), dim=-1).indices
                commit = torch.zeros_like(masked).scatter(1, chosen, True) & masked
                score += torch.where(commit, logp, torch.tensor(0.0)).sum(-1)
                x = torch.where(commit, truth, x)
                step_of = torch.where(commit, torch.tensor(step), step_of)
            better = score / block > best_score[:, b]
            best_score[:, b] = torch.where(better, score / block, best_score[:, b])
            region = slice(b * block, (b + 1) * block)
            best_order[:, region] = torch.where(better[:, None], step_of, best_order[:, region])
        cache = extend(model, cache, truth)
    return best_order, best_score


def repeats_too_much(ids: list[int], n: int = 4, share: float = 0.5) -> bool:
    """A block whose tokens are mostly one repeated n-gram (the degenerate loop of a weak model)."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    if not grams:
        return False
    most = max(grams.count(g) for g in set(grams))
    return most * n > share * len(ids)


def trajectories(args) -> None:
    torch.manual_seed(args.seed)
    model, _ = load_model(args.model)
    out: dict = {
        "stage": args.stage,
        "prompt_len": args.prompt_len,
        "block": args.block,
        "blocks": args.blocks,
        "model": str(args.model),
        "threshold": args.threshold,
    }
    if args.stage == 4 and args.prompts == "mbpp":
        mbpp_rollouts(args, model, out)
    else:
        data_trajectories(args, model, out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, args.out)
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, torch.Tensor) and k != "records"}))


def data_trajectories(args, model: Denoiser, out: dict) -> None:
    """Stage 3 orders, or stage 4 rollouts, on windows of the training data (prompt = a window's start)."""
    tokenizer = load_tokenizer(args.tokenizer)
    tokens = load_split(args.data, "train")
    windows_all, orders_all, kept_all, steps_all = [], [], [], []
    started = time.time()
    generator = torch.Generator().manual_seed(args.seed)
    for first in range(0, args.samples, args.batch):
        n = min(args.batch, args.samples - first)
        windows = prompt_windows(tokens, n, args.prompt_len, args.blocks, args.block, args.seed + first)
        if args.stage == 3:
            order, score = best_orders(
                model,
                windows,
                args.prompt_len,
                args.blocks,
                args.block,
                args.orders,
                args.order_steps,
                args.order_temperature,
                generator,
                banned_ids(tokenizer),
            )
            kept = torch.ones(n, dtype=torch.bool)
            steps_all.append(score.mean(-1))
        else:
            # Token ids of the data: a real token boundary, nothing to heal.
            prompts = [Prompt(row) for row in windows[:, : args.prompt_len].tolist()]
            result = generate_batch(model, tokenizer, prompts, args.blocks * args.block, args.block, args.threshold)
            windows = torch.cat([windows[:, : args.prompt_len], result.tokens], dim=1)
            order = result.order
            kept = torch.tensor(
                [
                    not (args.verify and has_loop(row[:length], args.blocks, args.block))
                    for row, length in zip(result.tokens.tolist(), result.lengths.tolist(), strict=True)
                ]
            )
            steps_all.append(result.steps.sum(-1) / (result.steps > 0).sum(-1).clamp_min(1))
        windows_all.append(windows)
        orders_all.append(order)
        kept_all.append(kept)
        print(f"{first + n}/{args.samples} trajectories, {time.time() - started:.0f} s", flush=True)
    kept = torch.cat(kept_all)
    out.update(
        windows=torch.cat(windows_all)[kept].to(torch.int32),
        orders=torch.cat(orders_all)[kept].to(torch.int16),
        kept=int(kept.sum()),
        total=int(kept.numel()),
    )
    stat = torch.cat(steps_all)
    out["summary"] = (
        {"mean_loglik_per_token_of_best_order": float(stat.mean())}
        if args.stage == 3
        else {"mean_steps_per_block": float(stat.mean()), "tokens_per_step": args.block / float(stat.mean())}
    )


def verify_rollout(
    task: dict, completion: str, ids: list[int], blocks: int, block: int, self_score: float, cut_off: bool = True
) -> dict:
    """Stage 4's verifier for one MBPP rollout: no degenerate loop in any block, the function
    (mbpp.py's candidate; `cut_off`: the tokens ran out) parses, the model's own verification finds
    it plausible (verify.ts's default threshold), and — when it parses — whether the task's unit
    tests pass (sandboxed, as evaluate.py runs them)."""
    loops = has_loop(ids, blocks, block)
    source = mbpp.candidate(task, completion, cut_off)
    valid = parses(source)
    passed = valid and not loops and run_program(mbpp.program(task, source), Limits(timeout_s=2.0)).outcome == "passed"
    plausible = self_score >= SELF_VERIFY_THRESHOLD
    return {
        "loops": loops,
        "parses": valid,
        "plausible": plausible,
        "tests_passed": passed,
        "verified": not loops and valid and plausible,
    }


def mbpp_rollouts(args, model: Denoiser, out: dict) -> None:
    """Stage 4 on MBPP training prompts: per task, one rollout per (τ, temperature) setting; the
    verifier filters; among the verified the target is the one that passes the tests, then the one
    with the fewest forwards (then the highest self-verification score): rejection sampling that
    rewards fewer steps at verified quality."""
    tokenizer = load_tokenizer(args.tokenizer)
    low, high = (int(x) for x in args.mbpp_ids.split("-"))
    tasks = mbpp.load_tasks(range(low, high + 1))[: args.samples]
    settings = [(tau, temp) for tau in args.thresholds for temp in args.temperatures]
    max_tokens = args.blocks * args.block
    generator = torch.Generator().manual_seed(args.seed)
    windows, orders, records = [], [], []
    started = time.time()
    for n, task in enumerate(tasks, start=1):
        given = encode_prompt(tokenizer, mbpp.prompt(task))
        if len(given.ids) < args.prompt_len:
            continue
        result = generate_batch(
            model,
            tokenizer,
            [given] * len(settings),
            max_tokens,
            args.block,
            [t for t, _ in settings],
            [temp for _, temp in settings],
            generator,
        )
        candidates = []
        for r, (tau, temp) in enumerate(settings):
            length = int(result.lengths[r])
            ids = result.tokens[r, :length].tolist()
            score = self_verification(model, tokenizer, given.ids, ids, args.block)
            verdict = verify_rollout(
                task,
                result.text(tokenizer, r, given.healed),
                ids,
                args.blocks,
                args.block,
                score,
                cut_off=length == max_tokens,
            )
            candidates.append(
                {
                    "task_id": task["task_id"],
                    "threshold": tau,
                    "temperature": temp,
                    "tokens": length,
                    "forwards": int(result.steps[r].sum()),
                    "self_score": round(score, 4),
                    **verdict,
                    "row": r,
                }
            )
        records.extend(candidates)
        verified = [c for c in candidates if c["verified"]]
        if verified:
            best = min(verified, key=lambda c: (not c["tests_passed"], c["forwards"], -c["self_score"]))
            best["kept"] = True
            windows.append(torch.tensor(given.ids[-args.prompt_len :] + result.tokens[best["row"]].tolist()))
            orders.append(result.order[best["row"]])
        if n % 10 == 0:
            print(f"{n}/{len(tasks)} tasks, {len(windows)} kept, {time.time() - started:.0f} s", flush=True)
    kept = [c for c in records if c.get("kept")]
    by_setting = {
        f"τ{tau} T{temp}": {
            "rollouts": len(rs := [c for c in records if c["threshold"] == tau and c["temperature"] == temp]),
            "verified": sum(c["verified"] for c in rs),
            "tests_passed": sum(c["tests_passed"] for c in rs),
            "mean_forwards": round(sum(c["forwards"] for c in rs) / max(1, len(rs)), 2),
            "kept": sum(bool(c.get("kept")) for c in rs),
        }
        for tau, temp in settings
    }
    out.update(
        windows=torch.stack(windows).to(torch.int32),
        orders=torch.stack(orders).to(torch.int16),
        kept=len(windows),
        total=len(tasks),
        records=records,
        summary={
            "by_setting": by_setting,
            "kept_mean_forwards": sum(c["forwards"] for c in kept) / max(1, len(kept)),
            "kept_tokens_per_forward": sum(c["tokens"] for c in kept) / max(1, sum(c["forwards"] for c in kept)),
        },
    )


def has_loop(ids: list[int], blocks: int, block: int) -> bool:
    """The loop filter of stage 4's verifiers: a block that is mostly one repeated 4-gram."""
    return any(repeats_too_much(ids[b * block : (b + 1) * block]) for b in range(blocks))


def trajectory_batch(data: dict, batch: int, rng: np.random.Generator, edit_rate: float):
    """States along stored trajectories: (clean ids, noisy ids, loss weight per position)."""
    rows = rng.integers(0, data["windows"].shape[0], size=batch)
    clean = data["windows"][rows].long()
    order = data["orders"][rows].long()
    prompt_len, block, blocks = data["prompt_len"], data["block"], data["blocks"]
    noisy = clean.clone()
    weight = torch.zeros(clean.shape, dtype=torch.float32)
    for b in range(blocks):
        region = slice(prompt_len + b * block, prompt_len + (b + 1) * block)
        steps = order[:, b * block : (b + 1) * block]
        last = steps.amax(-1)
        s = (torch.rand(batch) * (last + 1).float()).long()  # a step along the path, per row
        masked = steps >= s[:, None]
        noisy[:, region] = torch.where(masked, torch.tensor(MASK_ID), clean[:, region])
        t = masked.float().mean(-1, keepdim=True).clamp_min(1 / block)
        weight[:, region] = masked.float() / t if data["stage"] == 3 else masked.float()
    if edit_rate > 0 and data["stage"] == 3:
        t_block = torch.rand(batch, math.ceil(clean.shape[1] / block)).numpy()
        edited = torch.from_numpy(edit_corrupt(noisy.numpy(), t_block, block, rng, row_rate=edit_rate))
        generated = torch.zeros(clean.shape, dtype=torch.bool)
        generated[:, prompt_len:] = True
        changed = generated & (edited != noisy) & (noisy != MASK_ID)
        noisy = torch.where(generated, edited, noisy)
        weight = weight + changed.float()  # edited visible tokens must be put right
    return clean, noisy, weight


def trajectory_loss(model: Denoiser, clean: torch.Tensor, noisy: torch.Tensor, weight: torch.Tensor, block: int):
    batch, length = clean.shape
    ids = torch.cat([clean, noisy], dim=1)
    positions = torch.arange(length).repeat(2).expand(batch, -1)
    mask = training_mask(length, block).expand(batch, -1, -1)
    past_k, past_v = model.empty_cache(batch)
    hidden, _, _ = model.hidden_states(ids, positions, past_k, past_v, mask)
    where = weight > 0
    nll = F.cross_entropy(model.logits(hidden[:, length:][where]).float(), clean[where], reduction="none")
    return (nll * weight[where]).sum() / where.sum().clamp_min(1)


def train(args) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model, state = load_model(args.model)
    model.train()
    sets = [torch.load(path, weights_only=False) for path in args.trajectories]
    block = sets[0]["block"]
    tokens = load_split(args.data, "train")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    args.run.mkdir(parents=True, exist_ok=True)
    log = (args.run / "log.jsonl").open("w")
    started = time.time()
    for step in range(args.steps):
        lr = learning_rate(step, args.steps, args.lr, args.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        losses = {}
        loss = torch.zeros(())
        for data in sets:
            clean, noisy, weight = trajectory_batch(data, args.batch, rng, args.edit_rate)
            part = trajectory_loss(model, clean, noisy, weight, block)
            losses[f"stage{data['stage']}"] = round(part.item(), 4)
            loss = loss + part / len(sets)
        if args.anchor > 0:
            windows = sample_windows(tokens, max(1, int(args.batch * args.anchor)), args.anchor_length, rng)
            anchor, _ = diffusion_loss(model, windows, block, generator)
            losses["anchor"] = round(anchor.item(), 4)
            loss = loss + args.anchor * anchor
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        record = {
            "step": step + 1,
            "loss": round(loss.item(), 4),
            **losses,
            "lr": lr,
            "seconds": round(time.time() - started, 1),
        }
        log.write(json.dumps(record) + "\n")
        log.flush()
        if (step + 1) % 10 == 0:
            print(json.dumps(record), flush=True)
    # The run's arguments join those of earlier fine-tunes (export.py writes the whole recipe from them)…
    earlier = state["args"].get("distill", [])
    this = {
        k: [str(p) for p in v] if k == "trajectories" else str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k != "func"
    }
    weights = {
        "config": state["config"],
        "model": {k: v.detach().to(torch.bfloat16) for k, v in model.state_dict().items()},
        "step": int(state["step"]) + args.steps,
        "args": {
            **state["args"],
            "distill": [
                *([earlier] if isinstance(earlier, dict) else earlier),
                {**this, "stages": [data["stage"] for data in sets]},
            ],
        },
    }
    save_parts(weights, args.run / "weights")
    # …and its log follows the base model's, its steps counted on from there.
    base_log = (args.model if args.model.is_dir() else args.model.parent) / "log.jsonl"
    own = [
        {**json.loads(line), "step": json.loads(line)["step"] + int(state["step"])}
        for line in (args.run / "log.jsonl").read_text().splitlines()
    ]
    (args.run / "weights" / "log.jsonl").write_text(
        (base_log.read_text() if base_log.exists() else "") + "".join(json.dumps(r) + "\n" for r in own)
    )
    print(f"wrote {args.run / 'weights'}")


def order_statistics(data: dict) -> dict:
    """How left-to-right the stored orders are: the mean Spearman correlation between a token's
    position and its commit step (1: strictly left to right), and the share of first commits at
    the block's first position."""
    orders = data["orders"].long().view(-1, data["block"])
    positions = torch.arange(data["block"], dtype=torch.float32)
    ranks = orders.float().argsort(-1).argsort(-1).float()
    centred = ranks - ranks.mean(-1, keepdim=True)
    pos = positions - positions.mean()
    spearman = (centred * pos).sum(-1) / (centred.norm(dim=-1) * pos.norm()).clamp_min(1e-9)
    return {
        "blocks": orders.shape[0],
        "left_to_right_spearman": float(spearman.mean()),
        "first_commit_at_position_0": float((orders[:, 0] == 0).float().mean()),
    }


def show(args) -> None:
    """Prints order statistics and a few blocks with each token's commit step."""
    tokenizer = load_tokenizer(args.tokenizer)
    data = torch.load(args.trajectories, weights_only=False)
    print(json.dumps(order_statistics(data)))
    p, block = data["prompt_len"], data["block"]
    for row in range(min(args.examples, data["windows"].shape[0])):
        ids = data["windows"][row, p : p + block].tolist()
        steps = data["orders"][row, :block].tolist()
        print(f"--- example {row}: tokens in commit order (step: token)")
        print("  ".join(f"{s}:{tokenizer.decode([i])!r}" for s, i in sorted(zip(steps, ids, strict=True))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    t = sub.add_parser("trajectories", help="stage 3 orders or stage 4 rollouts")
    t.add_argument("--stage", type=int, choices=[3, 4], required=True)
    t.add_argument("--model", type=Path, required=True, help="checkpoint.pt or a directory of weight parts")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--samples", type=int, default=256)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--prompt-len", type=int, default=96)
    t.add_argument("--blocks", type=int, default=2)
    t.add_argument("--block", type=int, default=32)
    t.add_argument("--threshold", type=float, default=0.9, help="stage 4: the decoding threshold τ")
    t.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stage 4: drop rollouts the verifier rejects",
    )
    t.add_argument("--orders", type=int, default=4, help="stage 3: orders drawn per block")
    t.add_argument(
        "--order-steps", type=int, default=8, help="stage 3: steps per order (block/steps committed per step)"
    )
    t.add_argument("--order-temperature", type=float, default=1.0)
    t.add_argument(
        "--prompts",
        choices=["data", "mbpp"],
        default="data",
        help="stage 4: windows of the training data, or MBPP training-split prompts "
        "(verified by syntax, self-verification and unit tests)",
    )
    t.add_argument(
        "--mbpp-ids",
        default="601-974",
        help="stage 4 --prompts mbpp: task ids (MBPP's train split; evaluation uses the test split)",
    )
    t.add_argument(
        "--thresholds",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[0.9, 0.7, 0.5],
        help="stage 4 --prompts mbpp: the τ of each task's rollouts",
    )
    t.add_argument(
        "--temperatures",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[0.0, 0.8],
        help="stage 4 --prompts mbpp: sampling temperatures (0 greedy), crossed with --thresholds",
    )
    t.add_argument("--tokenizer", type=Path, default=SHIPPED_TOKENIZER)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=trajectories)
    r = sub.add_parser("train", help="fine-tune on trajectories")
    r.add_argument("--model", type=Path, required=True)
    r.add_argument("--trajectories", type=Path, action="append", required=True)
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--run", type=Path, required=True)
    r.add_argument("--steps", type=int, default=300)
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--lr", type=float, default=2e-4)
    r.add_argument("--warmup", type=int, default=20)
    r.add_argument("--anchor", type=float, default=0.5, help="weight (and batch share) of the plain diffusion loss")
    r.add_argument("--anchor-length", type=int, default=256)
    r.add_argument("--edit-rate", type=float, default=0.5, help="stage 3: share of rows with edit-style augmentation")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=train)
    v = sub.add_parser("show", help="order statistics and examples of a trajectories file")
    v.add_argument("--trajectories", type=Path, required=True)
    v.add_argument("--tokenizer", type=Path, default=SHIPPED_TOKENIZER)
    v.add_argument("--examples", type=int, default=3)
    v.set_defaults(func=show)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
