"""Writes bench/matmul.onnx: one float32 MatMul with free dimensions, used by `npm run bench` to
measure this CPU's matrix-multiply rate through onnxruntime (the ceiling decoding is compared to).
Run: .venv/bin/python bench/matmul.py"""
from pathlib import Path

import onnx
from onnx import TensorProto, helper

a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["m", "k"])
b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["k", "n"])
c = helper.make_tensor_value_info("c", TensorProto.FLOAT, ["m", "n"])
graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", [a, b], [c])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sprout-bench")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, Path(__file__).with_name("matmul.onnx"))
