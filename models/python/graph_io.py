"""Writing and reading the ONNX graphs of a Sprout model directory, for export.py (our models) and
import_checkpoint.py (open checkpoints) alike: the KV-cache contract's names and dynamic axes,
float16 storage, running a graph, and the sha256 the manifest records."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

# `logit_rows` (int64 [batch, rows], indices into time) picks the rows the final norm and the
# vocabulary head run on: decoding reads a block's masked rows, not the context riding along.
# Graphs written before it (sprout-tiny-ar) lack it; `feeds` asks such a graph for every row.
LOGIT_ROWS = "logit_rows"
INPUTS = ["input_ids", "positions", "past_key", "past_value", "attention_mask", LOGIT_ROWS]
OUTPUTS = ["logits", "new_key", "new_value"]
# Which dimensions vary: past_key/value are [layers, batch, heads, past, head_dim].
AXES = {
    "input_ids": {0: "batch", 1: "time"},
    "positions": {0: "batch", 1: "time"},
    "past_key": {1: "batch", 3: "past"},
    "past_value": {1: "batch", 3: "past"},
    "attention_mask": {0: "batch", 1: "time", 2: "past_plus_time"},
    LOGIT_ROWS: {0: "batch", 1: "rows"},
    "logits": {0: "batch", 1: "rows"},
    "new_key": {1: "batch", 3: "time"},
    "new_value": {1: "batch", 3: "time"},
}
# The manifest's `graph.weights` for float16 storage.
FP16_WEIGHTS = "float16 storage, float32 arithmetic (onnxruntime folds the widening Casts at load)"


def manifest_graph(weights: str, worst: float, heads: str = "heads") -> dict:
    """The manifest's `graph`: the contract above in the runtime's words, for export.py and
    import_checkpoint.py alike. `heads` names the cache's head axis (`kv_heads` for a GQA cache)."""
    cache = {"type": "float32", "shape": ["layers", "batch", heads, "past", "head_dim"]}
    new = {"type": "float32", "shape": ["layers", "batch", heads, "time", "head_dim"]}
    return {
        "file": "denoiser.onnx",
        "opset": 17,
        "inputs": {
            "input_ids": {"type": "int64", "shape": ["batch", "time"]},
            "positions": {"type": "int64", "shape": ["batch", "time"]},
            "past_key": cache,
            "past_value": cache,
            "attention_mask": {
                "type": "bool",
                "shape": ["batch", "time", "past+time"],
                "meaning": "true where token may attend; past first, then the new tokens",
            },
            LOGIT_ROWS: {
                "type": "int64",
                "shape": ["batch", "rows"],
                "meaning": "indices into time of the rows whose logits are computed",
            },
        },
        "outputs": {
            "logits": {"type": "float32", "shape": ["batch", "rows", "vocab"]},
            "new_key": new,
            "new_value": new,
        },
        "weights": weights,
        "max_abs_diff_vs_torch": worst,
    }


# A weight stored in half precision is named `<name>.fp16` and widened to `<name>` by a Cast.
FP16_SUFFIX = ".fp16"


def export_onnx(module: torch.nn.Module, inputs: tuple, path: Path, input_names: list[str], axes: dict) -> None:
    torch.onnx.export(
        module,
        inputs,
        str(path),
        input_names=input_names,
        output_names=OUTPUTS,
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
        # Folding would store a tied embedding twice (once transposed for the output head).
        do_constant_folding=False,
    )


def widen_from_fp16(graph) -> None:
    """Stores an onnx ModelProto's float32 weights as float16, each widened back by a Cast at the
    graph's start: half the bytes on disk, and onnxruntime folds the Casts when it loads the
    session, so the arithmetic stays float32 at float32's speed. Lossless for weights already
    rounded to fp16."""
    from onnx import TensorProto, helper, numpy_helper

    casts = []
    for initializer in graph.graph.initializer:
        if initializer.data_type != TensorProto.FLOAT:
            continue
        name = initializer.name
        half = numpy_helper.to_array(initializer).astype(np.float16)
        initializer.CopyFrom(numpy_helper.from_array(half, name + FP16_SUFFIX))
        casts.append(helper.make_node("Cast", [name + FP16_SUFFIX], [name], to=TensorProto.FLOAT, name=f"{name}.widen"))
    nodes = casts + list(graph.graph.node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)


def session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(graph_session, inputs, input_names: list[str] = INPUTS) -> list[np.ndarray]:
    """The graph's outputs for torch inputs given in `input_names` order."""
    return graph_session.run(OUTPUTS, {name: t.numpy() for name, t in zip(input_names, inputs, strict=True)})


def all_rows(batch: int, time: int) -> np.ndarray:
    """`logit_rows` asking for every row: [batch, time] of 0 … time-1."""
    return np.tile(np.arange(time, dtype=np.int64), (batch, 1))


def feeds(graph_session, named: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`named` (numpy arrays by input name, without logit_rows) completed for this graph: a graph
    that selects rows is asked for all of them, so its logits are [batch, time, vocab] like those
    of a graph without the input."""
    if LOGIT_ROWS in named or LOGIT_ROWS not in {i.name for i in graph_session.get_inputs()}:
        return named
    batch, time = named["input_ids"].shape
    return {**named, LOGIT_ROWS: all_rows(batch, time)}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
