"""Each imported family's greedy sampler, written from that family's own code, run on the
transformers model (float32): the ground truth Sprout's TypeScript runtime must equal.

The exact conventions, with the files and lines they come from, are in the spec the lead reads
(/work/spec-conventions.md, summarised in each sampler's docstring). Where the families' code has a
bug, the samplers follow what Sprout should do, and say so: SDAR's top-k never picks a non-mask,
Fast-dLLM v2 prefills a prompt of exactly one block, a stop token carried from a commit pass stops.

Common to all three (Sprout's choices where the families differ only in presentation):
- ids are the generated tokens before the first eos id of the manifest (the eos itself is not
  output), at most `max_new_tokens` of them; `finish_reason` is "stop" when an eos ended them,
  "length" otherwise;
- `forwards` counts the passes the family's own sampler runs: the prompt's prefill, every
  denoising step, and the commit passes (dllm: the prefix forward of every block);
- no token id is suppressed (none of the three does); confidence is the softmax probability of
  the argmax; ties go to the lowest position.

No KV cache here: every forward is the whole sequence so far under the family's block-causal mask,
and the current block's rows are read from it. Under block-causal attention that is exactly what
the families compute with their caches (finished blocks never see later ones)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from import_checkpoint import block_causal_mask


@dataclass
class Decoded:
    ids: list[int]
    forwards: int
    finish_reason: str


def finish(generated: list[int], max_new_tokens: int, eos_ids) -> tuple[list[int], str]:
    """Sprout's truncation: before the first eos, at most max_new_tokens."""
    for i, token in enumerate(generated[:max_new_tokens]):
        if token in eos_ids:
            return generated[:i], "stop"
    return generated[:max_new_tokens], "length"


@torch.no_grad()
def logits_of(model, ids: list[int], rows: slice, mask: torch.Tensor, positions=None) -> torch.Tensor:
    """The model's logits at `rows` of `ids` under a [T, T] bool attention mask (True: may attend)."""
    x = torch.tensor([ids])
    kwargs = {} if positions is None else {"position_ids": positions[None]}
    return model(input_ids=x, attention_mask=mask[None, None], **kwargs).logits[0, rows].float()


def block_rows(model, ids: list[int], start: int, end: int, block: int, offset: int = 0) -> torch.Tensor:
    """Rows start..end of `ids` under the block-causal mask, blocks counted from `offset`."""
    mask = block_causal_mask(1, 0, len(ids), block, offset)[0]
    return logits_of(model, ids, slice(start, end), mask)


