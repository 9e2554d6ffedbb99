"""Properties of the reference samplers (reference_samplers.py) that follow from each family's own
code, checked on tiny random checkpoints: that they commit only masks, count their forwards as the
family does, let a threshold through more than one token per step, stop at eos, and (dllm) that
the left padding is invisible."""

import pytest

pytest.importorskip("transformers")
import reference_samplers as ref  # noqa: E402
from tiny_checkpoints import ENDOFTEXT, EOS_IDS, IM_START, MASK, make_checkpoint  # noqa: E402

WORDS = [5, 9, 3, 17, 44, 8, 100, 7, 61, 23, 150, 77, 12, 201, 88, 42]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    built = {}

    def get(family, eos_like=None):
        if (family, eos_like) not in built:
            root = tmp_path_factory.mktemp(family)
            built[family, eos_like] = make_checkpoint(root, family, sharpness=5, eos_like=eos_like)
        return built[family, eos_like]

    return get


def sdar(m, n, g, threshold, steps=4):
    return ref.sdar(m, WORDS[:n], g, block_size=4, steps=steps, threshold=threshold, mask_id=MASK, eos_ids=EOS_IDS)


def fast(m, n, g, threshold, block=8):
    return ref.fast_dllm(
        m, WORDS[:n], g, block_size=block, small_block_size=8, threshold=threshold, mask_id=MASK, eos_ids=EOS_IDS
    )


def bd3lm(m, n, g, steps, pad=ENDOFTEXT):
    return ref.bd3lm(m, WORDS[:n], g, block_size=4, steps_per_block=steps, mask_id=MASK, pad_id=pad, eos_ids=EOS_IDS)


def test_quota_schedules():
    assert ref.sdar_quota(4, 4) == [1, 1, 1, 1] and ref.sdar_quota(4, 3) == [2, 1, 1]
    # dllm's float32 linear schedule with round-half-even, zero steps dropped
    assert ref.bd3lm_quota(4, 2) == [2, 2] and ref.bd3lm_quota(8, 3) == [3, 2, 3]
    assert ref.bd3lm_quota(5, 2) == [2, 3] and ref.bd3lm_quota(3, 2) == [2, 1]
    assert ref.bd3lm_quota(2, 3) == [1, 1] and ref.bd3lm_quota(1, 2) == [1]


@pytest.mark.parametrize("n", [5, 8, 11])
def test_sdar_one_token_per_step(model, n):
    """Threshold 1, steps = block: one forward per masked position, one commit pass per block, one
    prefill when the prompt holds a full block; 13 tokens: blocks up to position n + 13."""
    out = sdar(model("sdar"), n, 13, 1.0)
    blocks = -(-(n + 13) // 4) - n // 4
    masks = blocks * 4 - n % 4
    assert out.forwards == (1 if n >= 4 else 0) + masks + blocks
    assert len(out.ids) == 13 and out.finish_reason == "length"
    assert MASK not in out.ids and len(set(out.ids)) > 5


def test_sdar_threshold_commits_several_tokens_in_a_step(model):
    one = sdar(model("sdar"), 8, 13, 1.0)
    fast_ = sdar(model("sdar"), 8, 13, 0.7)
    assert fast_.forwards < one.forwards and MASK not in fast_.ids


def test_fast_dllm_one_token_per_step(model):
    """Threshold 1: prefill, then per block one forward per mask and a commit pass that carries
    the next block's first token (so a block of 8 after the carried token has 7 masks)."""
    m = model("Fast_dLLM_Qwen")
    out = fast(m, 16, 26, 1.0)  # 16 = two blocks: the prefill carries token 1
    blocks = 4  # 1 + 7 + (1 + 7) * 3 >= 26 tokens after the 4th block's masks
    assert out.forwards == 1 + blocks * 7 + blocks and len(out.ids) == 26
    assert fast(m, 16, 26, 0.9).forwards < out.forwards
    assert MASK not in out.ids


def test_fast_dllm_blocks_of_two_sub_blocks(model):
    """Blocks of 16 in sub-blocks of 8, threshold 1: every mask takes one step whichever sub-block it
    is in, and each block ends with its commit pass (11 masks after a 5-token prompt, then 15)."""
    m = model("Fast_dLLM_Qwen")
    out = fast(m, 5, 27, 1.0, block=16)
    assert out.forwards == (11 + 1) + (15 + 1) and len(out.ids) == 27


def test_dllm_two_tokens_per_step_and_a_partial_last_block(model):
    m = model("a2d-qwen3")
    out = bd3lm(m, 5, 14, 2)
    assert out.forwards == 4 * (1 + 2) and len(out.ids) == 14  # 4 blocks, the last of 2 tokens
    assert bd3lm(m, 5, 14, 4).forwards == 3 * (1 + 4) + (1 + 2)


def test_dllm_left_padding_is_invisible(model):
    """Pads are neither queries nor keys and skip RoPE positions: which id pads does not matter."""
    m = model("a2d-qwen3")
    assert bd3lm(m, 5, 10, 2).ids == bd3lm(m, 5, 10, 2, pad=IM_START).ids


@pytest.mark.parametrize(
    "family,run",
    [
        ("sdar", lambda m: sdar(m, 5, 13, 1.0)),
        ("Fast_dLLM_Qwen", lambda m: fast(m, 5, 26, 1.0)),
        ("a2d-qwen3", lambda m: bd3lm(m, 5, 14, 4)),
    ],
)
def test_eos_stops_and_is_not_output(model, family, run):
    plain = run(model(family))
    out = run(model(family, {"sdar": 253, "Fast_dLLM_Qwen": 239, "a2d-qwen3": 276}[family]))
    assert plain.finish_reason == "length" and out.finish_reason == "stop"
    assert 0 < len(out.ids) < len(plain.ids) and not set(EOS_IDS) & set(out.ids)
    assert out.forwards < plain.forwards
