"""The properties the serving runtime relies on: an exact KV cache, and training that sees
exactly what decoding will see."""

from pathlib import Path

import torch

from model import Denoiser, ModelConfig, block_mask, causal_mask, training_mask

CONFIG = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, ffn_hidden=48, max_positions=64)


def make_model() -> Denoiser:
    torch.manual_seed(0)
    return Denoiser(CONFIG).eval()


def test_cache_is_exact_however_the_context_is_chunked():
    model = make_model()
    ids = torch.randint(0, 64, (1, 12))
    with torch.no_grad():
        whole, k_all, v_all = model(ids, torch.arange(12)[None], *model.empty_cache(1), causal_mask(1, 0, 12))
        first, k1, v1 = model(ids[:, :5], torch.arange(5)[None], *model.empty_cache(1), causal_mask(1, 0, 5))
        rest, k2, v2 = model(ids[:, 5:], torch.arange(5, 12)[None], k1, v1, causal_mask(1, 5, 7))
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([k1, k2], dim=3), k_all, atol=1e-5, rtol=1e-5)


def test_logit_rows_pick_rows_of_the_full_logits_and_leave_the_cache_alone():
    model = make_model()
    ids = torch.randint(4, 64, (2, 6))
    inputs = (ids, torch.arange(6).expand(2, 6), *model.empty_cache(2), causal_mask(2, 0, 6))
    rows = torch.tensor([[5, 0, 5], [2, 3, 4]])  # any order, repeats allowed
    with torch.no_grad():
        full, k, v = model(*inputs)
        some, k_some, v_some = model(*inputs, rows)
    assert some.shape == (2, 3, CONFIG.vocab_size)
    torch.testing.assert_close(some, torch.gather(full, 1, rows[..., None].expand(-1, -1, CONFIG.vocab_size)))
    torch.testing.assert_close(k_some, k)
    torch.testing.assert_close(v_some, v)


def test_training_layout_matches_cached_block_decoding():
    model = make_model()
    length, block = 8, 4
    clean = torch.randint(4, 64, (1, length))
    noisy = clean.clone()
    noisy[0, 5] = noisy[0, 7] = 3  # masks in the second block
    with torch.no_grad():
        ids = torch.cat([clean, noisy], dim=1)
        positions = torch.arange(length).repeat(2)[None]
        trained, _, _ = model(ids, positions, *model.empty_cache(1), training_mask(length, block)[None])
        _, k, v = model(clean[:, :block], torch.arange(block)[None], *model.empty_cache(1), causal_mask(1, 0, block))
        decoded, _, _ = model(noisy[:, block:], torch.arange(block, length)[None], k, v, block_mask(1, block, block))
    torch.testing.assert_close(trained[:, length + block :], decoded, atol=1e-5, rtol=1e-5)


def test_block_tokens_see_each_other_but_context_does_not_see_the_future():
    mask = training_mask(8, 4)
    assert not mask[2, 3], "clean tokens are causal"
    assert mask[8 + 4, 8 + 7], "noisy tokens see later tokens of their own block"
    assert not mask[8 + 4, 4], "noisy tokens do not see their own block's clean copy"
    assert mask[8 + 4, 3] and not mask[8 + 0, 0], "noisy blocks see only earlier clean blocks"


def test_autoregressive_twin_loss_is_next_token_prediction_as_decoded_with_the_cache():
    """train.py --objective ar: one causal stream; the loss is what one-token-at-a-time decoding
    against the KV cache (the runtime's way) gives."""
    import torch.nn.functional as F

    from train import autoregressive_loss

    model = make_model()
    clean = torch.randint(7, 64, (1, 6))
    with torch.no_grad():
        loss, _ = autoregressive_loss(model, clean)
        k, v = model.empty_cache(1)
        losses = []
        for i in range(5):
            logits, new_k, new_v = model(clean[:, i : i + 1], torch.tensor([[i]]), k, v, causal_mask(1, i, 1))
            k, v = torch.cat([k, new_k], dim=3), torch.cat([v, new_v], dim=3)
            losses.append(F.cross_entropy(logits[0], clean[0, i + 1 : i + 2]))
    torch.testing.assert_close(loss, torch.stack(losses).mean(), atol=1e-5, rtol=1e-5)


