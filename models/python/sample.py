"""Reference sampler: the decoding algorithm of models/src/decode.ts, in PyTorch, on one screen.

    python models/python/sample.py --checkpoint runs/sprout/checkpoint.pt --prompt 'def add(a, b):\n'
    python models/python/sample.py --onnx models/sprout-tiny/denoiser.onnx --prompt 'import os\n'

Blocks in order; inside a block every step is one forward of the block against the cached
context and commits each masked position whose top probability is ≥ threshold (at least the most
confident one; exactly one when threshold ≥ 1). After an end token, the rest of the block is
settled as end tokens. A finished block is run once more, causally, to extend the cache (the
TypeScript runtime fuses that into the next block's first step: the same computation, equal up
to float rounding, one forward fewer per block). It must produce the same tokens
(models/src/reference.test.ts checks it).

The prompt is token-healed (`encode_prompt`: its last token is given back and the first generated
token must begin with its text), and a `suffix` asks for infilling. `generate_batch` is the same
algorithm for many prompts at once on the PyTorch model (per-row thresholds, optional sampling;
equal to `generate` at batch 1, tested): distill.py's rollouts. Also here, for evaluation:
`generate_autoregressive` (the twin: one token per forward against the cache) and
`position_predictions` (what a model says belongs at each position of a visible block: the
repair probe).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

import graph_io
from model import Denoiser, ModelConfig, block_mask, causal_mask
from tokenizer import load_tokenizer, special_ids
from weights import load_checkpoint


def torch_forward(model: Denoiser):
    """One forward pass in PyTorch: (tokens, cache, causal?) → logits, new keys, new values."""

    @torch.no_grad()
    def forward(tokens: list[int], past_k, past_v, causal: bool):
        past, time = past_k.shape[3], len(tokens)
        attention = (causal_mask if causal else block_mask)(1, past, time)
        positions = torch.arange(past, past + time)[None]
        return model(torch.tensor([tokens]), positions, past_k, past_v, attention)

    return forward


def onnx_forward(path: Path):
    """The same forward through the exported graph with onnxruntime."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(tokens: list[int], past_k, past_v, causal: bool):
        past, time = past_k.shape[3], len(tokens)
        feeds = {
            "input_ids": torch.tensor([tokens]).numpy(),
            "positions": torch.arange(past, past + time)[None].numpy(),
            "past_key": past_k.numpy(),
            "past_value": past_v.numpy(),
            "attention_mask": (causal_mask if causal else block_mask)(1, past, time).contiguous().numpy(),
        }
        return [torch.from_numpy(x) for x in session.run(graph_io.OUTPUTS, graph_io.feeds(session, feeds))]

    return forward


def empty_cache(layers: int, heads: int, head_dim: int):
    return torch.zeros(layers, 1, heads, 0, head_dim), torch.zeros(layers, 1, heads, 0, head_dim)


def banned_ids(tokenizer: Tokenizer) -> torch.Tensor:
    """Special tokens a model may not write: all but the end token."""
    special = special_ids(tokenizer)
    return torch.tensor([i for i in special.all() if i != special.eos])


@dataclass
class Prompt:
    """What the model is given: token ids, and the healed text its first token must begin with."""

    ids: list[int]
    healed: str = ""


def encode_prompt(tokenizer: Tokenizer, prompt: str, suffix: str | None = None) -> Prompt:
    """`<|bos|> prompt`, or for infilling `<|fim_prefix|> prompt <|fim_suffix|> suffix <|fim_middle|>`
    (the model writes the middle, then `<|eos|>`), with **token healing**: the prompt's last token
    is taken back and the first generated token must begin with its text.

    Why: BPE merges across the point where a prompt ends. In training text "):\n    return" is
    `):` `\n   ` ` return`, so a prompt ending in a lone `\n` token is a boundary the model has
    only seen before unindented lines (comments, decorators), and it writes those. Letting the
    model choose the token that covers the boundary (`\n   `) puts it back on familiar ground.
    """
    ids = special_ids(tokenizer)
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False).ids  # noqa: E731
    head = encode(prompt)
    healed = tokenizer.decode(head[-1:], skip_special_tokens=False)
    if suffix is None:
        return Prompt([ids.bos, *head[:-1]], healed)
    return Prompt([ids.fim_prefix, *head[:-1], ids.fim_suffix, *encode(suffix), ids.fim_middle], healed)


