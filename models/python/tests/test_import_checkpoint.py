"""import_checkpoint.py against transformers' own Qwen2/Qwen3 classes: tiny random checkpoints
saved with save_pretrained, given each family's config fields, imported and compared."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
from tiny_checkpoints import FAMILIES, TEMPLATE, VOCAB, make_checkpoint  # noqa: E402

import graph_io  # noqa: E402
from import_checkpoint import (  # noqa: E402
    CheckpointError,
    block_causal_mask,
    causal_mask,
    import_checkpoint,
    run_onnx,
)


@pytest.fixture(scope="module", params=list(FAMILIES))
def imported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    reference = make_checkpoint(root / "hf", request.param)
    # Fast-dLLM v2 states its mask id only in its sampler (151665, past this tiny vocabulary).
    mask_id = 298 if request.param == "Fast_dLLM_Qwen" else None
    manifest = import_checkpoint(root / "hf", root / "out", dtype="float32", mask_id=mask_id)
    return request.param, reference, root, manifest, graph_io.session(root / "out" / "denoiser.onnx")


def forward(session, manifest, ids, past=None, mask=None, rows=None, start=0):
    """One graph run. `rows`: the rows asked for per sequence (indices into time), fed flat as
    logit_positions, logits [rows, vocab]; absent: every row, logits reshaped to [batch, time, vocab]."""
    a = manifest["architecture"]
    batch, time = ids.shape
    if past is None:
        shape = (a["n_layers"], batch, a["kv_heads"], 0, a["head_dim"])
        past = (torch.zeros(shape), torch.zeros(shape))
    n = past[0].shape[3]
    mask = causal_mask(batch, n, time) if mask is None else mask
    every = rows is None
    rows = [range(time)] * batch if every else rows
    flat = torch.tensor([b * time + t for b, asked in enumerate(rows) for t in asked], dtype=torch.int64)
    positions = torch.arange(start + n, start + n + time).expand(batch, time)
    logits, k, v = run_onnx(session, (ids, positions.contiguous(), *past, mask.contiguous(), flat))
    if every:
        logits = logits.reshape(batch, time, -1)
    return logits, torch.from_numpy(k), torch.from_numpy(v)


def test_graph_equals_transformers_under_a_causal_mask(imported):
    """A batch of two, every row: the ONNX logits are transformers' within float32 tolerance."""
    _, reference, _, manifest, session = imported
    ids = torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(ids).logits.numpy()
    logits, _, _ = forward(session, manifest, ids)
    assert logits.shape == (2, 11, VOCAB)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_graph_equals_transformers_against_the_cache(imported):
    """Prefill then a chunk against the cache (causal): the chunk's logits are transformers' on the whole."""
    _, reference, _, manifest, session = imported
    ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(ids).logits.numpy()
    _, k, v = forward(session, manifest, ids[:, :8])
    logits, _, _ = forward(session, manifest, ids[:, 8:], past=(k, v))
    np.testing.assert_allclose(logits, expected[:, 8:], atol=1e-4, rtol=0)


def test_graph_equals_transformers_under_the_block_causal_mask(imported):
    """The families' own models are these classes fed a 4-D block-causal mask (dllm's A2D passes
    one to Qwen3ForCausalLM): a batch of two prefilled at once, then the last block against the cache."""
    _, reference, _, manifest, session = imported
    block = manifest["block_size"]
    n = 3 * block
    ids = torch.randint(0, VOCAB, (2, n), generator=torch.Generator().manual_seed(6))
    mask = block_causal_mask(2, 0, n, block)
    with torch.no_grad():
        expected = reference(ids, attention_mask=mask[:, None].contiguous()).logits.numpy()
        assert np.abs(expected - reference(ids).logits.numpy()).max() > 1e-3  # the mask was honoured
    logits, _, _ = forward(session, manifest, ids, mask=mask)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    _, k, v = forward(session, manifest, ids[:, : n - block], mask=block_causal_mask(2, 0, n - block, block))
    last, _, _ = forward(
        session, manifest, ids[:, n - block :], past=(k, v), mask=block_causal_mask(2, n - block, block, block)
    )
    np.testing.assert_allclose(last, expected[:, n - block :], atol=1e-4, rtol=0)


def test_block_causal_cache_is_exact(imported):
    """Prefill two blocks under the block-causal mask, then a block against that cache: the same
    logits and keys/values as the three blocks forwarded at once (what makes the cache exact)."""
    _, _, _, manifest, session = imported
    block = manifest["block_size"]
    n = 2 * block
    ids = torch.randint(0, VOCAB, (2, n + block), generator=torch.Generator().manual_seed(3))
    whole, wk, wv = forward(session, manifest, ids, mask=block_causal_mask(2, 0, n + block, block))
    _, k, v = forward(session, manifest, ids[:, :n], mask=block_causal_mask(2, 0, n, block))
    np.testing.assert_allclose(k.numpy(), wk[:, :, :, :n].numpy(), atol=1e-5)
    logits, nk, _ = forward(session, manifest, ids[:, n:], past=(k, v), mask=block_causal_mask(2, n, block, block))
    np.testing.assert_allclose(logits, whole[:, n:], atol=1e-4, rtol=0)
    np.testing.assert_allclose(nk.numpy(), wk[:, :, :, n:].numpy(), atol=1e-5)
    # and the block really is bidirectional: its first row differs from the causal forward's
    causal, _, _ = forward(session, manifest, ids)
    assert np.abs(causal[:, n] - whole[:, n]).max() > 1e-3


