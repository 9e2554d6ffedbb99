"""Trains Sprout's denoiser (and its autoregressive twin) on the packed corpus.

A batch is a set of windows of the packed corpus. Each window is fed twice, side by side: a clean
copy (causal attention, what the KV cache will hold at inference) and a noisy copy whose blocks
each get a noise level t ~ U(t_min, 1) and have every token replaced by `<|mask|>` with
probability t.

* Stage 1: the loss is the masked-diffusion ELBO: cross-entropy on masked positions weighted by
  1/t, averaged over all noisy positions.
* Stage 2 (`--stage2-from STEP`, the last ~20% of steps): the visible tokens of the noisy copy are
  also edited (substitutions, insertions, deletions; ⌊L·α_t⌋ per block, α_t ≤ 0.1) and every
  visible position is trained to give its clean token, so the model checks what it can see.
* Infilling (`--fim-rate`): a share of windows becomes fill-in-the-middle samples (fim.py): a
  real unit of code as the middle, starting on a block boundary, closed by `<|eos|>` and padded
  with `<|eos|>`, so the model learns where a middle of unknown length stops inside a block.
* The autoregressive twin (`--objective ar`): the same network with a causal mask and next-token
  loss, one stream, same windows (the same seed draws the same windows whatever the objective),
  same FIM.

    OMP_WAIT_POLICY=PASSIVE python models/python/train.py --data data/ --run runs/sprout --minutes 30
    OMP_WAIT_POLICY=PASSIVE torchrun --nproc_per_node 2 -- models/python/train.py ... --threads 1

Resumable: a run directory holds `checkpoint.pt` (model, optimiser, step, RNG) and `log.jsonl`;
running the same command again continues where it stopped (`--stop-at` stops at a step while
keeping the `--steps` schedule, to change data or recipe there). Under torchrun it is data
parallel (gloo on CPU). Uses CUDA with bf16 when present; `models/python/gpu_train.sh` is the
prepared command for a lent GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

try:
    from tqdm import tqdm
except ImportError:  # GPU images may lack it: train without a progress bar
    tqdm = None

from fim import FimLayout
from model import Denoiser, ModelConfig, causal_block_mask, causal_mask, training_block_mask, training_mask
from tokenizer import SHIPPED_TOKENIZER, load_tokenizer, special_ids
from weights import from_model_dir, save_parts, weights_only

# The mask id from the tokenizer the data is packed with (data.py --tokenizer), not from list order.
MASK_ID = special_ids(load_tokenizer(SHIPPED_TOKENIZER)).mask


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


def edit_corrupt(
    noisy: np.ndarray,
    t_block: np.ndarray,
    block_size: int,
    rng: np.random.Generator,
    alpha_max: float = 0.1,
    row_rate: float = 1.0,
) -> np.ndarray:
    """Stage 2's edit corruption of the noisy copy, block by block: ⌊L·α_t⌋ edits with
    α_t = alpha_max·t (so α_t ≤ 0.1), each a substitution, an insertion or a deletion of a token,
    in a share `row_rate` of the rows (the others stay plain masked diffusion: a mixture).

    Substituted and inserted tokens are drawn from the batch itself (plausible tokens, not rare
    ids that are trivial to spot). An insertion pushes the block's last token out; a deletion
    pulls the rest left and leaves a mask at the block's end. Every position keeps its clean
    target, so the model learns to check visible tokens and to undo shifts, not only to fill masks.
    """
    out = noisy.copy()
    pool = noisy[noisy != MASK_ID]
    for row in np.flatnonzero(rng.random(out.shape[0]) < row_rate):
        for index, start in enumerate(range(0, out.shape[1], block_size)):
            block = list(out[row, start : start + block_size])
            for _ in range(int(len(block) * alpha_max * t_block[row, index])):
                visible = [i for i, token in enumerate(block) if token != MASK_ID]
                if not visible:
                    break
                at, kind = int(rng.choice(visible)), rng.integers(3)
                if kind == 0:
                    block[at] = int(rng.choice(pool))
                elif kind == 1:
                    block = (block[:at] + [int(rng.choice(pool))] + block[at:])[: len(block)]
                else:
                    block = block[:at] + block[at + 1 :] + [MASK_ID]
            out[row, start : start + len(block)] = block
    return out


def diffusion_loss(
    model: Denoiser,
    clean: torch.Tensor,
    block_size: int,
    generator: torch.Generator,
    t_min: float = 0.02,
    edit_rng: np.random.Generator | None = None,
    edit_rows: float = 1.0,
    flex: bool = False,
):
    """Masked-diffusion ELBO for one batch of clean windows [batch, length].

    With `edit_rng` (stage 2), the visible tokens of a share `edit_rows` of the noisy rows are also
    edited (`edit_corrupt`) and every visible position is trained to give its clean token as well:
    loss = (Σ_masked nll/t + Σ_visible nll) / (batch·length).
    """
    batch, length = clean.shape
    device = clean.device
    n_blocks = math.ceil(length / block_size)
    t_block = t_min + (1 - t_min) * torch.rand(batch, n_blocks, generator=generator, device=device)
    t = t_block.repeat_interleave(block_size, dim=1)[:, :length]
    masked = torch.rand(batch, length, generator=generator, device=device) < t
    noisy = torch.where(masked, torch.full_like(clean, MASK_ID), clean)
    if edit_rng is not None:
        edited = edit_corrupt(noisy.cpu().numpy(), t_block.cpu().numpy(), block_size, edit_rng, row_rate=edit_rows)
        noisy = torch.from_numpy(edited).to(device)
        masked = noisy == MASK_ID

    ids = torch.cat([clean, noisy], dim=1)
    positions = torch.arange(length, device=device).repeat(2).expand(batch, -1)
    mask = (
        training_block_mask(length, block_size, str(device))
        if flex
        else training_mask(length, block_size, device).expand(batch, -1, -1)
    )
    past_key, past_value = model.empty_cache(batch, device)
    hidden, _, _ = model.hidden_states(ids, positions, past_key, past_value, mask)
    noisy_hidden = hidden[:, length:]
    logits = model.logits(noisy_hidden[masked]).float()
    nll = F.cross_entropy(logits, clean[masked], reduction="none")
    loss = (nll / t[masked]).sum() / (batch * length)
    if edit_rng is not None:
        visible = ~masked
        visible_nll = F.cross_entropy(model.logits(noisy_hidden[visible]).float(), clean[visible], reduction="sum")
        loss = loss + visible_nll / (batch * length)
    return loss, nll.mean()


def autoregressive_loss(model: Denoiser, clean: torch.Tensor, flex: bool = False):
    """Next-token cross-entropy with a causal mask: the autoregressive twin's objective.

    The same network and cache layout as the denoiser, one stream instead of two (half the
    compute per token); it decodes one token per forward with the same KV cache.
    """
    batch, length = clean.shape
    positions = torch.arange(length, device=clean.device).expand(batch, -1)
    past_key, past_value = model.empty_cache(batch, clean.device)
    mask = causal_block_mask(length, str(clean.device)) if flex else causal_mask(batch, 0, length, clean.device)
    hidden, _, _ = model.hidden_states(clean, positions, past_key, past_value, mask)
    logits = model.logits(hidden[:, :-1]).float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), clean[:, 1:].reshape(-1))
    return nll, nll


def draw_batches(tokens: np.ndarray, args, np_rng: np.random.Generator, fim: FimLayout | None, step: int, rank: int):
    """The batches of steps `step`, `step + 1`, …: (block size, windows, the step's recipe
    generator, np_rng's state after drawing them, for the checkpoint)."""
    while True:
        block_size = args.block_sizes[int(np_rng.integers(len(args.block_sizes)))]
        clean = sample_windows(tokens, args.batch, args.length, np_rng)
        # FIM and edits draw from their own generator, keyed by step: the windows (np_rng) stay
        # the same whatever the recipe, so the twin and the denoiser see identical data.
        recipe_rng = np.random.default_rng([args.seed, step, rank] if rank else [args.seed, step])
        if fim:
            clean = torch.from_numpy(fim.windows(clean.numpy(), args.fim_rate, block_size, recipe_rng))
        yield block_size, clean, recipe_rng, np_rng.bit_generator.state
        step += 1


def prefetch(iterator, depth: int = 2):
    """Runs `iterator` in a thread, `depth` items ahead: on a GPU, drawing windows and laying out
    FIM samples (tokenizer work) would otherwise leave it idle between steps. Closing the
    generator stops the thread and waits for it: a thread still drawing a batch (torch and numpy
    work) while the interpreter shuts down can abort the process (seen: SIGABRT at a torchrun
    rank's exit)."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def fill() -> None:
        for item in iterator:
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    try:
        while True:
            yield items.get()
    finally:
        stop.set()
        thread.join()


def adamw(model: Denoiser, lr: float, device: torch.device) -> torch.optim.AdamW:
    # fused: one kernel for every parameter's update on a GPU (a 10M model has ~40 small tensors)
    return torch.optim.AdamW(
        model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1, fused=device.type == "cuda"
    )


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_loss(
    model: Denoiser,
    clean: torch.Tensor,
    block_size: int,
    generator: torch.Generator,
    args,
    edit_rng: np.random.Generator | None = None,
):
    if args.objective == "ar":
        return autoregressive_loss(model, clean, args.flex_attention)
    return diffusion_loss(
        model, clean, block_size, generator, args.t_min, edit_rng, args.edit_rows, args.flex_attention
    )


@torch.no_grad()
def evaluate(model: Denoiser, tokens: np.ndarray, args, device) -> float:
    model.eval()
    generator = np.random.default_rng(1234)
    torch_gen = torch.Generator(device=device).manual_seed(1234)
    losses = []
    for _ in range(args.eval_batches):
        clean = sample_windows(tokens, args.batch, args.length, generator).to(device)
        loss, _ = batch_loss(model, clean, args.block_sizes[0], torch_gen, args)
        losses.append(loss.item())
    model.train()
    return float(np.mean(losses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20000, help="schedule length")
    parser.add_argument("--minutes", type=float, default=None, help="stop (and checkpoint) after this long")
    parser.add_argument(
        "--stop-at",
        type=int,
        default=None,
        help="stop (and checkpoint) at this step, keeping the --steps schedule (to change data or recipe there)",
    )
    parser.add_argument(
        "--objective",
        choices=["diffusion", "ar"],
        default="diffusion",
        help="ar: the autoregressive twin (same network, causal mask, next-token loss)",
    )
    parser.add_argument("--fim-rate", type=float, default=0.0, help="share of windows in fill-in-the-middle order")
    parser.add_argument("--tokenizer", type=Path, default=SHIPPED_TOKENIZER, help="for fill-in-the-middle samples")
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="a fresh run starts from this model directory's weights (its manifest and ONNX graph): a fine-tune",
    )
    parser.add_argument(
        "--stage2-from",
        type=int,
        default=None,
        help="from this step on, stage 2: edit corruption of visible tokens (diffusion only)",
    )
    parser.add_argument(
        "--edit-rows",
        type=float,
        default=0.5,
        help="stage 2: share of sequences whose visible tokens are edited (the rest: masking only)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for torch")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--block-sizes", type=int, nargs="+", default=[32, 16, 64])
    parser.add_argument(
        "--t-min",
        type=float,
        default=0.02,
        help="lowest noise level; with --block-sizes 1 --t-min 1 this trains the autoregressive twin",
    )
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--weights-out",
        type=Path,
        default=None,
        help="also write bf16 weights in ≤15 MiB parts here at each checkpoint (GPU runs)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer (GPU runs)")
    parser.add_argument(
        "--flex-attention",
        action="store_true",
        help="block-sparse flex attention instead of a dense mask (GPU runs: long windows, large batches; CUDA only)",
    )
    parser.add_argument(
        "--fit-schedule",
        action="store_true",
        help="with --minutes: after 100 steps, shrink --steps (and --stage2-from, kept at the same share) "
        "to what the measured speed finishes in time, so a time-boxed run still anneals and reaches stage 2",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    # Under torchrun (WORLD_SIZE > 1): data parallel. Every process draws its own windows and
    # computes its gradients; one all-reduce averages them (gloo on CPU, nccl on GPUs), so all
    # processes take the same optimizer step. Process 0 logs, evaluates and checkpoints.
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")
    if args.flex_attention and device.type != "cuda":
        print("--flex-attention: no backward on the CPU in this torch; dense masks instead")
        args.flex_attention = False
    train_tokens = load_split(args.data, "train")
    val_tokens = load_split(args.data, "validation")
    args.run.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.run / "checkpoint.pt"

    config = ModelConfig(
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        ffn_hidden=int(args.d_model * 8 / 3 / 16 + 0.5) * 16,
    )
    # The weights start from this run's checkpoint (a resume), a shipped model (a fine-tune), or a
    # seeded initialisation (a run is reproducible from its command).
    resuming = checkpoint_path.exists()
    state = torch.load(checkpoint_path, map_location=device, weights_only=False) if resuming else None
    if state is None and args.init_from:
        state = from_model_dir(args.init_from)
        print(f"fine-tuning {args.init_from} ({state['name']})")
    if state is not None:
        config = ModelConfig(**state["config"])
    torch.manual_seed(args.seed)
    model = Denoiser(config).to(device)
    if state is not None:
        model.load_state_dict(state["model"])
    optimizer = adamw(model, args.lr, device)
    step, np_rng, torch_gen = 0, np.random.default_rng(args.seed), torch.Generator(device=device).manual_seed(args.seed)
    if resuming:
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        np_rng.bit_generator.state = state["np_rng"]
        torch_gen.set_state(state["torch_rng"].cpu())  # map_location moved it to the GPU
        print(f"resumed {checkpoint_path} at step {step}")
        log_path = args.run / "log.jsonl"  # forget steps logged after the checkpoint: they are redone
        if log_path.exists() and rank == 0:
            kept = [line for line in log_path.read_text().splitlines() if logged_step(line) <= step]
            log_path.write_text("".join(line + "\n" for line in kept))
    if world > 1:
        # Process 0's state for everyone (a fresh model is initialised at random per process);
        # the others draw other windows and noise: the checkpoint's streams, re-keyed by rank.
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, 0)
        if rank > 0:
            np_rng = np.random.default_rng([args.seed, rank, step])
            torch_gen.manual_seed(args.seed * 1000 + rank * 100 + step)
    # Rotary positions are computed, not looked up: the longest window trained on is what the
    # exported graph may be given (the runtime clamps positions to max_positions).
    config.max_positions = max(config.max_positions, args.length)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f}M parameters, {train_tokens.size} training tokens, device {device}")

    def save() -> None:
        if rank > 0:
            return
        state = {
            "config": config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "np_rng": drawn_state,  # not np_rng's own state: the prefetching thread is ahead
            "torch_rng": torch_gen.get_state(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        }
        torch.save(state, checkpoint_path.with_suffix(".tmp"))
        checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)  # atomic: a kill never leaves half a file
        if args.weights_out:
            save_parts(weights_only(state), args.weights_out)

    if args.compile:
        model.hidden_states = torch.compile(model.hidden_states)  # the state dict keeps its plain names
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    deadline = time.time() + args.minutes * 60 if args.minutes else math.inf
    log = (args.run / "log.jsonl").open("a") if rank == 0 else None
    progress = (
        tqdm(total=args.steps, initial=step, unit="step", dynamic_ncols=True)
        if tqdm and rank == 0 and sys.stderr.isatty()
        else None
    )
    tokens_seen, started = 0, time.time()
    last_step = min(args.steps, args.stop_at or args.steps)

    def keep_going() -> bool:
        go = step < last_step and time.time() < deadline
        if world > 1:  # every process stops at the same step, or the others would wait forever
            flag = torch.tensor([int(go)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            go = bool(flag.item())
        return go

    fim = FimLayout(load_tokenizer(args.tokenizer)) if args.fim_rate > 0 else None
    drawn_state = np_rng.bit_generator.state  # the windows' generator after the last batch trained on
    batches = prefetch(draw_batches(train_tokens, args, np_rng, fim, step, rank))
    fit_from = (step + 20, time.time()) if args.fit_schedule and args.minutes else None
    while keep_going():
        if fit_from and step == fit_from[0] + 100:
            # Steps 20..120 give the speed (the first ones pay for kernel selection and compiling).
            rate = 100 / (time.time() - fit_from[1])
            fitted = min(
                args.steps, step + int(rate * (deadline - time.time()) * 0.85)
            )  # stage 2 is slower (edit corruption on the CPU)
            if args.stage2_from is not None:
                args.stage2_from = int(args.stage2_from * fitted / args.steps)
            print(
                f"schedule fitted: {rate:.1f} steps/s, {args.steps} -> {fitted} steps, stage 2 from {args.stage2_from}"
            )
            args.steps = fitted
            last_step = min(fitted, args.stop_at or fitted)
            fit_from = None
        elif fit_from and step == fit_from[0]:
            fit_from = (step, time.time())
        lr = learning_rate(step, args.steps, args.lr, args.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        block_size, clean, recipe_rng, drawn_state = next(batches)
        stage2 = args.objective == "diffusion" and args.stage2_from is not None and step >= args.stage2_from
        with autocast:
            loss, masked_nll = batch_loss(
                model, clean.to(device), block_size, torch_gen, args, recipe_rng if stage2 else None
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            grads = [p.grad for p in model.parameters()]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= world
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        tokens_seen += clean.numel() * world
        record = {
            "step": step,
            "loss": round(loss.item(), 4),
            "masked_nll": round(masked_nll.item(), 4),
            "lr": lr,
            "stage": 2 if stage2 else 1,
            "tokens_per_s": round(tokens_seen / (time.time() - started), 1),
        }
        if args.fim_rate > 0:
            record["fim_rate"] = args.fim_rate
        if world > 1:
            record["world_size"] = world
        if rank > 0:
            continue
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
    batches.close()  # stops the prefetching thread before the process ends
    save()
    if progress:
        progress.close()
    if world > 1:
        digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values()))
        print(f"rank {rank} weights {digest.hexdigest()[:16]}")  # equal on every rank (tested)
        dist.destroy_process_group()
    print(f"stopped at step {step}; checkpoint {checkpoint_path}")


if __name__ == "__main__":
    main()
