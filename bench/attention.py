"""Fused attention ops against today's graph, on this CPU (issue 18, item 1, "Attention").

One attention block of sprout-tiny's shape (d_model 320, 5 heads of 64; fused qkv and out projections,
past keys/values concatenated, Sprout's bool mask [batch, time, past+time]; RoPE left out of every
variant alike), in these forms:

  a        today's graph: the block exported as export.py does (TorchScript, opset 17): MatMul, Where(mask),
           Add, Softmax, IsNaN/Where, MatMul
  mha_past com.microsoft.MultiHeadAttention, new k/v + past_key/past_value, mask as an additive
           attention_bias [batch, 1, time, past+time] (Where(mask, 0, -inf))
  mha_bnsh MultiHeadAttention, keys/values concatenated outside (as today) and passed as BNSH key/value
  mha_kpm  MultiHeadAttention, the mask cast to int32 as a 3-D key_padding_mask (no float bias)
  gqa      com.microsoft.GroupQueryAttention, causal=0, the bias as attention_bias, seqlens_k = total-1.
           Its CPU kernel refuses batch > 1 with time > 1 and a past ("batch_size must be 1 when
           sequence_length > 1 and past context is given"): those shapes are skipped
  attn23   ONNX Attention (opset 23), 3-D Q/K/V, past/present, the bool mask [batch, 1, time, past+time]
  attn23c  ONNX Attention, 4-D Q, keys concatenated outside: the form torch.onnx.export(dynamo=True,
           opset_version=23) writes for F.scaled_dot_product_attention

Every variant is checked against `a` (max |diff| of y, new_key, new_value) on a block-causal mask with
padded past columns, then timed: rounds alternate the variants (order reversed every other round), each
round takes the median of `--calls` runs, the table shows the median over rounds, in ms per call.
`--full` also exports a sprout-tiny-shaped Denoiser (random weights) both ways and times whole forwards.

Run: .venv/bin/python bench/attention.py [--threads 1] [--rounds 9] [--calls 10] [--full]

Measured 2026-12-01 (onnxruntime 1.30, 1 thread, 2 shared AMD EPYC cores, medians of 5 runs): every
variant equals `a` to 1.9e-7; attn23 is the fastest everywhere, 1.06-1.10x at past 0 and 1.16-1.44x
at past 128-384 (MultiHeadAttention 1.0-1.3x); GQA cannot run Sprout's batched steps. Whole
forwards (--full) moved 0.8-1.5x run to run on the loaded machine, so that comparison is unresolved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

D, H, HD = 320, 5, 64
OUT = ["y", "new_key", "new_value"]


class Block(nn.Module):
    """model.Attention.forward without the rotary embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.out = nn.Linear(D, D, bias=False)

    def forward(self, x, past_key, past_value, attention_mask):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, H, HD).permute(2, 0, 3, 1, 4)
        keys, values = torch.cat([past_key, k], dim=2), torch.cat([past_value, v], dim=2)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=attention_mask.unsqueeze(1))
        return self.out(y.transpose(1, 2).reshape(b, t, -1)), k, v


def export_today(block: Block, path: Path) -> None:
    x = (
        torch.randn(2, 3, D),
        torch.randn(2, H, 5, HD),
        torch.randn(2, H, 5, HD),
        torch.ones(2, 3, 8, dtype=torch.bool),
    )
    axes = {"x": {0: "batch", 1: "time"}, "past_key": {0: "batch", 2: "past"}, "past_value": {0: "batch", 2: "past"}}
    axes |= {"attention_mask": {0: "batch", 1: "time", 2: "total"}, "y": {0: "batch", 1: "time"}}
    axes |= {"new_key": {0: "batch", 2: "time"}, "new_value": {0: "batch", 2: "time"}}
    names = ["x", "past_key", "past_value", "attention_mask"]
    torch.onnx.export(
        block,
        x,
        str(path),
        input_names=names,
        output_names=OUT,
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
        do_constant_folding=False,
    )


