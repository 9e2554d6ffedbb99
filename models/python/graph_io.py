"""Writing and reading the ONNX graphs of a Sprout model directory, for export.py (our models) and
import_checkpoint.py (open checkpoints) alike: the KV-cache contract's names and dynamic axes,
float16 storage, running a graph, and the sha256 the manifest records."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

# Two contracts tell a graph which rows its final norm and vocabulary head run on (decoding reads
# a block's masked rows, not the context riding along). Each has one writer:
#
# - per sequence, `logit_rows` (int64 [batch, rows], indices into time) → logits [batch, rows,
#   vocab]: sprout-tiny's graph (export.py, model.py). Every sequence of a batch asks the same
#   number of rows, so a caller pads each to the most any asks. Graphs written before it
#   (sprout-tiny-ar) lack it; `feeds` asks such a graph for every row.
# - flat, `logit_positions` (int64 [rows], indices b·time + t into batch × time) → logits [rows,
#   vocab]: imported graphs (import_checkpoint.py). Exactly the rows asked, no padding: with a
#   150k-token head (~0.6 GFLOP a row at 2048 wide) the padded rows of an uneven batch cost more
#   than the rows read.
# sprout-tiny keeps the per-sequence contract because its shipped graph is not re-exported.
LOGIT_ROWS = "logit_rows"
LOGIT_POSITIONS = "logit_positions"
CACHE_INPUTS = ["input_ids", "positions", "past_key", "past_value", "attention_mask"]
INPUTS = [*CACHE_INPUTS, LOGIT_ROWS]  # per sequence (export.py)
FLAT_INPUTS = [*CACHE_INPUTS, LOGIT_POSITIONS]  # flat (import_checkpoint.py)
OUTPUTS = ["logits", "new_key", "new_value"]
# Which dimensions vary: past_key/value are [layers, batch, heads, past, head_dim].
CACHE_AXES = {
    "input_ids": {0: "batch", 1: "time"},
    "positions": {0: "batch", 1: "time"},
    "past_key": {1: "batch", 3: "past"},
    "past_value": {1: "batch", 3: "past"},
    "attention_mask": {0: "batch", 1: "time", 2: "past_plus_time"},
    "new_key": {1: "batch", 3: "time"},
    "new_value": {1: "batch", 3: "time"},
}
AXES = {**CACHE_AXES, LOGIT_ROWS: {0: "batch", 1: "rows"}, "logits": {0: "batch", 1: "rows"}}
FLAT_AXES = {**CACHE_AXES, LOGIT_POSITIONS: {0: "rows"}, "logits": {0: "rows"}}
# Each contract's input and logits in the manifest's words (manifest_graph).
ROW_CONTRACTS = {
    LOGIT_ROWS: (
        {
            "type": "int64",
            "shape": ["batch", "rows"],
            "meaning": "indices into time of the rows whose logits are computed",
        },
        {"type": "float32", "shape": ["batch", "rows", "vocab"]},
    ),
    LOGIT_POSITIONS: (
        {
            "type": "int64",
            "shape": ["rows"],
            "meaning": "flat indices b*time + t into batch x time of the rows whose logits are computed",
        },
        {"type": "float32", "shape": ["rows", "vocab"]},
    ),
}
# The manifest's `graph.weights` for float16 storage.
FP16_WEIGHTS = "float16 storage, float32 arithmetic (onnxruntime folds the widening Casts at load)"


def manifest_graph(weights: str, worst: float, heads: str = "heads", rows: str = LOGIT_ROWS) -> dict:
    """The manifest's `graph`: the contract above in the runtime's words, for export.py and
    import_checkpoint.py alike. `heads` names the cache's head axis (`kv_heads` for a GQA cache);
    `rows` the row contract's input (LOGIT_ROWS or LOGIT_POSITIONS)."""
    rows_input, logits = ROW_CONTRACTS[rows]
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
            rows: rows_input,
        },
        "outputs": {
            "logits": logits,
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
    of a graph without the input. For sprout-tiny's graphs (per sequence, or none): a flat graph's
    logits would come back [batch × time, vocab], so one is refused rather than misread."""
    names = {i.name for i in graph_session.get_inputs()}
    if LOGIT_POSITIONS in names:
        raise ValueError("graph_io.feeds: this graph takes logit_positions (flat); give them yourself")
    if LOGIT_ROWS in named or LOGIT_ROWS not in names:
        return named
    batch, time = named["input_ids"].shape
    return {**named, LOGIT_ROWS: all_rows(batch, time)}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
