"""Trains the denoiser with the block-diffusion objective (stage 1: absorbing-state masking).

A batch is a set of windows of the packed corpus. Each window is fed twice, side by side: a clean
copy (causal attention, what the KV cache will hold at inference) and a noisy copy whose blocks
each get a noise level t ~ U(t_min, 1) and have every token replaced by `<|mask|>` with
probability t. The loss is the masked-diffusion ELBO: cross-entropy on masked positions weighted
by 1/t, averaged over all noisy positions.

    OMP_WAIT_POLICY=PASSIVE python models/python/train.py --data data/ --run runs/tiny --minutes 30

Resumable: a run directory holds `checkpoint.pt` (model, optimiser, step, RNG) and `log.jsonl`;
running the same command again continues where it stopped. Uses CUDA with bf16 when present;
`models/python/gpu_train.sh` is the prepared command for a lent GPU.

The autoregressive twin is the same network and objective with blocks of one token that are
always masked (`--block-sizes 1 --t-min 1`): each position predicts its token from the clean
tokens before it, i.e. next-token prediction, and the same runtime decodes it one token per step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

try:
    from tqdm import tqdm
except ImportError:  # GPU images may lack it: train without a progress bar
    tqdm = None

from model import Denoiser, ModelConfig, training_mask
from tokenizer import SPECIAL_TOKENS
from weights import save_parts, weights_only

MASK_ID = SPECIAL_TOKENS.index("<|mask|>")  # special tokens hold the first ids


def logged_step(line: str) -> float:
    """The step of a log line; a line cut short by a kill counts as past every checkpoint."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError):
        return math.inf


def load_split(data_dir: Path, split: str) -> np.ndarray:
    return np.fromfile(data_dir / f"{split}.bin", dtype=np.uint16)


def sample_windows(tokens: np.ndarray, batch: int, length: int, generator: np.random.Generator) -> torch.Tensor:
    starts = generator.integers(0, tokens.size - length, size=batch)
    return torch.from_numpy(np.stack([tokens[s : s + length] for s in starts]).astype(np.int64))


def diffusion_loss(model: Denoiser, clean: torch.Tensor, block_size: int, generator: torch.Generator, t_min: float = 0.02):
    """Masked-diffusion ELBO for one batch of clean windows [batch, length]."""
    batch, length = clean.shape
    device = clean.device
    n_blocks = math.ceil(length / block_size)
    t_block = t_min + (1 - t_min) * torch.rand(batch, n_blocks, generator=generator, device=device)
    t = t_block.repeat_interleave(block_size, dim=1)[:, :length]
    masked = torch.rand(batch, length, generator=generator, device=device) < t
    noisy = torch.where(masked, torch.full_like(clean, MASK_ID), clean)

    ids = torch.cat([clean, noisy], dim=1)
    positions = torch.arange(length, device=device).repeat(2).expand(batch, -1)
    mask = training_mask(length, block_size, device).expand(batch, -1, -1)
    past_key, past_value = model.empty_cache(batch, device)
    hidden, _, _ = model.hidden_states(ids, positions, past_key, past_value, mask)
    noisy_hidden = hidden[:, length:]
    logits = model.logits(noisy_hidden[masked]).float()
    nll = F.cross_entropy(logits, clean[masked], reduction="none")
    loss = (nll / t[masked]).sum() / (batch * length)
    return loss, nll.mean()


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model: Denoiser, tokens: np.ndarray, args, device) -> float:
    model.eval()
    generator = np.random.default_rng(1234)
    torch_gen = torch.Generator(device=device).manual_seed(1234)
    losses = []
    for _ in range(args.eval_batches):
        clean = sample_windows(tokens, args.batch, args.length, generator).to(device)
        loss, _ = diffusion_loss(model, clean, args.block_sizes[0], torch_gen, args.t_min)
        losses.append(loss.item())
    model.train()
    return float(np.mean(losses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20000, help="schedule length")
    parser.add_argument("--minutes", type=float, default=None, help="stop (and checkpoint) after this long")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--block-sizes", type=int, nargs="+", default=[32, 16, 64])
    parser.add_argument("--t-min", type=float, default=0.02,
                        help="lowest noise level; with --block-sizes 1 --t-min 1 this trains the autoregressive twin")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights-out", type=Path, default=None,
                        help="also write bf16 weights in ≤15 MiB parts here at each checkpoint (GPU runs)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer (GPU runs)")
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_tokens = load_split(args.data, "train")
    val_tokens = load_split(args.data, "validation")
    args.run.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.run / "checkpoint.pt"

    config = ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, ffn_hidden=int(args.d_model * 8 / 3 / 16 + 0.5) * 16)
    model = Denoiser(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    step, np_rng, torch_gen = 0, np.random.default_rng(args.seed), torch.Generator(device=device).manual_seed(args.seed)
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        config = ModelConfig(**state["config"])
        model = Denoiser(config).to(device)
        model.load_state_dict(state["model"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        np_rng.bit_generator.state = state["np_rng"]
        torch_gen.set_state(state["torch_rng"])
        print(f"resumed {checkpoint_path} at step {step}")
        log_path = args.run / "log.jsonl"  # forget steps logged after the checkpoint: they are redone
        if log_path.exists():
            kept = [line for line in log_path.read_text().splitlines() if logged_step(line) <= step]
            log_path.write_text("".join(line + "\n" for line in kept))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f}M parameters, {train_tokens.size} training tokens, device {device}")

    def save() -> None:
        state = {
            "config": config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "np_rng": np_rng.bit_generator.state,
            "torch_rng": torch_gen.get_state(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        }
        torch.save(state, checkpoint_path.with_suffix(".tmp"))
        checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)  # atomic: a kill never leaves half a file
        if args.weights_out:
            save_parts(weights_only(state), args.weights_out)

    if args.compile:
        model.hidden_states = torch.compile(model.hidden_states)  # the state dict keeps its plain names
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    deadline = time.time() + args.minutes * 60 if args.minutes else math.inf
    log = (args.run / "log.jsonl").open("a")
    progress = tqdm(total=args.steps, initial=step, unit="step", dynamic_ncols=True) if tqdm else None
    tokens_seen, started = 0, time.time()
    while step < args.steps and time.time() < deadline:
        lr = learning_rate(step, args.steps, args.lr, args.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        block_size = args.block_sizes[int(np_rng.integers(len(args.block_sizes)))]
        clean = sample_windows(train_tokens, args.batch, args.length, np_rng).to(device)
        with autocast:
            loss, masked_nll = diffusion_loss(model, clean, block_size, torch_gen, args.t_min)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        tokens_seen += clean.numel()
        record = {"step": step, "loss": round(loss.item(), 4), "masked_nll": round(masked_nll.item(), 4), "lr": lr,
                  "tokens_per_s": round(tokens_seen / (time.time() - started), 1)}
        if step % args.eval_every == 0:
            record["val_loss"] = round(evaluate(model, val_tokens, args, device), 4)
        log.write(json.dumps(record) + "\n")
        log.flush()
        if progress:
            progress.set_postfix(loss=record["loss"], tok_s=record["tokens_per_s"])
            progress.update(1)
        elif step % 50 == 0:
            print(json.dumps(record), flush=True)
        if step % args.checkpoint_every == 0:
            save()
    save()
    if progress:
        progress.close()
    print(f"stopped at step {step}; checkpoint {checkpoint_path}")


if __name__ == "__main__":
    main()