def greedy(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """argmax and its softmax probability per row."""
    p, token = torch.softmax(logits, dim=-1).max(dim=-1)
    return token, p


def top(confidence: torch.Tensor, k: int) -> list[int]:
    """The k positions of highest confidence, the lowest position first among equals."""
    order = sorted(range(len(confidence)), key=lambda i: (-float(confidence[i]), i))
    return order[:k]


# --- SDAR -------------------------------------------------------------------------------------


def sdar_quota(block: int, steps: int) -> list[int]:
    """get_num_transfer_tokens (SDAR generate.py:49-54): the block split evenly over the steps,
    the remainder going to the first steps."""
    base, remainder = divmod(block, steps)
    return [base + (1 if i < remainder else 0) for i in range(steps)]


def sdar(model, prompt, max_new_tokens, *, block_size, steps, threshold, mask_id, eos_ids) -> Decoded:
    """SDAR's block_diffusion_generate (JetAstra/SDAR generate.py:57-202; the published greedy is
    evaluation/opencompass/opencompass/models/huggingface_bd3.py:110-272 with top_k=1).

    Blocks on absolute positions from 0: the prompt's full blocks are prefilled block-causally
    (:92-106), the first decode block is the prompt's tail then masks (:113). Every step forwards the
    whole block (its prompt tail too) bidirectionally against the context (:132-137); no logit shift;
    low_confidence_dynamic (:168-179): every mask with p > threshold if there are at least the
    step's quota of them, else the quota's top-k. Sprout's fix: the top-k picks masks only (in
    generate.py it can rewrite prompt/committed positions; huggingface_bd3.py:233 makes that a no-op,
    JetEngine scheduler.py:378 masks it). A block without masks gets the commit pass (:121-129);
    after the whole block, any eos id in the generated tokens stops (:199-200)."""
    assert 1 <= steps <= block_size, "SDAR needs 1 <= steps <= block size (every step's quota >= 1)"
    B, P = block_size, len(prompt)
    quota = sdar_quota(B, steps)
    x = list(prompt)
    start = P // B * B
    forwards = 1 if start > 0 else 0  # the prefill of the prompt's full blocks
    while start < P + max_new_tokens:  # ceil((P + G) / B) blocks in all (generate.py:79)
        x += [mask_id] * (start + B - len(x))
        for step in range(steps + 1):
            masked = torch.tensor([t == mask_id for t in x[start:]])
            if not masked.any():
                forwards += 1  # the commit pass: the clean block's keys/values (output unused)
                break
            token, p = greedy(block_rows(model, x, start, start + B, B))
            forwards += 1
            confidence = torch.where(masked, p, -torch.inf)
            k = min(quota[step], int(masked.sum()))
            high = confidence > threshold
            chosen = high.nonzero().flatten().tolist() if int(high.sum()) >= k else top(confidence, k)
            for i in chosen:
                x[start + i] = int(token[i])
        start += B
        if any(t in eos_ids for t in x[P:]):
            break
    ids, reason = finish(x[P:], max_new_tokens, eos_ids)
    return Decoded(ids, forwards, reason)


# --- Fast-dLLM v2 -----------------------------------------------------------------------------


def fast_dllm(model, prompt, max_new_tokens, *, block_size, small_block_size, threshold, mask_id, eos_ids) -> Decoded:
    """Fast-dLLM v2's generate (Efficient-Large-Model/Fast_dLLM_v2_7B modeling.py,
    Fast_dLLM_QwenForCausalLM.generate; v2/generation_functions.py batch_sample keeps the same tokens).

    Absolute blocks; the prompt's full blocks prefilled block-causally, and when the prompt ends on a
    block boundary the prefill's last row gives the next block's first token. Sprout's fix: prefill
    when P >= B (the reference's `P > block_size` leaves a one-block prompt unseen). Shift by one:
    `cat([logits[:1], logits[:-1]])`, so block offset j is read from row j-1 (offset 0 is never a
    mask). Sub-blocks of small_block_size left to right: the whole block is forwarded every step,
    only the current sub-block's masks are candidates; the argmax is forced and every p > threshold
    joins it. Stop as soon as an eos is there with no mask before it (also a carried one); no commit
    pass then. Otherwise the commit pass of the clean block gives the next block's first token."""
    assert block_size % small_block_size == 0
    B, P = block_size, len(prompt)
    x = list(prompt)
    forwards = 0

    def stopped():
        for token in x[P:]:
            if token == mask_id:
                return False
            if token in eos_ids:
                return True
        return False

    def next_token(end):  # the last row of the block ending at `end`, under the block-causal mask
        return int(block_rows(model, x[:end], end - 1, end, B).argmax(-1)[0])

    if P >= B:
        forwards += 1  # the prefill
        if P % B == 0:
            x.append(next_token(P))
    while len(x) - P < max_new_tokens and not stopped():
        start = len(x) // B * B
        x += [mask_id] * (start + B - len(x))
        for sub in range(0, B, small_block_size):
            while mask_id in x[start + sub : start + sub + small_block_size] and not stopped():
                rows = block_rows(model, x, start, start + B, B)
                forwards += 1
                shifted = torch.cat([rows[:1], rows[:-1]])[sub : sub + small_block_size]
                token, p = greedy(shifted)
                masked = torch.tensor([t == mask_id for t in x[start + sub : start + sub + small_block_size]])
                p = torch.where(masked, p, -torch.inf)
                take = p > threshold
                take[top(p, 1)[0]] = True
                for i in (take & masked).nonzero().flatten().tolist():
                    x[start + sub + i] = int(token[i])
        if stopped():
            break
        forwards += 1  # the commit pass, whose last row is the next block's first token
        x.append(next_token(start + B))
    ids, reason = finish(x[P:], max_new_tokens, eos_ids)
    return Decoded(ids, forwards, reason)


# --- dllm BD3LM -------------------------------------------------------------------------------


def bd3lm_quota(masks: int, steps: int) -> list[int]:
    """dllm's get_num_transfer_tokens (dllm/core/samplers/utils.py:6-69) with its linear schedule
    (dllm/core/schedulers/alpha.py:68-86): at step j, round(remaining * (1 - r)) with
    r = (1 - alpha(s)) / (1 - alpha(t)), alpha(u) = 1 - u, computed in float32; torch.round rounds
    half to even (so does Python's round); steps that transfer nothing are dropped."""
    one = np.float32(1)
    quota, left = [], masks
    for j in range(steps):
        t, s = np.float32((steps - j) / steps), np.float32((steps - j - 1) / steps)
        r = (one - (one - s)) / (one - (one - t))
        k = min(round(float(left) * (1.0 - float(r))), left)
        quota.append(k)
        left -= k
        if left == 0:
            break
    return [k for k in quota if k > 0]


def bd3lm_view(x: list[int], block: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """dllm's _prepare_for_sampling (dllm/core/samplers/bd3lm.py:16-81): block ids on physical
    columns, pads in no block and invisible, RoPE positions logical (pads skipped). A pad row that
    sees nothing would be NaN; here it sees itself, which no real token can tell."""
    valid = torch.tensor(x) != pad_id
    positions = torch.where(valid, valid.long().cumsum(0) - 1, 0)
    blocks = torch.where(valid, torch.arange(len(x)) // block, -1)
    mask = (blocks[None, :] <= blocks[:, None]) & valid[:, None] & valid[None, :]
    return mask | torch.eye(len(x), dtype=torch.bool), positions


def bd3lm(model, prompt, max_new_tokens, *, block_size, steps_per_block, mask_id, pad_id, eos_ids) -> Decoded:
    """dllm's BD3LMSampler.sample (dllm/core/samplers/bd3lm.py:157-444), greedy (temperature 0).

    The prompt is left-padded to a whole number of blocks (:234-247), so generation starts on a
    fresh block; ceil(G / B) blocks, the last one min(B, G - generated) long (:261, :278). Each block
    starts with a forward of the whole prefix (:295-301: its finished blocks' keys/values, what a
    commit pass gives), then up to len(quota) steps (:367-426): the current block, bidirectional
    against the prefix, no logit shift, the quota's top-k masks by confidence (:84-134). After the
    block, an eos in it stops (:431-434); sample_trim cuts before the first eos."""
    B, P = block_size, len(prompt)
    padded = math.ceil(P / B) * B
    x = [pad_id] * (padded - P) + list(prompt)
    forwards, generated = 0, 0
    while generated < max_new_tokens:
        start, n = len(x), min(B, max_new_tokens - generated)
        forwards += 1  # the prefix forward
        x += [mask_id] * n
        mask, positions = bd3lm_view(x, B, pad_id)
        for k in bd3lm_quota(n, steps_per_block):
            masked = torch.tensor([t == mask_id for t in x[start:]])
            if not masked.any():
                break
            token, p = greedy(logits_of(model, x, slice(start, None), mask, positions))
            forwards += 1
            for i in top(torch.where(masked, p, -torch.inf), min(k, int(masked.sum()))):
                x[start + i] = int(token[i])
        generated += n
        if any(t in eos_ids for t in x[start:]):
            break
    ids, reason = finish(x[padded:], max_new_tokens, eos_ids)
    return Decoded(ids, forwards, reason)