def healed_prompt(tokenizer: Tokenizer, ids: list[int]) -> Prompt:
    """A prompt given as token ids (a window of the training data), healed as `encode_prompt`
    heals text: its last token is given back, unless that is a control token."""
    if not ids or ids[-1] in special_ids(tokenizer).all():
        return Prompt(list(ids))
    return Prompt(list(ids[:-1]), tokenizer.decode(ids[-1:], skip_special_tokens=False))


_TOKEN_TEXTS: dict[int, tuple[Tokenizer, tuple[str, ...]]] = {}


def _token_texts(tokenizer: Tokenizer) -> tuple[str, ...]:
    """Each token id's text on its own, decoded once per tokenizer (kept alive with its texts)."""
    if id(tokenizer) not in _TOKEN_TEXTS:
        texts = tuple(tokenizer.decode([i], skip_special_tokens=False) for i in range(tokenizer.get_vocab_size()))
        _TOKEN_TEXTS[id(tokenizer)] = (tokenizer, texts)
    return _TOKEN_TEXTS[id(tokenizer)][1]


def first_token_ban(tokenizer: Tokenizer, healed: str) -> torch.Tensor:
    """Bool [vocab]: what the first generated token may not be (specials, and any token whose text
    does not begin with the healed text)."""
    texts = _token_texts(tokenizer)
    ban = torch.tensor([not text.startswith(healed) for text in texts])
    ban[special_ids(tokenizer).all()] = True
    return ban


def generate(
    forward,
    cache,
    tokenizer: Tokenizer,
    prompt: str,
    max_tokens: int,
    block_size: int,
    threshold: float,
    suffix: str | None = None,
):
    ids = special_ids(tokenizer)
    eos, mask = ids.eos, ids.mask
    banned = banned_ids(tokenizer)
    given = encode_prompt(tokenizer, prompt, suffix)
    first_ban = first_token_ban(tokenizer, given.healed) if given.healed else None

    _, k, v = forward(given.ids, *cache, causal=True)
    generated, blocks = [], []
    while len(generated) < max_tokens:
        block = [mask] * min(block_size, max_tokens - len(generated))
        steps = 0
        while mask in block:
            logits, _, _ = forward(block, k, v, causal=False)
            steps += 1
            logits = logits[0].double()
            logits[:, banned] = float("-inf")
            if first_ban is not None and not generated:
                logits[0, first_ban] = float("-inf")
            confidence, token = logits.softmax(-1).max(-1)
            masked = [i for i, t in enumerate(block) if t == mask]
            chosen = [i for i in masked if threshold < 1 and confidence[i] >= threshold]
            if not chosen:
                chosen = [max(masked, key=lambda i: confidence[i].item())]
            for i in chosen:
                block[i] = int(token[i])
            if eos in block:
                block = [eos if i > block.index(eos) and t == mask else t for i, t in enumerate(block)]
        kept = block[: block.index(eos)] if eos in block else block
        generated += kept
        blocks.append({"tokens": len(kept), "steps": steps, "ids": kept})
        if eos in block:
            break
        if len(generated) < max_tokens:
            _, new_k, new_v = forward(block, k, v, causal=True)
            k, v = torch.cat([k, new_k], dim=3), torch.cat([v, new_v], dim=3)
    return {"text": tokenizer.decode(generated, skip_special_tokens=False)[len(given.healed) :], "blocks": blocks}


# ---------------------------------------------------------------- the batched reference sampler


def prefill(model: Denoiser, ids: torch.Tensor):
    """The KV cache of token ids [batch, length], run causally."""
    batch, length = ids.shape
    past_k, past_v = model.empty_cache(batch, ids.device)
    positions = torch.arange(length, device=ids.device).expand(batch, -1)
    _, k, v = model.hidden_states(ids, positions, past_k, past_v, causal_mask(batch, 0, length, ids.device))
    return k, v


def extend(model: Denoiser, cache, ids: torch.Tensor):
    """The cache with committed tokens [batch, length] appended (run causally, as a prefill would)."""
    past_k, past_v = cache
    batch, length = ids.shape
    past = past_k.shape[3]
    positions = torch.arange(past, past + length, device=ids.device).expand(batch, -1)
    _, k, v = model.hidden_states(ids, positions, past_k, past_v, causal_mask(batch, past, length, ids.device))
    return torch.cat([past_k, k], dim=3), torch.cat([past_v, v], dim=3)