def test_edit_corruption_edits_visible_tokens_within_each_block_only():
    import numpy as np

    from evaluate import token_distance
    from train import MASK_ID, edit_corrupt

    rng = np.random.default_rng(0)
    noisy = np.arange(100, 164).reshape(2, 32)
    noisy[:, ::5] = MASK_ID
    none = edit_corrupt(noisy, np.full((2, 4), 0.05), 8, rng)  # ⌊8 · 0.1 · 0.05⌋ = 0 edits
    assert (none == noisy).all()
    edited = edit_corrupt(noisy, np.ones((2, 4)), 8, rng, alpha_max=0.25)  # 2 edits per block
    assert edited.shape == noisy.shape and (edited != noisy).any()
    assert (edit_corrupt(noisy, np.ones((2, 4)), 8, rng, alpha_max=0.25, row_rate=0.0) == noisy).all(), (
        "a mixture: rows left alone"
    )
    pool = set(noisy.ravel())
    for r in range(2):
        for block in range(4):
            before, after = list(noisy[r, 8 * block : 8 * block + 8]), list(edited[r, 8 * block : 8 * block + 8])
            assert set(after) <= pool, "edits draw tokens of the batch (or leave masks)"
            # each edit is one substitution, or an insertion/deletion plus the token pushed or pulled at the end
            assert token_distance(before, after) <= 2 * 2


def test_autoregressive_generation_with_the_cache_equals_greedy_recomputation():
    """sample.generate_autoregressive (one token per forward, KV cache) against the slow way:
    rerun the whole sequence causally for every token and take the argmax of the last position."""
    from tokenizers import Tokenizer

    from sample import banned_ids, empty_cache, encode_prompt, first_token_ban, generate_autoregressive, torch_forward

    tokenizer = Tokenizer.from_file(str(Path(__file__).resolve().parents[2] / "sprout-tiny" / "tokenizer.json"))
    torch.manual_seed(0)
    model = Denoiser(
        ModelConfig(vocab_size=tokenizer.get_vocab_size(), d_model=32, n_layers=2, n_heads=2, ffn_hidden=64)
    ).eval()
    given = encode_prompt(tokenizer, "def f(x):\n", "    return y\n")
    cache = empty_cache(2, 2, 16)
    result = generate_autoregressive(torch_forward(model), cache, tokenizer, "def f(x):\n", 12, suffix="    return y\n")

    ids, expected, banned = list(given.ids), [], banned_ids(tokenizer)
    with torch.no_grad():
        for _ in range(12):
            logits, _, _ = model(
                torch.tensor([ids]), torch.arange(len(ids))[None], *model.empty_cache(1), causal_mask(1, 0, len(ids))
            )
            scores = logits[0, -1].double()
            scores[banned] = float("-inf")
            if not expected:  # token healing: the first token begins with the prompt's last token's text
                scores[first_token_ban(tokenizer, given.healed)] = float("-inf")
            token = int(scores.argmax())
            if token == tokenizer.token_to_id("<|eos|>"):
                break
            expected.append(token)
            ids.append(token)
    assert result["blocks"][0]["ids"] == expected and len(expected) > 0
    assert tokenizer.decode(expected[:1]).startswith(given.healed) and given.healed == "\n"
    assert result["text"] == tokenizer.decode(expected)[len(given.healed) :]
    assert given.ids[0] == tokenizer.token_to_id("<|fim_prefix|>") and given.ids[-1] == tokenizer.token_to_id(
        "<|fim_middle|>"
    )


def test_token_healing_gives_back_the_last_prompt_token():
    from tokenizers import Tokenizer

    from sample import encode_prompt, first_token_ban

    tokenizer = Tokenizer.from_file(str(Path(__file__).resolve().parents[2] / "sprout-tiny" / "tokenizer.json"))
    given = encode_prompt(tokenizer, "def f(n):\n")
    assert given.healed == "\n" and tokenizer.decode(given.ids[1:]) == "def f(n):"
    allowed = [i for i, banned in enumerate(first_token_ban(tokenizer, given.healed).tolist()) if not banned]
    assert tokenizer.encode("\n", add_special_tokens=False).ids[0] in allowed
    assert tokenizer.encode("\n    return", add_special_tokens=False).ids[0] in allowed, (
        "the token that spans the boundary"
    )
    assert all(tokenizer.decode([i]).startswith("\n") for i in allowed)
    assert (
        encode_prompt(tokenizer, "").ids == [tokenizer.token_to_id("<|bos|>")]
        and encode_prompt(tokenizer, "").healed == ""
    )


def test_flex_attention_training_gives_the_dense_masks_losses():
    """train.py --flex-attention (GPU runs) computes the same losses as the dense masks."""
    import warnings

    from train import autoregressive_loss, diffusion_loss

    model = make_model()
    clean = torch.randint(7, 64, (2, 32))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex attention warns that it is unfused outside torch.compile
        dense, _ = diffusion_loss(model, clean, 8, torch.Generator().manual_seed(0))
        flex, _ = diffusion_loss(model, clean, 8, torch.Generator().manual_seed(0), flex=True)
        torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            autoregressive_loss(model, clean, flex=True)[0], autoregressive_loss(model, clean)[0], atol=1e-5, rtol=1e-5
        )
