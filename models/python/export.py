"""Exports a trained checkpoint to ONNX and writes the model manifest.

    python models/python/export.py --checkpoint runs/sprout/checkpoint.pt --out models/sprout-tiny

Writes `denoiser.onnx` (one graph: logits plus the new tokens' keys/values, given a KV cache and
an attention mask), `manifest.json` (the seam the TypeScript runtime reads: special ids, shapes,
inputs/outputs, sha256 of every file, provenance) and `golden.json` (a fixed input and the logits
PyTorch gives for it, so the TypeScript side can check that it runs the same model).
The graph is staged and checked against PyTorch with onnxruntime before it replaces the old one.
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
from weights import load_checkpoint


def example_inputs(model: Denoiser, batch: int, past: int, time: int, causal: bool, *, low: int, seed: int = 0):
    """Random inputs of one forward; ids from `low` up (above the control tokens)."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, c.vocab_size, (batch, time), generator=g)
    positions = torch.arange(past, past + time).expand(batch, time).contiguous()
    shape = (c.n_layers, batch, c.n_heads, past, c.head_dim)
    past_key, past_value = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    mask = (causal_mask if causal else block_mask)(batch, past, time).contiguous()
    return ids, positions, past_key, past_value, mask


def export(model: Denoiser, path: Path, low: int) -> None:
    inputs = example_inputs(model, batch=2, past=5, time=3, causal=False, low=low)
    graph_io.export_onnx(model, inputs, path, INPUTS, AXES)


def check(model: Denoiser, path: Path, low: int) -> float:
    """Largest |onnx − torch| over shapes the runtime uses, the empty-cache prefill included."""
    session = graph_io.session(path)
    worst = 0.0
    for batch, past, time, causal in [(1, 0, 7, True), (1, 12, 4, False), (3, 9, 16, False), (2, 30, 1, True)]:
        inputs = example_inputs(model, batch, past, time, causal, seed=past + time, low=low)
        with torch.no_grad():
            expected = model(*inputs)
        got = graph_io.run(session, inputs, INPUTS)
        for e, g in zip(expected, got, strict=True):
            worst = max(worst, float(np.abs(e.numpy() - g).max()))
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
        _, k, v = run(ids, torch.arange(len(prompt))[None], pk, pv, causal_mask(1, 0, len(prompt)).contiguous())
        block = torch.full((1, 4), mask_id)
        positions = torch.arange(len(prompt), len(prompt) + 4)[None]
        logits, _, _ = run(block, positions, k, v, block_mask(1, len(prompt), 4))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.pt, or a directory of weight parts")
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
    export(model, staged, low)
    worst = check(model, staged, low)
    if worst >= 1e-3:
        staged.unlink()
        raise SystemExit(f"ONNX output differs from PyTorch by {worst}; nothing written")
    weights = "float32"
    if args.fp16:
        store_fp16(staged)
        worst, weights = (
            check(model, staged, low),
            "float16 storage, float32 arithmetic (onnxruntime folds the widening Casts at load)",
        )
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
        "graph": {
            "file": "denoiser.onnx",
            "opset": 17,
            "inputs": {
                "input_ids": {"type": "int64", "shape": ["batch", "time"]},
                "positions": {"type": "int64", "shape": ["batch", "time"]},
                "past_key": {"type": "float32", "shape": ["layers", "batch", "heads", "past", "head_dim"]},
                "past_value": {"type": "float32", "shape": ["layers", "batch", "heads", "past", "head_dim"]},
                "attention_mask": {
                    "type": "bool",
                    "shape": ["batch", "time", "past+time"],
                    "meaning": "true where token may attend; past first, then the new tokens",
                },
            },
            "outputs": {
                "logits": {"type": "float32", "shape": ["batch", "time", "vocab"]},
                "new_key": {"type": "float32", "shape": ["layers", "batch", "heads", "time", "head_dim"]},
                "new_value": {"type": "float32", "shape": ["layers", "batch", "heads", "time", "head_dim"]},
            },
            "weights": weights,
            "max_abs_diff_vs_torch": worst,
        },
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
        "files": {
            name: {"sha256": sha256(args.out / name), "bytes": (args.out / name).stat().st_size} for name in files
        },
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {args.out / 'manifest.json'}")


if __name__ == "__main__":
    main()
