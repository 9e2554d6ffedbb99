"""Exports a trained checkpoint to ONNX and writes the model manifest.

    python models/python/export.py --checkpoint runs/sprout/checkpoint.pt --out models/sprout-tiny
    python models/python/export.py --from-model-dir models/sprout-tiny --out DIR   # re-export

Writes `denoiser.onnx` (one graph: logits for the rows asked for (`logit_rows`) plus the new
tokens' keys/values, given a KV cache and an attention mask), `manifest.json` (the seam the
TypeScript runtime reads: special ids, shapes, inputs/outputs, sha256 of every file, provenance)
and `golden.json` (a fixed input and the logits PyTorch gives for it, so the TypeScript side can
check that it runs the same model).
The graph is staged and checked against PyTorch with onnxruntime before it replaces the old one.

`--from-model-dir` re-exports a shipped model when its training run is gone (a new graph
contract): the weights are read back from its graph (weights.from_model_dir), the new graph must
hold the same weights bit for bit and give the old graph's logits on every row asked for, and the
manifest is the old one with the graph's entry, the files' sha256s and a `lineage` record updated.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

import graph_io
from graph_io import AXES, INPUTS, sha256
from model import Denoiser, ModelConfig, block_mask, causal_mask
from tokenizer import load_tokenizer, special_ids
from train import logged_step
from weights import from_model_dir, load_checkpoint

# Shapes the runtime uses (batch, past, time, causal, rows asked for; None: all of them): the
# empty-cache prefill, a block step, a batched step asking a subset (context riding along), one token.
CHECK_SHAPES = [(1, 0, 7, True, None), (1, 12, 4, False, None), (3, 9, 16, False, 5), (2, 30, 1, True, None)]


def example_inputs(
    model: Denoiser, batch: int, past: int, time: int, causal: bool, *, low: int, seed: int = 0, rows: int | None = None
):
    """Random inputs of one forward; ids from `low` up (above the control tokens); `rows` of the
    `time` rows asked for, in random order (all of them, in order, when None)."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, c.vocab_size, (batch, time), generator=g)
    positions = torch.arange(past, past + time).expand(batch, time).contiguous()
    shape = (c.n_layers, batch, c.n_heads, past, c.head_dim)
    past_key, past_value = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    mask = (causal_mask if causal else block_mask)(batch, past, time).contiguous()
    if rows is None:
        logit_rows = torch.from_numpy(graph_io.all_rows(batch, time))
    else:
        logit_rows = torch.stack([torch.randperm(time, generator=g)[:rows] for _ in range(batch)])
    return ids, positions, past_key, past_value, mask, logit_rows


def export(model: Denoiser, path: Path, low: int) -> None:
    inputs = example_inputs(model, batch=2, past=5, time=3, causal=False, low=low, rows=2)
    graph_io.export_onnx(model, inputs, path, INPUTS, AXES)


def check(model: Denoiser, path: Path, low: int) -> float:
    """Largest |onnx − torch| over CHECK_SHAPES."""
    session = graph_io.session(path)
    worst = 0.0
    for batch, past, time, causal, rows in CHECK_SHAPES:
        inputs = example_inputs(model, batch, past, time, causal, seed=past + time, low=low, rows=rows)
        with torch.no_grad():
            expected = model(*inputs)
        got = graph_io.run(session, inputs, INPUTS)
        for e, g in zip(expected, got, strict=True):
            worst = max(worst, float(np.abs(e.numpy() - g).max()))
    return worst


def same_weights(old: Path, new: Path) -> bool:
    """Whether two graphs hold the same initializers: names, types, shapes and bytes."""
    import onnx
    from onnx import numpy_helper

    def weights(path: Path) -> dict[str, np.ndarray]:
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}

    a, b = weights(old), weights(new)
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def against_previous(model: Denoiser, old: Path, new: Path, low: int) -> float:
    """Largest |new − old| over CHECK_SHAPES, of the logits on the rows the new graph is asked for
    (the old graph computing every row) and of the new keys/values."""
    old_session, new_session = graph_io.session(old), graph_io.session(new)
    worst = 0.0
    for batch, past, time, causal, rows in CHECK_SHAPES:
        inputs = example_inputs(model, batch, past, time, causal, seed=past + time + 1, low=low, rows=rows)
        named = {name: t.numpy() for name, t in zip(INPUTS, inputs, strict=True)}
        logit_rows = named.pop(graph_io.LOGIT_ROWS)
        before = old_session.run(graph_io.OUTPUTS, graph_io.feeds(old_session, named))
        after = new_session.run(graph_io.OUTPUTS, {**named, graph_io.LOGIT_ROWS: logit_rows})
        asked = np.take_along_axis(before[0], logit_rows[..., None], axis=1)
        for e, g in zip([asked, *before[1:]], after, strict=True):
            worst = max(worst, float(np.abs(e - g).max()))
    return worst


