"""The TypeScript runtime decodes each imported family exactly as that family's own sampler does
(reference_samplers.py, run on the transformers model in float32): the same generated ids and the
same finish reason, greedy one token per step and at a threshold (dllm: two tokens per step), for
prompts whose length is and is not a multiple of the block, over at least three blocks, and with a
checkpoint variant whose weights make it stop (eos).

The runtime is called through its command line, one JSON line per call:
    node --import tsx models/scripts/decode-ids.ts --model DIR --prompt "t5 t9 t3" --max-tokens N
        [--threshold T] [--steps S] [--block-size B]
-> {"ids": [...], "forward_passes": n, "finish_reason": "stop" | "length"}
`--steps` is the number of denoising steps per block (SDAR's denoising_steps, dllm's
steps_per_block)."""

import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("transformers")
import reference_samplers as ref  # noqa: E402
from tiny_checkpoints import MASK, make_checkpoint  # noqa: E402

from import_checkpoint import import_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "models" / "scripts" / "decode-ids.ts"
SHARPNESS = 5
# eos_like per family: the token whose head row <|im_end|> takes over (see make_decodable), chosen so
# that each family's eos case stops a few tokens in.
EOS_LIKE = {"sdar": 253, "Fast_dLLM_Qwen": 239, "a2d-qwen3": 276}
WORDS = [5, 9, 3, 17, 44, 8, 100, 7, 61, 23, 150, 77, 12, 201, 88, 42]


def prompt(n):
    return WORDS[:n]


# (family, variant, prompt length, max tokens, flags): SDAR and dllm blocks of 4, Fast-dLLM of 8.
CASES = [
    # SDAR: one token per step (threshold 1; steps default to the block size) and
    # low_confidence_dynamic at 0.7; its rule has two knobs, so the last plain case sets both
    ("sdar", "plain", 5, 13, {"threshold": 1.0}),
    ("sdar", "plain", 8, 13, {"threshold": 1.0}),
    ("sdar", "plain", 8, 13, {"threshold": 0.7}),
    ("sdar", "plain", 11, 13, {"threshold": 0.7}),
    ("sdar", "plain", 16, 13, {"threshold": 0.7}),
    ("sdar", "plain", 5, 12, {"threshold": 0.7, "steps": 2}),  # quota 2 per step, prompt tail in block
    ("sdar", "eos", 5, 13, {"threshold": 1.0}),
    ("sdar", "eos", 11, 13, {"threshold": 1.0}),  # eos is the very first token
    # Fast-dLLM v2: threshold 1 (one per step) and 0.9; prompt shorter than a block, one block
    # exactly (the reference's bug fixed), a tail, two blocks; blocks of 16 = two sub-blocks of 8
    ("Fast_dLLM_Qwen", "plain", 5, 26, {"threshold": 1.0}),
    ("Fast_dLLM_Qwen", "plain", 8, 26, {"threshold": 1.0}),
    ("Fast_dLLM_Qwen", "plain", 11, 26, {"threshold": 0.9}),
    ("Fast_dLLM_Qwen", "plain", 16, 26, {"threshold": 0.9}),
    ("Fast_dLLM_Qwen", "plain", 16, 26, {"threshold": 1.0}),
    ("Fast_dLLM_Qwen", "plain", 5, 40, {"threshold": 0.8, "block-size": 16}),
    ("Fast_dLLM_Qwen", "plain", 11, 40, {"threshold": 1.0, "block-size": 16}),
    ("Fast_dLLM_Qwen", "eos", 5, 26, {"threshold": 1.0}),
    # dllm BD3LM: one token per step (steps = block) and two (steps = block / 2); 14 tokens: the
    # last block is partial
    ("a2d-qwen3", "plain", 5, 14, {"steps": 4}),
    ("a2d-qwen3", "plain", 8, 14, {"steps": 4}),
    ("a2d-qwen3", "plain", 5, 14, {"steps": 2}),
    ("a2d-qwen3", "plain", 11, 14, {"steps": 2}),
    ("a2d-qwen3", "plain", 7, 14, {"steps": 3}),  # a schedule that does not divide the block: [1, 1, 2], then [1, 1]
    ("a2d-qwen3", "eos", 5, 14, {"steps": 4}),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(family, variant) -> (transformers model, imported model dir, manifest), built on first use."""
    built = {}

    def get(family, variant):
        if (family, variant) not in built:
            root = tmp_path_factory.mktemp(f"{family}-{variant}")
            eos_like = EOS_LIKE[family] if variant == "eos" else None
            model = make_checkpoint(root / "hf", family, sharpness=SHARPNESS, eos_like=eos_like)
            mask_id = MASK if family == "Fast_dLLM_Qwen" else None  # its mask id is past this vocabulary
            manifest = import_checkpoint(root / "hf", root / "out", dtype="float32", mask_id=mask_id)
            built[family, variant] = (model, root / "out", manifest)
        return built[family, variant]

    return get


def reference(family, model, manifest, ids, max_tokens, flags):
    block = flags.get("block-size", manifest["block_size"])
    special, decoding = manifest["special_tokens"], manifest["decoding"]
    common = dict(block_size=block, mask_id=special["mask"], eos_ids=special["eos_ids"])
    if family == "sdar":
        steps = flags.get("steps", decoding["steps"] or block)  # None: the block size (generate.py's default)
        return ref.sdar(model, ids, max_tokens, steps=steps, threshold=flags["threshold"], **common)
    if family == "Fast_dLLM_Qwen":
        small = min(decoding["sub_block_size"], block)
        return ref.fast_dllm(model, ids, max_tokens, small_block_size=small, threshold=flags["threshold"], **common)
    steps = flags.get("steps", decoding["steps"] or block)
    return ref.bd3lm(model, ids, max_tokens, steps_per_block=steps, pad_id=special["pad"], **common)


def runtime(model_dir, ids, max_tokens, flags):
    command = ["node", "--import", "tsx", str(CLI), "--model", str(model_dir)]
    command += ["--prompt", " ".join(f"t{i}" for i in ids), "--max-tokens", str(max_tokens)]
    for name, value in flags.items():
        command += [f"--{name}", str(value)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "family,variant,length,max_tokens,flags",
    CASES,
    ids=[f"{f}-{v}-p{n}-g{g}-" + "-".join(f"{k}{x}" for k, x in fl.items()) for f, v, n, g, fl in CASES],
)
def test_runtime_decodes_as_the_reference_sampler(models, family, variant, length, max_tokens, flags):
    model, model_dir, manifest = models(family, variant)
    ids = prompt(length)
    expected = reference(family, model, manifest, ids, max_tokens, flags)
    if variant == "eos":
        assert expected.finish_reason == "stop"  # the variant does what it is for
    got = runtime(model_dir, ids, max_tokens, flags)
    assert (got["ids"], got["finish_reason"]) == (expected.ids, expected.finish_reason), (
        f"reference took {expected.forwards} forwards, the runtime {got.get('forward_passes')}"
    )
