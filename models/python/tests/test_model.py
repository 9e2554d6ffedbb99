"""The properties the serving runtime relies on: an exact KV cache, and training that sees
exactly what decoding will see."""

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


def test_blocks_of_one_always_masked_are_next_token_prediction():
    """The autoregressive twin (train.py --block-sizes 1 --t-min 1) is plain next-token
    cross-entropy, computed the way the runtime decodes: a mask at position i against the cache."""
    import torch.nn.functional as F

    from train import MASK_ID, diffusion_loss

    model = make_model()
    clean = torch.randint(7, 64, (1, 6))
    with torch.no_grad():
        loss, _ = diffusion_loss(model, clean, 1, torch.Generator().manual_seed(0), t_min=1.0)
        losses = []
        for i in range(6):
            k, v = model.empty_cache(1)
            if i:
                _, k, v = model(clean[:, :i], torch.arange(i)[None], k, v, causal_mask(1, 0, i))
            logits, _, _ = model(torch.tensor([[MASK_ID]]), torch.tensor([[i]]), k, v, block_mask(1, i, 1))
            losses.append(F.cross_entropy(logits[0], clean[0, i : i + 1]))
    torch.testing.assert_close(loss, torch.stack(losses).mean(), atol=1e-5, rtol=1e-5)