def store_fp16(path: Path) -> None:
    """The graph at `path` with its weights stored as float16 (graph_io.widen_from_fp16)."""
    import onnx

    graph = onnx.load(str(path))
    graph_io.widen_from_fp16(graph)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


def onnx_as_module(path: Path):
    """The exported graph, callable like the PyTorch module (for golden values of a quantized graph)."""
    session = graph_io.session(path)

    def run(*inputs):
        return [torch.from_numpy(x) for x in graph_io.run(session, inputs, INPUTS)]

    return run


def golden(model: Denoiser, tokenizer: Tokenizer, graph=None) -> dict:
    """Prefill a prompt, then one denoising step of a 4-token masked block, in PyTorch (or, for an
    int8 graph, in that graph: what the runtime must reproduce)."""
    run = graph or model
    prompt = [tokenizer.token_to_id("<|bos|>")] + tokenizer.encode("def add(a, b):\n", add_special_tokens=False).ids
    mask_id = tokenizer.token_to_id("<|mask|>")
    with torch.no_grad():
        pk, pv = model.empty_cache(1)
        ids = torch.tensor([prompt])
        last = torch.tensor([[len(prompt) - 1]])  # a prefill's logits go unread: one row
        _, k, v = run(ids, torch.arange(len(prompt))[None], pk, pv, causal_mask(1, 0, len(prompt)).contiguous(), last)
        block = torch.full((1, 4), mask_id)
        positions = torch.arange(len(prompt), len(prompt) + 4)[None]
        every = torch.from_numpy(graph_io.all_rows(1, 4))
        logits, _, _ = run(block, positions, k, v, block_mask(1, len(prompt), 4), every)
    return {
        "prompt_ids": prompt,
        "block_ids": block[0].tolist(),
        "argmax": logits[0].argmax(-1).tolist(),
        "logits_head": [row[:8].tolist() for row in logits[0]],
    }


def recipe(args: dict, records: list[dict]) -> str:
    """What the training run did, in words, from the arguments its checkpoint kept (and its log,
    which says where stage 2 really began when a run was resumed past --stage2-from)."""
    if args.get("objective") == "ar":
        text = "autoregressive twin: causal mask, next-token cross-entropy"
    else:
        text = "stage 1: absorbing-state masked diffusion, ELBO weighting, block sizes sampled per step"
        if args.get("stage2_from") is not None:
            first = next((r["step"] for r in records if r.get("stage") == 2), args["stage2_from"] + 1)
            text += (
                f"; stage 2 from step {first}: edit corruption of visible tokens (substitutions, insertions, "
                f"deletions; floor(L*alpha_t) per block, alpha_t <= 0.1) on {args.get('edit_rows', 1):.0%} "
                "of sequences, "
                "loss on every visible token"
            )
    if args.get("fim_rate"):
        first = next((f" from step {r['step']}" for r in records if r.get("fim_rate")), "")
        text += (
            f"; fill-in-the-middle (fim.py: PSM, a unit of code as the middle from a block boundary, "
            f"<|eos|> and <|eos|> padding after it) on {args['fim_rate']:.0%} of windows{first}"
        )
        if args.get("init_from"):
            text = f"fine-tune of {Path(args['init_from']).name}: {text}"
    for run in distill_runs(args):
        names = {
            3: "stage 3 (constrained-order trajectories)",
            4: "stage 4 (on-policy step reduction: verified own rollouts)",
        }
        text += (
            f"; then {run['steps']} steps of {' + '.join(names.get(s, f'stage {s}') for s in run.get('stages', []))}"
            f" fine-tuning (distill.py, lr {run['lr']}, anchor {run['anchor']})"
        )
    return text


def base_training(args: dict) -> dict | None:
    """The training record of the model a fine-tune started from (train.py --init-from), read
    from its manifest, so the exported manifest keeps the whole lineage."""
    manifest = Path(args["init_from"]) / "manifest.json" if args.get("init_from") else None
    if manifest is None or not manifest.exists():
        return None
    base = json.loads(manifest.read_text())
    return {"model": base["name"], **{k: base["training"].get(k) for k in ("recipe", "steps", "tokens", "window")}}


def distill_runs(args: dict) -> list[dict]:
    """The distill.py fine-tunes a checkpoint went through, oldest first."""
    runs = args.get("distill", [])
    return [runs] if isinstance(runs, dict) else runs