def block_logits(model: Denoiser, cache, block: torch.Tensor) -> torch.Tensor:
    """Logits [batch, size, vocab] of one denoising step: the block against the cached context."""
    past_k, past_v = cache
    batch, size = block.shape
    past = past_k.shape[3]
    positions = torch.arange(past, past + size, device=block.device).expand(batch, -1)
    logits, _, _ = model(block, positions, past_k, past_v, block_mask(batch, past, size, block.device))
    return logits


@dataclass
class Rollouts:
    """What `generate_batch` wrote, one row per prompt."""

    tokens: torch.Tensor  # [batch, max_tokens]: generated ids; <|eos|> from where a row ended
    order: torch.Tensor  # [batch, max_tokens]: the step of its block at which each position was committed
    steps: torch.Tensor  # [batch, blocks]: denoising steps (forwards) per block; 0 once a row has ended
    lengths: torch.Tensor  # [batch]: tokens before the end token

    def text(self, tokenizer: Tokenizer, row: int, healed: str = "") -> str:
        ids = self.tokens[row, : int(self.lengths[row])].tolist()
        return tokenizer.decode(ids, skip_special_tokens=False)[len(healed) :]


@torch.no_grad()
def generate_batch(
    model: Denoiser,
    tokenizer: Tokenizer,
    prompts: list[Prompt],
    max_tokens: int,
    block_size: int,
    threshold=0.9,
    temperature=0.0,
    generator: torch.Generator | None = None,
) -> Rollouts:
    """`generate` for prompts of one length at once, on the PyTorch model: the same blocks,
    threshold rule, end token and token healing. `threshold` and `temperature` are a number or one
    per row; a row with temperature > 0 draws each token from its softmax at that temperature
    (its confidence stays the untempered probability of the token drawn)."""
    special = special_ids(tokenizer)
    eos, mask = special.eos, special.mask
    batch, vocab = len(prompts), model.config.vocab_size
    assert len({len(p.ids) for p in prompts}) == 1, "prompts of one length"
    device = model.embed.weight.device
    tau = torch.as_tensor(threshold, dtype=torch.float64, device=device).expand(batch)[:, None]
    tau = torch.where(tau < 1, tau, math.inf)  # τ ≥ 1: the most confident position alone, as in generate
    temperature = torch.as_tensor(temperature, dtype=torch.float64, device=device).expand(batch)
    drawn = temperature > 0
    banned = banned_ids(tokenizer).to(device)
    no_ban = torch.zeros(vocab, dtype=torch.bool)
    first_ban = torch.stack([first_token_ban(tokenizer, p.healed) if p.healed else no_ban for p in prompts]).to(device)

    cache = prefill(model, torch.tensor([p.ids for p in prompts], device=device))
    tokens = torch.full((batch, max_tokens), eos, device=device)
    order = torch.zeros(batch, max_tokens, dtype=torch.long, device=device)
    steps = torch.zeros(batch, math.ceil(max_tokens / block_size), dtype=torch.long, device=device)
    ended = torch.zeros(batch, dtype=torch.bool, device=device)
    for b, start in enumerate(range(0, max_tokens, block_size)):
        size = min(block_size, max_tokens - start)
        x = torch.where(ended[:, None], eos, torch.full((batch, size), mask, device=device))
        step_of = torch.zeros(batch, size, dtype=torch.long, device=device)
        step = 0
        while (x == mask).any():
            logits = block_logits(model, cache, x).double()
            logits[..., banned] = -math.inf
            if start == 0:
                logits[:, 0].masked_fill_(first_ban, -math.inf)
            probs = logits.softmax(-1)
            confidence, choice = probs.max(-1)
            if drawn.any():
                tempered = (logits[drawn] / temperature[drawn, None, None]).softmax(-1)
                choice[drawn] = torch.multinomial(tempered.view(-1, vocab), 1, generator=generator).view(-1, size)
                confidence = probs.gather(-1, choice[..., None])[..., 0]
            masked = x == mask
            confidence = confidence.masked_fill(~masked, -1.0)
            commit = masked & (confidence >= tau)
            best = confidence.argmax(-1, keepdim=True)  # at least one per row that still has masks
            commit.scatter_(1, best, masked.gather(1, best))
            x = torch.where(commit, choice, x)
            is_eos = (x == eos).long()
            settle = (x == mask) & (is_eos.cumsum(-1) - is_eos > 0)  # after an end token: end tokens
            x = torch.where(settle, eos, x)
            step_of = torch.where(commit | settle, step, step_of)
            steps[:, b] += masked.any(-1)
            step += 1
        tokens[:, start : start + size] = x
        order[:, start : start + size] = step_of
        ended |= (x == eos).any(-1)
        if ended.all():
            break
        if start + size < max_tokens:
            cache = extend(model, cache, x)
    is_eos = tokens == eos
    lengths = torch.where(is_eos.any(-1), is_eos.long().argmax(-1), max_tokens)
    after_end = torch.arange(max_tokens, device=device) >= lengths[:, None]
    return Rollouts(torch.where(after_end, eos, tokens), order, steps, lengths)  # what followed the end: end tokens