def test_logits_only_for_the_rows_asked_for(imported):
    """logit_positions, uneven across a batch (3 rows, 1, none): exactly those rows come back,
    in the order asked, each transformers' logit at that position."""
    _, reference, _, manifest, session = imported
    ids = torch.randint(0, VOCAB, (3, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = reference(ids).logits.numpy()
    rows = [[8, 0, 3], [5], []]
    some, _, _ = forward(session, manifest, ids, rows=rows)
    assert some.shape == (4, VOCAB)
    asked = np.stack([expected[b, t] for b, r in enumerate(rows) for t in r])
    np.testing.assert_allclose(some, asked, atol=1e-4, rtol=0)
    # repeats are allowed, and so is asking no row at all (a batch that only commits)
    twice, _, _ = forward(session, manifest, ids[:1], rows=[[2, 2]])
    np.testing.assert_allclose(twice, expected[0, [2, 2]], atol=1e-4, rtol=0)
    none, k, _ = forward(session, manifest, ids, rows=[[], [], []])
    assert none.shape == (0, VOCAB) and k.shape[3] == 9


def test_manifest_fields_per_family(imported):
    model_type, _, root, manifest, _ = imported
    a, d, s = manifest["architecture"], manifest["decoding"], manifest["special_tokens"]
    assert (a["n_layers"], a["n_heads"], a["kv_heads"], a["head_dim"], a["vocab_size"]) == (2, 4, 2, 16, VOCAB)
    assert a["rope_base"] == 1e6 and manifest["context_length"] == 256
    assert s["eos_ids"] == [297, 296] and s["pad"] == 296 and s["mask"] == 298
    assert manifest["chat_template"] == TEMPLATE and manifest["license"] == "apache-2.0"
    assert manifest["source"]["model_type"] == model_type
    expected = {
        "sdar": dict(qk_norm=True, qkv_bias=False, tied_head=False, block=4, shift=0, align="absolute"),
        "Fast_dLLM_Qwen": dict(qk_norm=False, qkv_bias=True, tied_head=True, block=8, shift=1, align="absolute"),
        "a2d-qwen3": dict(qk_norm=True, qkv_bias=False, tied_head=True, block=4, shift=0, align="left_padded"),
    }[model_type]
    assert (a["qk_norm"], a["qkv_bias"], a["tied_head"]) == (
        expected["qk_norm"],
        expected["qkv_bias"],
        expected["tied_head"],
    )
    assert manifest["block_size"] == expected["block"]
    assert (d["logit_shift"], d["block_alignment"], d["token_healing"]) == (expected["shift"], expected["align"], False)
    assert d["commit"] in ("pass", "pass_yields_next_first_token")
    graph = manifest["graph"]
    assert graph["inputs"]["logit_positions"]["shape"] == ["rows"] and "logit_rows" not in graph["inputs"]
    assert graph["outputs"]["logits"]["shape"] == ["rows", "vocab"]
    assert graph["inputs"]["past_key"]["shape"][2] == "kv_heads"
    out = root / "out"
    assert set(manifest["files"]) == {"denoiser.onnx", "tokenizer.json", "golden.json"}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
    golden = json.loads((out / "golden.json").read_text())
    assert len(golden["argmax"]) == manifest["block_size"]


def test_golden_is_what_the_graph_gives(imported):
    _, _, _, manifest, session = imported
    golden = json.loads((imported[2] / "out" / "golden.json").read_text())
    block, n = manifest["block_size"], len(golden["prompt_ids"])
    prompt = torch.tensor([golden["prompt_ids"]])
    _, k, v = forward(session, manifest, prompt, mask=block_causal_mask(1, 0, n, block))
    logits, _, _ = forward(
        session, manifest, torch.tensor([golden["block_ids"]]), past=(k, v), mask=block_causal_mask(1, n, block, block)
    )
    assert logits[0].argmax(-1).tolist() == golden["argmax"]
    np.testing.assert_allclose(logits[0, :, :8], golden["logits_head"], atol=1e-4)


def test_sharded_equals_unsharded(tmp_path):
    make_checkpoint(tmp_path / "one", "sdar")
    make_checkpoint(tmp_path / "shards", "sdar", max_shard_size="100KB")
    assert (tmp_path / "shards" / "model.safetensors.index.json").exists()
    assert len(list((tmp_path / "shards").glob("*.safetensors"))) > 1
    a = import_checkpoint(tmp_path / "one", tmp_path / "a", name="x", dtype="float32")
    b = import_checkpoint(tmp_path / "shards", tmp_path / "b", name="x", dtype="float32")
    assert (tmp_path / "a" / "golden.json").read_text() == (tmp_path / "b" / "golden.json").read_text()
    assert a["architecture"] == b["architecture"]


def test_float16_storage_and_external_data(tmp_path):
    """The default stores float16 weights (half the bytes); past the size limit they go to
    denoiser.onnx.data, listed with its sha256; logits stay near transformers' float32 ones."""
    import onnx

    reference = make_checkpoint(tmp_path / "hf", "sdar")
    f32 = import_checkpoint(tmp_path / "hf", tmp_path / "f32", dtype="float32")
    f16 = import_checkpoint(tmp_path / "hf", tmp_path / "f16", external_over=1000)
    assert f16["graph"]["external_data"] == "denoiser.onnx.data"
    assert "denoiser.onnx.data" in f16["files"]
    stored = f16["files"]["denoiser.onnx"]["bytes"] + f16["files"]["denoiser.onnx.data"]["bytes"]
    assert stored < 0.6 * f32["files"]["denoiser.onnx"]["bytes"]
    graph = onnx.load(str(tmp_path / "f16" / "denoiser.onnx"), load_external_data=False)
    assert {i.data_type for i in graph.graph.initializer if "weight" in i.name} == {onnx.TensorProto.FLOAT16}
    ids = torch.randint(0, VOCAB, (1, 10), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = reference(ids).logits.numpy()
    logits, _, _ = forward(graph_io.session(tmp_path / "f16" / "denoiser.onnx"), f16, ids)
    np.testing.assert_allclose(logits, expected, atol=2e-2, rtol=0)


def test_command_line(tmp_path):
    """The script as npm run model:import runs it: --from, --out, --name, --dtype."""
    import subprocess
    import sys
    from pathlib import Path

    make_checkpoint(tmp_path / "hf", "a2d-qwen3")
    script = Path(__file__).resolve().parents[1] / "import_checkpoint.py"
    args = ["--from", str(tmp_path / "hf"), "--out", str(tmp_path / "out"), "--name", "bd3lm-tiny"]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True)
    assert "imported dllm BD3LM (Qwen3) as bd3lm-tiny" in done.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["name"] == "bd3lm-tiny" and manifest["graph"]["weights"].startswith("float16")
    bad = subprocess.run(
        [sys.executable, str(script), "--from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "is not a directory" in bad.stderr


def test_mask_id_sources(tmp_path):
    """Where the mask id comes from: config.json (SDAR), tokenizer_config (dllm), and for
    Fast-dLLM v2, whose checkpoint names none, the id its own sampler hard-codes."""
    from import_checkpoint import FAMILIES as CONVENTIONS
    from import_checkpoint import special_tokens

    make_checkpoint(tmp_path, "Fast_dLLM_Qwen")
    generation = {"eos_token_id": 151645}
    big = {"vocab_size": 151936}
    assert special_tokens(tmp_path, big, {}, generation, CONVENTIONS["Fast_dLLM_Qwen"])["mask"] == 151665
    assert (
        special_tokens(tmp_path, {**big, "mask_token_id": 151669}, {}, generation, CONVENTIONS["sdar"])["mask"]
        == 151669
    )
    assert (
        special_tokens(tmp_path, big, {"mask_token": "<|MASK|>"}, generation, CONVENTIONS["a2d-qwen3"])["mask"] == 298
    )
    with pytest.raises(CheckpointError, match="outside the vocabulary"):
        import_checkpoint(tmp_path, tmp_path / "out")


def test_bad_input_is_a_clear_error(tmp_path):
    make_checkpoint(tmp_path / "hf", "sdar")
    unknown = tmp_path / "unknown"
    shutil.copytree(tmp_path / "hf", unknown)
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(CheckpointError, match="model_type 'llama' is not one of the supported families"):
        import_checkpoint(unknown, tmp_path / "out")
    (tmp_path / "hf" / "generation_config.json").unlink()
    with pytest.raises(CheckpointError, match="generation_config.json is missing"):
        import_checkpoint(tmp_path / "hf", tmp_path / "out")
    shards = tmp_path / "shards"
    make_checkpoint(shards, "sdar", max_shard_size="100KB")
    next(shards.glob("model-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match="shard .* is missing"):
        import_checkpoint(shards, tmp_path / "out")
    with pytest.raises(CheckpointError, match="not a directory"):
        import_checkpoint(tmp_path / "nowhere", tmp_path / "out")


def test_isolated_import_equals_in_process(tmp_path):
    """A large checkpoint's PyTorch side runs in a child process (its memory all given back before
    onnxruntime loads the graph): the same graph, golden file and manifest as in process."""
    make_checkpoint(tmp_path / "hf", "sdar")
    here = import_checkpoint(tmp_path / "hf", tmp_path / "here", name="x", external_over=1000, isolate=False)
    child = import_checkpoint(tmp_path / "hf", tmp_path / "child", name="x", external_over=1000, isolate=True)
    assert child == here
    for name in ("denoiser.onnx", "denoiser.onnx.data", "golden.json"):
        assert (tmp_path / "child" / name).read_bytes() == (tmp_path / "here" / name).read_bytes()