def corpus_licenses(data: dict) -> dict | None:
    """License counts (sources per license) of a build_corpus.py corpus the data was packed from."""
    source = str(data.get("source", ""))
    corpus_json = Path(source.split(" ")[0]) / "corpus.json"
    if not corpus_json.exists():
        return {"PSF-2.0": {"sources": 1}} if source.startswith("Python standard library") else None
    return json.loads(corpus_json.read_text()).get("licenses_kept")


def export_checked(model: Denoiser, staged: Path, low: int, *, fp16: bool) -> float:
    """Exports `model` to `staged` (float16 storage if `fp16`, its weights already rounded) and
    returns max |onnx − torch|; refuses (and removes the file) past 1e-3."""
    export(model, staged, low)
    worst = check(model, staged, low)
    if worst < 1e-3 and fp16:
        store_fp16(staged)
        worst = check(model, staged, low)
    if worst >= 1e-3:
        staged.unlink()
        raise SystemExit(f"ONNX output differs from PyTorch by {worst}; nothing written")
    return worst


def file_entries(directory: Path, files: list[str]) -> dict:
    return {name: {"sha256": sha256(directory / name), "bytes": (directory / name).stat().st_size} for name in files}


def reexport(model_dir: Path, out: Path) -> None:
    """`--from-model-dir`: the model at `model_dir` written again to `out` under today's graph
    contract, from its own graph's weights. Refused unless the new graph holds the same weights
    bit for bit and gives the old graph's logits (on the rows asked for) and keys/values within
    1e-5. The manifest is the old one (training record, evaluation) with the graph's entry and the
    files' sha256s replaced, and a `lineage` entry saying what was re-exported from what."""
    import shutil

    manifest = json.loads((model_dir / "manifest.json").read_text())
    old_graph = model_dir / manifest["graph"]["file"]
    stored = manifest["graph"]["weights"]
    if stored not in ("float32", graph_io.FP16_WEIGHTS):
        raise SystemExit(f"cannot re-export {stored} weights from the graph (only float32 or float16 storage)")
    if manifest.get("objective", "diffusion") not in ("diffusion", "ar"):
        raise SystemExit(f"not a Sprout model: objective {manifest.get('objective')}")
    state = from_model_dir(model_dir)
    model = Denoiser(ModelConfig(**state["config"]))
    model.load_state_dict(state["model"])
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != model_dir.resolve():
        shutil.copy(model_dir / "tokenizer.json", out / "tokenizer.json")
    tokenizer = load_tokenizer(out / "tokenizer.json")
    low = max(special_ids(tokenizer).all()) + 1

    staged = out / "denoiser.onnx.tmp"
    worst = export_checked(model, staged, low, fp16=stored == graph_io.FP16_WEIGHTS)
    if not same_weights(old_graph, staged):
        staged.unlink()
        raise SystemExit(f"the re-exported graph's weights differ from {old_graph}'s; nothing written")
    drift = against_previous(model, old_graph, staged, low)
    if drift > 1e-5:
        staged.unlink()
        raise SystemExit(f"the re-exported graph differs from {old_graph} by {drift}; nothing written")
    previous = {
        "graph_sha256": manifest["files"][manifest["graph"]["file"]]["sha256"],
        "inputs": list(manifest["graph"]["inputs"]),
    }
    staged.replace(out / "denoiser.onnx")
    print(f"re-exported {out / 'denoiser.onnx'} ({stored}); max |onnx - torch| = {worst:.2e}, vs before {drift:.2e}")
    (out / "golden.json").write_text(json.dumps(golden(model, tokenizer)) + "\n")
    files = ["tokenizer.json", "denoiser.onnx", "golden.json"]
    manifest["graph"] = graph_io.manifest_graph(stored, worst)
    manifest["files"] = file_entries(out, files)
    manifest["lineage"] = [
        *manifest.get("lineage", []),
        {
            "re_exported_from": previous,
            "by": "export.py --from-model-dir",
            "why": "graph contract: the logit_rows input (final norm and head only on the rows asked for)",
            "weights": "unchanged: read from the previous graph, the same initializers bit for bit",
            "max_abs_diff_vs_previous_graph": drift,
        },
    ]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out / 'manifest.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="checkpoint.pt, or a directory of weight parts")
    source.add_argument(
        "--from-model-dir",
        type=Path,
        help="re-export a model directory from its own graph's weights (no training run needed): "
        "same weights, today's graph contract; its manifest is kept, with a lineage record",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", default="sprout-tiny")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="ship int8 weights (onnxruntime dynamic quantization of the MatMuls; the tied embedding "
        "stays float32): 21 → 15 MB for sprout-tiny, +0.3%% bits/byte; no longer equal to "
        "PyTorch within 1e-3, so golden.json holds the quantized graph's own logits",
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="store the weights as float16 (computed in float32): half the bytes. The weights are "
        "rounded to fp16 before export, so the graph still equals that PyTorch model",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the training data's folder (its data.json), when it is not where the run saw it (a GPU run)",
    )
    args = parser.parse_args()
    if args.from_model_dir is not None:
        if args.int8 or args.fp16 or args.data:
            parser.error("--from-model-dir keeps the model's own weight storage; --int8/--fp16/--data do not apply")
        reexport(args.from_model_dir, args.out)
        return

    state = load_checkpoint(args.checkpoint)
    config = ModelConfig(**state["config"])
    model = Denoiser(config)
    model.load_state_dict(state["model"])  # bf16 weight parts are widened to float32 here
    model.eval()
    if args.fp16:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(parameter.half().float())
    tokenizer_path = args.out / "tokenizer.json"
    tokenizer = load_tokenizer(tokenizer_path)
    assert tokenizer.get_vocab_size() == config.vocab_size, "tokenizer and model disagree on the vocabulary"
    special = special_ids(tokenizer)
    low = max(special.all()) + 1  # example inputs: ordinary tokens only

    onnx_path = args.out / "denoiser.onnx"
    staged = args.out / "denoiser.onnx.tmp"
    worst = export_checked(model, staged, low, fp16=args.fp16)
    weights = graph_io.FP16_WEIGHTS if args.fp16 else "float32"
    if args.int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = args.out / "denoiser.int8.onnx.tmp"
        quantize_dynamic(staged, quantized, weight_type=QuantType.QInt8)
        staged.unlink()
        quantized.replace(staged)
        worst, weights = check(model, staged, low), "int8 (dynamic quantization of MatMul weights; embedding float32)"
    staged.replace(onnx_path)
    print(f"exported {onnx_path} ({weights}); max |onnx - torch| = {worst:.2e}")
    graph = onnx_as_module(onnx_path) if args.int8 else None
    (args.out / "golden.json").write_text(json.dumps(golden(model, tokenizer, graph)) + "\n")

    log_path = (args.checkpoint if args.checkpoint.is_dir() else args.checkpoint.parent) / "log.jsonl"
    lines = log_path.read_text().splitlines() if log_path.exists() else []
    records = [json.loads(line) for line in lines if logged_step(line) <= state["step"]]  # what this checkpoint saw
    evals = [r for r in records if "val_loss" in r]
    data_json = (args.data or Path(state["args"]["data"])) / "data.json"
    data = json.loads(data_json.read_text()) if data_json.exists() else {}
    files = ["tokenizer.json", "denoiser.onnx", "golden.json"]
    objective = state["args"].get("objective", "diffusion")
    manifest = {
        "schema_version": 1,
        "name": args.name,
        "kind": (
            "autoregressive twin (causal)"
            if objective == "ar"
            else "block-diffusion denoiser (causal context, bidirectional block)"
        ),
        # How to decode it: "diffusion" (blocks of masks, denoised) or "ar" (one token per forward).
        "objective": objective,
        "architecture": {
            **config.to_dict(),
            "head_dim": config.head_dim,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "special_tokens": asdict(special),
        # Trained windows bound the relative distances the model has seen: that is its context.
        "context_length": int(state["args"]["length"]),
        "block_sizes": [int(b) for b in state["args"]["block_sizes"]],
        "graph": graph_io.manifest_graph(weights, worst),
        "training": {
            "recipe": recipe(state["args"], records),
            "steps": state["step"],
            # Pre-training tokens (the distill.py fine-tunes' steps are small batches of trajectories).
            "tokens": (state["step"] - sum(r["steps"] for r in distill_runs(state["args"])))
            * int(state["args"]["batch"])
            * int(state["args"]["length"])
            * max([r.get("world_size", 1) for r in records] or [1]),
            "data": data.get("source", "unknown (no data.json beside the training data)"),
            "data_splits": data.get("splits"),
            "data_licenses": corpus_licenses(data),
            "window": int(state["args"]["length"]),
            "batch": int(state["args"]["batch"]),
            "final_train_loss": records[-1]["loss"] if records else None,
            "final_val_loss": evals[-1]["val_loss"] if evals else None,
            "base": base_training(state["args"]),
        },
        "files": file_entries(args.out, files),
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {args.out / 'manifest.json'}")


if __name__ == "__main__":
    main()