def build_fused(block: Block, variant: str, path: Path) -> None:
    f = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("x", f, ["batch", "time", D]),
        helper.make_tensor_value_info("past_key", f, ["batch", H, "past", HD]),
        helper.make_tensor_value_info("past_value", f, ["batch", H, "past", HD]),
        helper.make_tensor_value_info("attention_mask", TensorProto.BOOL, ["batch", "time", "total"]),
    ]
    outputs = [
        helper.make_tensor_value_info("y", f, ["batch", "time", D]),
        helper.make_tensor_value_info("new_key", f, ["batch", H, "time", HD]),
        helper.make_tensor_value_info("new_value", f, ["batch", H, "time", HD]),
    ]
    consts = {
        "Wqkv": block.qkv.weight.detach().numpy().T.copy(),
        "Wo": block.out.weight.detach().numpy().T.copy(),
        "split3": np.array([D, D, D], np.int64),
        "bthd": np.array([0, 0, H, HD], np.int64),
        "btD": np.array([0, 0, D], np.int64),
        "ax1": np.array([1], np.int64),
        "ax0": np.array([0], np.int64),
        "zero": np.array(0.0, np.float32),
        "neg": np.array(-np.inf, np.float32),
        "two": np.array(2, np.int64),
        "first": np.array(0, np.int64),
        "one32": np.array(1, np.int32),
    }
    node = helper.make_node
    ms = {"domain": "com.microsoft"}
    nodes = [
        node("MatMul", ["x", "Wqkv"], ["qkv"]),
        node("Split", ["qkv", "split3"], ["q", "k", "v"], axis=2),
        node("Reshape", ["k", "bthd"], ["k4"]),
        node("Transpose", ["k4"], ["new_key"], perm=[0, 2, 1, 3]),
        node("Reshape", ["v", "bthd"], ["v4"]),
        node("Transpose", ["v4"], ["new_value"], perm=[0, 2, 1, 3]),
        node("Unsqueeze", ["attention_mask", "ax1"], ["mask4"]),
    ]
    bias = [node("Where", ["mask4", "zero", "neg"], ["bias"])]
    concat = [
        node("Concat", ["past_key", "new_key"], ["keys"], axis=2),
        node("Concat", ["past_value", "new_value"], ["values"], axis=2),
    ]
    opset = 17
    if variant == "mha_past":
        inner = ["q", "k", "v", "", "", "bias", "past_key", "past_value"]
        nodes += bias + [node("MultiHeadAttention", inner, ["att", "pk", "pv"], num_heads=H, **ms)]
    elif variant == "mha_bnsh":
        nodes += (
            bias
            + concat
            + [node("MultiHeadAttention", ["q", "keys", "values", "", "", "bias"], ["att"], num_heads=H, **ms)]
        )
    elif variant == "mha_kpm":
        inner = ["q", "k", "v", "", "mask32", "", "past_key", "past_value"]
        nodes += [node("Cast", ["attention_mask"], ["mask32"], to=TensorProto.INT32)]
        nodes += [node("MultiHeadAttention", inner, ["att", "pk", "pv"], num_heads=H, **ms)]
    elif variant == "gqa":
        nodes += bias + [
            node("Shape", ["attention_mask"], ["mshape"]),
            node("Gather", ["mshape", "two"], ["total64"]),
            node("Gather", ["mshape", "first"], ["batch64"]),
            node("Cast", ["total64"], ["total32"], to=TensorProto.INT32),
            node("Sub", ["total32", "one32"], ["last"]),
            node("Unsqueeze", ["batch64", "ax0"], ["batch1"]),
            node("Expand", ["last", "batch1"], ["seqlens_k"]),
            node(
                "GroupQueryAttention",
                ["q", "k", "v", "past_key", "past_value", "seqlens_k", "total32", "", "", "", "bias"],
                ["att", "pk", "pv"],
                num_heads=H,
                kv_num_heads=H,
                causal=0,
                **ms,
            ),
        ]
    elif variant == "attn23":
        opset = 23
        inner = ["q", "k", "v", "mask4", "past_key", "past_value"]
        nodes += [node("Attention", inner, ["att", "pk", "pv"], q_num_heads=H, kv_num_heads=H)]
    elif variant == "attn23c":
        opset = 23
        nodes += concat + [
            node("Reshape", ["q", "bthd"], ["q4"]),
            node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
            node("Attention", ["qh", "keys", "values", "mask4"], ["att4"]),
            node("Transpose", ["att4"], ["att4t"], perm=[0, 2, 1, 3]),
            node("Reshape", ["att4t", "btD"], ["att"]),
        ]
    else:
        raise ValueError(variant)
    nodes.append(node("MatMul", ["att", "Wo"], ["y"]))
    used = {i for n in nodes for i in n.input}
    inits = [numpy_helper.from_array(a, name) for name, a in consts.items() if name in used]
    graph = helper.make_graph(nodes, variant, inputs, outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 10 if opset >= 23 else 8
    onnx.save(model, str(path))


def sprout_mask(batch: int, past: int, time_: int, context: int) -> np.ndarray:
    """`context` committed tokens (causal among themselves), then the block (bidirectional; sees the
    context); every row sees its valid past. Row r leaves (7 r mod past) past columns invalid, as a
    batch padded to its longest cache would."""
    mask = np.zeros((batch, time_, past + time_), bool)
    for r in range(batch):
        mask[r, :, ((r * 7) % past if past else 0) : past] = True
        for i in range(time_):
            mask[r, i, past : past + i + 1 if i < context else past + time_] = True
    return mask


def feeds(batch: int, past: int, time_: int, seed: int) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {
        "x": g.standard_normal((batch, time_, D), np.float32),
        "past_key": g.standard_normal((batch, H, past, HD), np.float32),
        "past_value": g.standard_normal((batch, H, past, HD), np.float32),
        "attention_mask": sprout_mask(batch, past, time_, time_ - 32),
    }


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timed(sessions: dict, feed: dict, rounds: int, calls: int, outputs=None) -> dict[str, float]:
    """Median over rounds of each round's median ms per call; variants alternate within a round."""
    per_round = {name: [] for name in sessions}
    for r in range(rounds):
        for name in list(sessions) if r % 2 == 0 else list(sessions)[::-1]:
            s = sessions[name]
            for _ in range(2):
                s.run(outputs, feed)
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                s.run(outputs, feed)
                times.append(time.perf_counter() - t0)
            per_round[name].append(statistics.median(times) * 1e3)
    return {name: statistics.median(v) for name, v in per_round.items()}


def full_model(directory: Path, args) -> None:
    """Whole sprout-tiny-shaped forwards: graph_io.export_onnx (today) vs the dynamo exporter at opset 23."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models" / "python"))
    import graph_io
    from model import Denoiser, ModelConfig

    config = ModelConfig(vocab_size=8192, d_model=D, n_layers=6, n_heads=H, ffn_hidden=848, max_positions=1024)
    torch.manual_seed(0)
    model = Denoiser(config).eval()

    def example(batch, past, time_, seed):
        g = torch.Generator().manual_seed(seed)
        shape = (config.n_layers, batch, H, past, HD)
        return (
            torch.randint(7, config.vocab_size, (batch, time_), generator=g),
            torch.arange(past, past + time_).expand(batch, time_).contiguous(),
            torch.randn(shape, generator=g),
            torch.randn(shape, generator=g),
            torch.from_numpy(sprout_mask(batch, past, time_, max(time_ - 32, 0))),
        )

    today, opset23 = directory / "full17.onnx", directory / "full23.onnx"
    graph_io.export_onnx(model, example(2, 5, 3, 0), today, graph_io.INPUTS, graph_io.AXES)
    dims = {n: torch.export.Dim(n) for n in ("batch", "time", "past", "past_plus_time")}
    shapes = {
        "input_ids": {0: dims["batch"], 1: dims["time"]},
        "positions": {0: dims["batch"], 1: dims["time"]},
        "past_key": {1: dims["batch"], 3: dims["past"]},
        "past_value": {1: dims["batch"], 3: dims["past"]},
        "attention_mask": {0: dims["batch"], 1: dims["time"], 2: dims["past_plus_time"]},
    }
    torch.onnx.export(
        model,
        example(2, 5, 3, 0),
        str(opset23),
        input_names=graph_io.INPUTS,
        output_names=graph_io.OUTPUTS,
        dynamic_shapes=shapes,
        opset_version=23,
        dynamo=True,
        external_data=False,
    )
    ops = [n.op_type for n in onnx.load(str(opset23)).graph.node]
    print(f"\nfull model, opset-23 export: {ops.count('Attention')} Attention nodes, {len(ops)} nodes")
    sessions = {"today": session(today, args.threads), "opset23": session(opset23, args.threads)}
    for batch, past, time_ in [(1, 0, 7), (3, 9, 16), (8, 384, 64)]:
        inputs = example(batch, past, time_, past + time_)
        with torch.no_grad():
            expected = [t.numpy() for t in model(*inputs)]
        feed = {n: t.numpy() for n, t in zip(graph_io.INPUTS, inputs, strict=True)}
        diffs = {
            k: max(float(np.abs(e - g).max()) for e, g in zip(expected, s.run(None, feed), strict=True))
            for k, s in sessions.items()
        }
        print(f"  max |torch - onnx| b{batch} p{past} t{time_}: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    print(f"  {'batch':>5} {'time':>4} {'past':>4} {'today ms':>9} {'opset23 ms':>10} {'ratio':>6}")
    for batch in args.batch:
        for time_ in args.time:
            for past in args.past:
                inputs = example(batch, past, time_, 1)
                feed = {n: t.numpy() for n, t in zip(graph_io.INPUTS, inputs, strict=True)}
                ms = timed(sessions, feed, args.rounds, max(args.calls // 2, 3))
                ratio = ms["today"] / ms["opset23"]
                print(
                    f"  {batch:>5} {time_:>4} {past:>4} {ms['today']:>9.2f} {ms['opset23']:>10.2f} {ratio:>5.2f}x",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--time", type=int, nargs="+", default=[32, 64], help="new tokens (32 + riding context)")
    parser.add_argument("--past", type=int, nargs="+", default=[0, 128, 384])
    parser.add_argument("--full", action="store_true", help="also time whole forwards, today's export vs opset 23")
    args = parser.parse_args()
    variants = ["a", "mha_past", "mha_bnsh", "mha_kpm", "gqa", "attn23", "attn23c"]
    torch.manual_seed(0)
    block = Block().eval()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        export_today(block, directory / "a.onnx")
        for v in variants[1:]:
            build_fused(block, v, directory / f"{v}.onnx")
        sessions = {v: session(directory / f"{v}.onnx", args.threads) for v in variants}
        print(
            f"onnxruntime {ort.__version__}, {args.threads} thread(s); ms per call (ratio = a / variant); "
            f"max |diff| vs a over all shapes at the end"
        )
        print(f"{'batch':>5} {'time':>4} {'past':>4} " + " ".join(f"{v:>14}" for v in variants))
        worst = dict.fromkeys(variants[1:], 0.0)
        for batch in args.batch:
            for time_ in args.time:
                for past in args.past:
                    feed = feeds(batch, past, time_, seed=batch + time_ + past)
                    usable = {v: s for v, s in sessions.items() if not (v == "gqa" and batch > 1 and past > 0)}
                    expected = usable["a"].run(OUT, feed)
                    for v in list(usable)[1:]:
                        got = usable[v].run(OUT, feed)
                        diff = max(float(np.abs(e - g).max()) for e, g in zip(expected, got, strict=True))
                        worst[v] = max(worst[v], diff)
                    ms = timed(usable, feed, args.rounds, args.calls, OUT)
                    cells = [f"{ms[v]:7.3f} {ms['a'] / ms[v]:4.2f}x" if v in ms else f"{'n/a':>14}" for v in variants]
                    print(f"{batch:>5} {time_:>4} {past:>4} " + " ".join(f"{c:>14}" for c in cells), flush=True)
        print("max |diff| vs a: " + ", ".join(f"{v} {d:.1e}" for v, d in worst.items()))
        if args.full:
            full_model(directory, args)


if __name__ == "__main__":
    main()
