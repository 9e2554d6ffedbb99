"""Writes models/src/pick.onnx: the per-position statistics greedy unmasking needs, computed by
onnxruntime (vectorised, multi-threaded) instead of a JavaScript loop over every logit.

Inputs: `logits` [rows, vocab] float32 and `bias` [vocab] (0, or -inf for ids never to choose).
Outputs per row: `top_id` (the argmax; ties go to the lowest id, as in sampling.ts),
`top_logprob` (its log-probability) and `entropy` (nats) of softmax(logits + bias).
The graph does not depend on the model. Run: .venv/bin/python models/python/pick_graph.py"""

from pathlib import Path

import onnx
from onnx import TensorProto, helper


def build() -> onnx.ModelProto:
    inputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", "vocab"]),
        helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["vocab"]),
    ]
    outputs = [
        helper.make_tensor_value_info("top_id", TensorProto.INT64, ["rows"]),
        helper.make_tensor_value_info("top_logprob", TensorProto.FLOAT, ["rows"]),
        helper.make_tensor_value_info("entropy", TensorProto.FLOAT, ["rows"]),
    ]
    constants = [
        helper.make_tensor("last_axis", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("floor", TensorProto.FLOAT, [], [-60.0]),
    ]
    nodes = [
        helper.make_node("Add", ["logits", "bias"], ["allowed"]),
        helper.make_node("ArgMax", ["allowed"], ["top_id"], axis=-1, keepdims=0),
        helper.make_node("ReduceMax", ["allowed"], ["max"], axes=[-1], keepdims=1),
        helper.make_node("Sub", ["allowed", "max"], ["shifted"]),
        # Shifted logits are floored at -60: below that, exp() would give subnormal floats (x86
        # computes on those many times slower: measured 6x on real logits) and banned ids (-inf)
        # would give 0 x -inf = NaN. What the floor adds is below 1e-22 of the sum.
        helper.make_node("Max", ["shifted", "floor"], ["floored"]),
        helper.make_node("Exp", ["floored"], ["weights"]),
        helper.make_node("ReduceSum", ["weights", "last_axis"], ["total"], keepdims=0),
        helper.make_node("Log", ["total"], ["log_total"]),
        helper.make_node("Neg", ["log_total"], ["top_logprob"]),
        # entropy = log Σe − Σ e·x / Σe, with x the shifted logits and e = exp(x)
        helper.make_node("Mul", ["weights", "floored"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "last_axis"], ["weighted_total"], keepdims=0),
        helper.make_node("Div", ["weighted_total", "total"], ["mean_shift"]),
        helper.make_node("Sub", ["log_total", "mean_shift"], ["entropy"]),
    ]
    graph = helper.make_graph(nodes, "pick", inputs, outputs, initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sprout")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    onnx.save(build(), Path(__file__).resolve().parents[1] / "src" / "pick.onnx")
