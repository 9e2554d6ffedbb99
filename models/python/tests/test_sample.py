"""sample.py: the batched reference sampler (`generate_batch`) is `generate`, row by row — the same
tokens, steps per block, end and text — and its per-row settings do what they say."""

import pytest
import torch

from model import Denoiser, ModelConfig
from sample import Prompt, empty_cache, encode_prompt, generate, generate_batch, torch_forward
from tokenizer import SHIPPED_TOKENIZER, load_tokenizer, special_ids

TOKENIZER = load_tokenizer(SHIPPED_TOKENIZER)
SPECIAL = special_ids(TOKENIZER)


class EndsAt(Denoiser):
    """A random model whose end token is certain at one absolute position (so generations end
    mid-block), and whose logits are scaled up (so a step may commit several tokens)."""

    end_at = 10**9

    def forward(self, input_ids, positions, past_key, past_value, attention_mask):
        logits, k, v = super().forward(input_ids, positions, past_key, past_value, attention_mask)
        logits = logits * 35
        eos = torch.where(positions == self.end_at, logits.amax(-1) + 5, logits[..., SPECIAL.eos])
        return torch.cat([logits[..., : SPECIAL.eos], eos[..., None], logits[..., SPECIAL.eos + 1 :]], -1), k, v


def tiny_model(seed: int = 2, end_at: int | None = None) -> EndsAt:
    torch.manual_seed(seed)
    model = EndsAt(ModelConfig(vocab_size=TOKENIZER.get_vocab_size(), d_model=32, n_layers=2, n_heads=2, ffn_hidden=64))
    if end_at is not None:
        model.end_at = end_at
    return model.eval()


def reference(model: Denoiser, prompt: str, max_tokens: int, block: int, threshold: float, suffix: str | None = None):
    c = model.config
    return generate(
        torch_forward(model),
        empty_cache(c.n_layers, c.n_heads, c.head_dim),
        TOKENIZER,
        prompt,
        max_tokens,
        block,
        threshold,
        suffix,
    )


@pytest.mark.parametrize(
    "prompt, suffix, max_tokens, block, threshold, end_after",
    [
        ("def add(a, b):\n", None, 24, 8, 0.9, None),
        ("def add(a, b):\n", None, 20, 8, 0.5, None),  # a last, shorter block
        ("import os\n\n\nclass Config:\n", None, 24, 8, 0.5, 12),  # ends mid-block, in the second block
        ("x = ", None, 12, 4, 1.0, 5),  # τ ≥ 1: one token per step
        ("def area(r):\n", "    return result\n", 16, 8, 0.5, 3),  # infilling
    ],
)
def test_batch_of_one_equals_generate(prompt, suffix, max_tokens, block, threshold, end_after):
    given = encode_prompt(TOKENIZER, prompt, suffix)
    model = tiny_model(end_at=None if end_after is None else len(given.ids) + end_after)
    expected = reference(model, prompt, max_tokens, block, threshold, suffix)
    got = generate_batch(model, TOKENIZER, [given], max_tokens, block, threshold)
    ids = [i for b in expected["blocks"] for i in b["ids"]]
    assert got.tokens[0, : int(got.lengths[0])].tolist() == ids
    assert got.steps[0, : len(expected["blocks"])].tolist() == [b["steps"] for b in expected["blocks"]]
    assert got.text(TOKENIZER, 0, given.healed) == expected["text"]
    if end_after is not None:
        assert int(got.lengths[0]) == end_after and (got.tokens[0, end_after:] == SPECIAL.eos).all()
        assert (got.steps[0, len(expected["blocks"]) :] == 0).all(), "no steps once a row has ended"


def test_each_row_equals_generate_with_its_own_threshold():
    prompt = "def add(a, b):\n"
    given = encode_prompt(TOKENIZER, prompt)
    model = tiny_model(end_at=len(given.ids) + 13)
    thresholds = [0.9, 0.5, 1.0]
    got = generate_batch(model, TOKENIZER, [given] * 3, 24, 8, thresholds)
    for row, threshold in enumerate(thresholds):
        expected = reference(model, prompt, 24, 8, threshold)
        assert got.text(TOKENIZER, row, given.healed) == expected["text"]
        assert got.steps[row, : len(expected["blocks"])].tolist() == [b["steps"] for b in expected["blocks"]]


def test_commit_order_and_per_row_settings():
    model = tiny_model(seed=1)
    rows = [Prompt(list(range(100, 116)))] * 3  # token ids, nothing to heal

    # τ 0 commits a whole block in one step, τ 1 one token per step; a drawn row differs from greedy.
    def run(seed: int):
        return generate_batch(
            model, TOKENIZER, rows, 16, 8, [0.0, 1.0, 0.0], [0.0, 0.0, 2.0], torch.Generator().manual_seed(seed)
        )

    result = run(0)
    assert (result.order[0] == 0).all() and result.steps[0].tolist() == [1, 1]
    assert result.steps[1].tolist() == [8, 8]
    for b in range(2):
        assert sorted(result.order[1, b * 8 : (b + 1) * 8].tolist()) == list(range(8)), "each step commits one"
    assert (result.tokens[0] != result.tokens[2]).any()
    assert torch.equal(result.tokens, run(0).tokens), "sampling is reproducible with the same generator"
    banned = [i for i in SPECIAL.all() if i != SPECIAL.eos]
    assert not torch.isin(result.tokens, torch.tensor(banned)).any(), "no control token but the end"