def generate_autoregressive(
    forward, cache, tokenizer: Tokenizer, prompt: str, max_tokens: int, suffix: str | None = None
):
    """Greedy next-token decoding of the autoregressive twin, one forward per token with the cache.
    Returns generate()'s shape: one block whose steps are the forwards that chose a token."""
    ids = special_ids(tokenizer)
    banned = banned_ids(tokenizer)
    given = encode_prompt(tokenizer, prompt, suffix)
    first_ban = first_token_ban(tokenizer, given.healed) if given.healed else None
    logits, k, v = forward(given.ids, *cache, causal=True)
    generated, steps = [], 0
    while len(generated) < max_tokens:
        scores = logits[0, -1].double()
        scores[banned] = float("-inf")
        if first_ban is not None and not generated:
            scores[first_ban] = float("-inf")
        token = int(scores.argmax())
        steps += 1
        if token == ids.eos:
            break
        generated.append(token)
        if len(generated) < max_tokens:
            logits, new_k, new_v = forward([token], k, v, causal=True)
            k, v = torch.cat([k, new_k], dim=3), torch.cat([v, new_v], dim=3)
    return {
        "text": tokenizer.decode(generated, skip_special_tokens=False)[len(given.healed) :],
        "blocks": [{"tokens": len(generated), "steps": steps, "ids": generated}],
    }


def position_predictions(forward, cache, context: list[int], block: list[int], objective: str) -> torch.Tensor:
    """Probabilities [len(block), vocab] of what belongs at each position of a visible block.

    The denoiser sees the context causally and the whole block at once (as when it denoises);
    the autoregressive twin predicts each position from the tokens before it (teacher forcing)."""
    if objective == "ar":
        logits, _, _ = forward(context + block, *cache, causal=True)
        return logits[0, len(context) - 1 : len(context) - 1 + len(block)].double().softmax(-1)
    _, k, v = forward(context, *cache, causal=True)
    logits, _, _ = forward(block, k, v, causal=False)
    return logits[0].double().softmax(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="checkpoint.pt, or a directory of weight parts")
    source.add_argument("--onnx", type=Path, help="an exported denoiser.onnx (its manifest.json beside it)")
    parser.add_argument(
        "--tokenizer", type=Path, default=Path(__file__).resolve().parents[1] / "sprout-tiny" / "tokenizer.json"
    )
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--suffix", default=None, help="infill between --prompt and this")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args()
    if args.onnx:
        manifest = json.loads((args.onnx.parent / "manifest.json").read_text())
        arch, objective = manifest["architecture"], manifest.get("objective", "diffusion")
        forward = onnx_forward(args.onnx)
    else:
        state = load_checkpoint(args.checkpoint)
        model = Denoiser(ModelConfig(**state["config"]))
        model.load_state_dict(state["model"])
        model.eval()
        arch = {**model.config.to_dict(), "head_dim": model.config.head_dim}
        objective = state["args"].get("objective", "diffusion")
        forward = torch_forward(model)
    cache = empty_cache(arch["n_layers"], arch["n_heads"], arch["head_dim"])
    tokenizer = load_tokenizer(args.tokenizer)
    if objective == "ar":
        result = generate_autoregressive(forward, cache, tokenizer, args.prompt, args.max_tokens, args.suffix)
    else:
        result = generate(
            forward, cache, tokenizer, args.prompt, args.max_tokens, args.block_size, args.threshold, args.suffix
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
