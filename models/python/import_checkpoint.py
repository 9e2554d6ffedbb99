"""Imports an open block-diffusion checkpoint (Hugging Face layout) as a Sprout model directory.

    python models/python/import_checkpoint.py --from HF_DIR --out MODEL_DIR [--name ID] [--dtype float16|float32]

Reads `config.json`, the `*.safetensors` weights (one file, or shards named by
`model.safetensors.index.json`), `tokenizer.json`, `tokenizer_config.json` (chat template, special
tokens) and `generation_config.json` (eos ids) of the Qwen2/Qwen3 block-diffusion families:
SDAR (`model_type: sdar`), Fast-dLLM v2 (`Fast_dLLM_Qwen`) and dllm's BD3LM Qwen3 conversions
(`a2d-qwen3`). Writes `denoiser.onnx` (+ `denoiser.onnx.data` past 2 GB), `tokenizer.json`,
`manifest.json` and `golden.json`.

The graph is written from `QwenBlockLM` below, a small PyTorch module of the Qwen2/Qwen3 decoder
whose parameter names are the checkpoints' own, exported with torch.onnx: the same route as
export.py, so the graph keeps the runtime's KV-cache contract (past keys/values in, the new
tokens' keys/values out, a bool attention mask the caller builds), and any block-causal layout is
the caller's mask rather than code in the graph. Two differences from sprout-tiny's graph: the
cache is GQA-shaped (`kv_heads`, not `heads`), and the rows the head is computed for are flat
(`logit_positions`, int64 [rows], b·time + t; logits [rows, vocab]) rather than per sequence
(`logit_rows`, [batch, rows]): a 150k-token head over every row of a block is most of a step's
work, and per-sequence rows padded to the most any sequence of a batch asks would bring it back.

The families differ in how they are decoded, not in their weights. Those conventions are written
into the manifest as data (`decoding`), looked up here once by `model_type`; the runtime follows
the fields and never a model's name.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import math
import multiprocessing
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import graph_io

# The graph contract (graph_io): flat rows for the head (logit_positions).
INPUTS = graph_io.FLAT_INPUTS
# ONNX's protobuf cannot hold more than 2 GB: past this the weights go to a side file.
EXTERNAL_DATA_BYTES = 2 * 1024**3
EXTERNAL_DATA_FILE = "denoiser.onnx.data"
EXTERNAL_ALIGNMENT = 4096
# Past this many bytes of safetensors, the PyTorch side of an import runs in a child process.
ISOLATE_OVER_BYTES = 2**30

# Each family's decoding conventions, exactly as its own reference sampler does them (see
# shared/research/open-checkpoints.md for the files and lines). `block_size_field` names the
# config field that holds the trained block size.
FAMILIES: dict[str, dict] = {
    "sdar": {
        "family": "SDAR",
        "base": "qwen3",
        "block_size_field": "block_size",
        "decoding": {
            "logit_shift": 0,  # the logit at i predicts the token at i
            "block_alignment": "absolute",  # blocks from position 0; the first holds the prompt's tail
            "prompt_attention": "block_causal",  # the prompt is prefilled under the block mask too
            "commit": "pass",  # a last forward with the clean block writes its keys/values
            "unmasking": "low_confidence_dynamic",
            "confidence_threshold": 0.85,
            "steps": None,  # denoising steps per block: None is the block size (generate.py's default)
            "sub_block_size": None,
            "token_healing": False,
            "add_bos": False,
            "stop": "block_with_eos",  # stop after a block holding any eos id
            "settle_after_eos": False,
            "last_block": "full",  # whole blocks, cut to max_new_tokens
            "suppress_control_tokens": False,  # its sampler chooses from the whole vocabulary
        },
    },
    "Fast_dLLM_Qwen": {
        "family": "Fast-dLLM v2",
        "base": "qwen2",
        "block_size_field": "bd_size",
        "default_mask_token_id": 151665,  # v2/generation_functions.py's mask_id (no config field holds it)
        "decoding": {
            "logit_shift": 1,  # the logit at i-1 predicts the token at i, as in an AR model
            "block_alignment": "absolute",
            "prompt_attention": "block_causal",
            # The pass that commits a block also yields the next block's first token.
            "commit": "pass_yields_next_first_token",
            "unmasking": "threshold_with_forced_argmax",
            "confidence_threshold": 0.9,
            "steps": None,
            "sub_block_size": 8,
            "token_healing": False,
            "add_bos": False,
            "stop": "eos_unmasked_with_no_masks_before",
            "settle_after_eos": False,
            "last_block": "full",
            "suppress_control_tokens": False,
        },
    },
    "a2d-qwen3": {
        "family": "dllm BD3LM (Qwen3)",
        "base": "qwen3",
        "block_size_field": "block_size",
        "default_block_size": 32,  # dllm's sampler default; conversions may not record one
        "decoding": {
            "logit_shift": 0,
            "block_alignment": "left_padded",  # the prompt is left-padded with pad to a whole block
            "prompt_attention": "block_causal",
            "commit": "pass",
            "unmasking": "top_k_per_step",
            "confidence_threshold": None,
            "steps": None,  # steps per block: None is the block size (one token per step)
            "sub_block_size": None,
            "token_healing": False,
            "add_bos": False,
            "stop": "block_with_eos",
            "settle_after_eos": False,
            "last_block": "partial",  # exactly max_new_tokens: the last block is short
            "suppress_control_tokens": False,
        },
    },
}


def progress(message: str) -> None:
    """A line on stderr while a long import runs (a 1.7B checkpoint takes minutes)."""
    try:  # Linux: this process's resident memory
        rss = next(line.split()[1] for line in Path("/proc/self/status").open() if line.startswith("VmRSS:"))
        memory = f" (resident {int(rss) / 2**20:.1f} GiB)"
    except (OSError, StopIteration):
        memory = ""
    print(f"import: {message}…{memory}", file=sys.stderr, flush=True)


class CheckpointError(SystemExit):
    """A checkpoint this importer cannot read, said in words (exits the CLI with the message)."""


@dataclass
class Architecture:
    base: str  # "qwen2" or "qwen3"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    rope_theta: float
    rms_norm_eps: float
    qk_norm: bool
    qkv_bias: bool
    tied_head: bool
    context_length: int


def manifest_architecture(a: Architecture, parameters: int) -> dict:
    """The architecture in the manifest's own vocabulary (the one sprout-tiny's manifest uses, so
    the runtime reads one set of names), plus what only a Qwen decoder has."""
    return {
        "base": a.base,
        "vocab_size": a.vocab_size,
        "d_model": a.hidden_size,
        "ffn_hidden": a.intermediate_size,
        "n_layers": a.layers,
        "n_heads": a.heads,
        "kv_heads": a.kv_heads,
        "head_dim": a.head_dim,
        "max_positions": a.context_length,
        "rope_base": a.rope_theta,
        "norm_eps": a.rms_norm_eps,
        "qk_norm": a.qk_norm,
        "qkv_bias": a.qkv_bias,
        "tied_head": a.tied_head,
        "parameters": parameters,
    }


def read_json(path: Path) -> dict:
    if not path.exists():
        raise CheckpointError(f"import: {path.name} is missing from {path.parent}")
    return json.loads(path.read_text())


def rope_theta(config: dict) -> float:
    """rope_theta at the top level (as published) or in rope_parameters (transformers 5)."""
    parameters = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or parameters
    if scaling.get("rope_type", scaling.get("type", "default")) != "default":
        raise CheckpointError(f"import: rope scaling {scaling} is not supported (only plain rotary)")
    theta = config.get("rope_theta", parameters.get("rope_theta"))
    if theta is None:
        raise CheckpointError("import: config.json gives no rope_theta")
    return float(theta)


def architecture(config: dict, weights: dict[str, torch.Tensor], base: str) -> Architecture:
    """The network's shape, from config.json; q/k norm and qkv bias from the weights themselves
    (what is there is what the forward must use)."""
    if config.get("use_sliding_window"):
        raise CheckpointError("import: sliding-window attention is not supported")
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    return Architecture(
        base=base,
        vocab_size=int(config["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(config["intermediate_size"]),
        layers=int(config["num_hidden_layers"]),
        heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        rope_theta=rope_theta(config),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        qk_norm="model.layers.0.self_attn.q_norm.weight" in weights,
        qkv_bias="model.layers.0.self_attn.q_proj.bias" in weights,
        tied_head="lm_head.weight" not in weights,
        context_length=int(config.get("max_position_embeddings", 0)),
    )


def load_weights(source: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint by its HF name, widened to float32; shards by the index."""
    from safetensors.torch import load_file

    index = source / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(read_json(index)["weight_map"].values()))
    else:
        files = sorted(p.name for p in source.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"import: no *.safetensors in {source}")
    weights: dict[str, torch.Tensor] = {}
    for name in files:
        if not (source / name).exists():
            raise CheckpointError(f"import: shard {name} named by the index is missing from {source}")
        weights.update({k: v.float() for k, v in load_file(str(source / name)).items()})
    return weights


def rope_frequencies(a: Architecture) -> torch.Tensor:
    return 1.0 / (a.rope_theta ** (torch.arange(0, a.head_dim, 2, dtype=torch.float32) / a.head_dim))


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate(x, cos, sin):
    """Rotary embedding in the Qwen (GPT-NeoX) layout: the head's halves are the pairs."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, a: Architecture):
        super().__init__()
        self.a = a
        self.q_proj = nn.Linear(a.hidden_size, a.heads * a.head_dim, bias=a.qkv_bias)
        self.k_proj = nn.Linear(a.hidden_size, a.kv_heads * a.head_dim, bias=a.qkv_bias)
        self.v_proj = nn.Linear(a.hidden_size, a.kv_heads * a.head_dim, bias=a.qkv_bias)
        self.o_proj = nn.Linear(a.heads * a.head_dim, a.hidden_size, bias=False)
        if a.qk_norm:  # Qwen3: RMSNorm over each head's vector, before the rotation
            self.q_norm = RMSNorm(a.head_dim, a.rms_norm_eps)
            self.k_norm = RMSNorm(a.head_dim, a.rms_norm_eps)

    def forward(self, x, cos, sin, past_key, past_value, bias):
        a = self.a
        batch, time, _ = x.shape
        q = self.q_proj(x).view(batch, time, a.heads, a.head_dim)
        k = self.k_proj(x).view(batch, time, a.kv_heads, a.head_dim)
        v = self.v_proj(x).view(batch, time, a.kv_heads, a.head_dim).transpose(1, 2)
        if a.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = rotate(q.transpose(1, 2), cos, sin)
        k = rotate(k.transpose(1, 2), cos, sin)
        keys = torch.cat([past_key, k], dim=2)
        values = torch.cat([past_value, v], dim=2)
        # GQA: each group of heads / kv_heads query heads reads one key/value head.
        group = a.heads // a.kv_heads
        q = q.reshape(batch, a.kv_heads, group, time, a.head_dim)
        scores = q @ keys.unsqueeze(2).transpose(-1, -2) / math.sqrt(a.head_dim) + bias
        out = torch.softmax(scores, dim=-1) @ values.unsqueeze(2)
        out = out.reshape(batch, a.heads, time, a.head_dim).transpose(1, 2).reshape(batch, time, -1)
        return self.o_proj(out), k, v


class MLP(nn.Module):
    def __init__(self, a: Architecture):
        super().__init__()
        self.gate_proj = nn.Linear(a.hidden_size, a.intermediate_size, bias=False)
        self.up_proj = nn.Linear(a.hidden_size, a.intermediate_size, bias=False)
        self.down_proj = nn.Linear(a.intermediate_size, a.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, a: Architecture):
        super().__init__()
        self.input_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)
        self.self_attn = Attention(a)
        self.post_attention_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)
        self.mlp = MLP(a)

    def forward(self, x, cos, sin, past_key, past_value, bias):
        h, k, v = self.self_attn(self.input_layernorm(x), cos, sin, past_key, past_value, bias)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), k, v


class Decoder(nn.Module):
    def __init__(self, a: Architecture):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab_size, a.hidden_size)
        self.layers = nn.ModuleList(Layer(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.hidden_size, a.rms_norm_eps)


class QwenBlockLM(nn.Module):
    """The Qwen2/Qwen3 decoder under Sprout's graph contract. Parameter names are the HF ones
    (`model.layers.0.self_attn.q_proj.weight`, `lm_head.weight`), so a checkpoint loads as is."""

    def __init__(self, a: Architecture):
        super().__init__()
        self.a = a
        self.model = Decoder(a)
        if not a.tied_head:
            self.lm_head = nn.Linear(a.hidden_size, a.vocab_size, bias=False)
        self.register_buffer("inv_freq", rope_frequencies(a), persistent=False)

    def forward(self, input_ids, positions, past_key, past_value, attention_mask, logit_positions):
        x = self.model.embed_tokens(input_ids)
        angles = positions.unsqueeze(-1).float() * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1).unsqueeze(1)  # [batch, 1, time, head_dim]
        cos, sin = angles.cos(), angles.sin()
        # A large negative rather than -inf: a row with nothing to attend to (padding) stays finite.
        bias = torch.where(attention_mask, 0.0, torch.finfo(torch.float32).min)[:, None, None]
        new_keys, new_values = [], []
        for i, layer in enumerate(self.model.layers):
            x, k, v = layer(x, cos, sin, past_key[i], past_value[i], bias)
            new_keys.append(k)
            new_values.append(v)
        # Only the rows asked for (flat, b·time + t) go through the final norm and the
        # (vocabulary-sized) head: [rows, hidden], however unevenly the sequences ask.
        h = self.model.norm(torch.index_select(x.flatten(0, 1), 0, logit_positions))
        head = self.model.embed_tokens.weight if self.a.tied_head else self.lm_head.weight
        return h @ head.t(), torch.stack(new_keys), torch.stack(new_values)

    def empty_cache(self, batch: int):
        a = self.a
        shape = (a.layers, batch, a.kv_heads, 0, a.head_dim)
        return torch.zeros(shape), torch.zeros(shape)


def block_causal_mask(batch: int, past: int, time: int, block: int, offset: int = 0) -> torch.Tensor:
    """[batch, time, past+time]: a query sees every key whose block is not after its own; blocks
    of `block` positions counted from absolute position `offset` (0 for absolute alignment)."""
    q = torch.arange(past, past + time)
    k = torch.arange(past + time)
    return ((k[None, :] - offset) // block <= (q[:, None] - offset) // block).expand(batch, time, past + time)


def causal_mask(batch: int, past: int, time: int) -> torch.Tensor:
    q = torch.arange(past, past + time)
    return (torch.arange(past + time)[None, :] <= q[:, None]).expand(batch, time, past + time)


def example_inputs(model: QwenBlockLM, batch: int, past: int, time: int, rows: list[int], seed: int = 0):
    """Random inputs of one forward; `rows[b]` of sequence b's `time` rows asked for, in random
    order, as flat positions (b·time + t)."""
    a = model.a
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, a.vocab_size, (batch, time), generator=g)
    positions = torch.arange(past, past + time).expand(batch, time).contiguous()
    shape = (a.layers, batch, a.kv_heads, past, a.head_dim)
    past_key, past_value = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    mask = block_causal_mask(batch, past, time, block=4).contiguous()
    logit_positions = torch.cat([b * time + torch.randperm(time, generator=g)[:n] for b, n in enumerate(rows)])
    return ids, positions, past_key, past_value, mask, logit_positions


def export_graph(model: QwenBlockLM, path: Path) -> None:
    graph_io.export_onnx(
        model, example_inputs(model, batch=2, past=5, time=3, rows=[2, 1]), path, INPUTS, graph_io.FLAT_AXES
    )


def run_onnx(session, inputs) -> list[np.ndarray]:
    return graph_io.run(session, inputs, INPUTS)


def check_cases(model: QwenBlockLM) -> list[tuple[tuple, tuple]]:
    """Inputs over the shapes the runtime uses (empty-cache prefill included), each with the
    PyTorch module's outputs: computed before the module's weights are let go. Rows per sequence
    as the runtime asks them: every row, a block's masked ones unevenly across a batch, none for a
    sequence that only commits."""
    cases = []
    for past, time, rows in [(0, 7, [7]), (12, 4, [4]), (9, 8, [3, 1]), (9, 8, [0, 5]), (30, 1, [1, 1])]:
        inputs = example_inputs(model, len(rows), past, time, rows, seed=past + time)
        with torch.no_grad():
            cases.append((inputs, tuple(t.numpy() for t in model(*inputs))))
    return cases


def check(cases: list[tuple[tuple, tuple]], path: Path) -> float:
    """Largest |onnx − torch| over check_cases."""
    session = graph_io.session(path)
    worst = 0.0
    for inputs, expected in cases:
        for e, g in zip(expected, run_onnx(session, inputs), strict=True):
            worst = max(worst, float(np.abs(e - g).max()))
    return worst


def store(staged: Path, out: Path, dtype: str, external_over: int) -> str:
    """Writes the exported graph to `out`: with float16 storage, each weight is stored as float16
    and widened by a Cast at the graph's start (graph_io.widen_from_fp16's layout: onnxruntime
    folds the Casts at load, so the arithmetic stays float32); past `external_over` bytes of
    weights they go to a side file. Tensor by tensor: each weight is read from what torch.onnx
    wrote (its own external files for a graph past 2 GB), converted and written before the next,
    so a 1.7B model's weights are never all in memory as ONNX tensors at once."""
    import onnx
    from onnx import TensorProto, external_data_helper, helper, numpy_helper

    graph = onnx.load(str(staged), load_external_data=False)
    widen = dtype == "float16"

    def stored_bytes(tensor) -> int:
        kind = TensorProto.FLOAT16 if widen and tensor.data_type == TensorProto.FLOAT else tensor.data_type
        return math.prod(tensor.dims) * helper.tensor_dtype_to_np_dtype(kind).itemsize

    external = sum(stored_bytes(t) for t in graph.graph.initializer) > external_over
    data_path = out.parent / EXTERNAL_DATA_FILE
    data_path.unlink(missing_ok=True)
    casts = []
    with data_path.open("wb") if external else contextlib.nullcontext() as data:
        for tensor in graph.graph.initializer:
            array = numpy_helper.to_array(tensor, base_dir=str(staged.parent))
            name = tensor.name
            if widen and tensor.data_type == TensorProto.FLOAT:
                array, name = array.astype(np.float16), name + graph_io.FP16_SUFFIX
                casts.append(
                    helper.make_node("Cast", [name], [tensor.name], to=TensorProto.FLOAT, name=f"{tensor.name}.widen")
                )
            written = numpy_helper.from_array(array, name)
            del array
            if data is not None:
                # Large weights at page-aligned offsets (onnxruntime can map them rather than copy).
                align = EXTERNAL_ALIGNMENT if len(written.raw_data) >= 2**20 else 1
                offset = -(-data.tell() // align) * align
                data.write(b"\0" * (offset - data.tell()))
                data.write(written.raw_data)
                external_data_helper.set_external_data(written, EXTERNAL_DATA_FILE, offset, data.tell() - offset)
                written.ClearField("raw_data")
            tensor.CopyFrom(written)
    if not external:
        data_path.unlink(missing_ok=True)
    nodes = casts + list(graph.graph.node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    onnx.save(graph, str(out))
    onnx.checker.check_model(str(out))
    return EXTERNAL_DATA_FILE if external else ""


def special_tokens(
    source: Path, config: dict, tokenizer_config: dict, generation: dict, family: dict, mask_id: int | None = None
) -> dict:
    """Mask, eos (every id generation_config stops on), pad and bos ids, from the checkpoint.
    The mask id, first found: --mask-id, config.json's mask_token_id, tokenizer_config's
    mask_token, the id the family's own sampler hard-codes (Fast-dLLM v2 states it nowhere else),
    a `<|mask|>` / `<|MASK|>` token of the tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))

    def token_id(value):
        if isinstance(value, dict):  # tokenizer_config may spell a token as an AddedToken dict
            value = value.get("content")
        return tokenizer.token_to_id(value) if isinstance(value, str) else None

    def ids(value) -> list[int]:
        return [int(v) for v in (value if isinstance(value, list) else [value]) if v is not None]

    named = (tokenizer.token_to_id(t) for t in ("<|mask|>", "<|MASK|>"))
    candidates = [
        mask_id,
        config.get("mask_token_id"),
        token_id(tokenizer_config.get("mask_token")),
        family.get("default_mask_token_id"),
        *named,
    ]
    mask = next((int(m) for m in candidates if m is not None), None)
    if mask is None:
        raise CheckpointError(
            "import: no mask token (--mask-id, config.json mask_token_id, tokenizer_config mask_token, or <|mask|>)"
        )
    if not 0 <= mask < int(config["vocab_size"]):
        raise CheckpointError(
            f"import: mask id {mask} is outside the vocabulary ({config['vocab_size']}); pass --mask-id"
        )
    eos = (
        ids(generation.get("eos_token_id"))
        or ids(config.get("eos_token_id"))
        or ids(token_id(tokenizer_config.get("eos_token")))
    )
    if not eos:
        raise CheckpointError("import: no eos id in generation_config.json, config.json or tokenizer_config.json")
    pad = generation.get("pad_token_id", config.get("pad_token_id"))
    if pad is None:
        pad = token_id(tokenizer_config.get("pad_token"))
    bos = generation.get("bos_token_id", config.get("bos_token_id"))
    return {
        "mask": int(mask),
        "eos_ids": eos,
        "pad": None if pad is None else int(pad),
        "bos": None if bos is None else int(bos),
    }


def chat_template(source: Path, tokenizer_config: dict) -> str | None:
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # the named-templates form: keep the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    jinja = source / "chat_template.jinja"
    return template if template is not None else (jinja.read_text() if jinja.exists() else None)


def license_of(source: Path, config: dict) -> str | None:
    """The license the checkpoint states: its model card's front matter, else config.json."""
    readme = source / "README.md"
    if readme.exists():
        front = re.match(r"---\n(.*?)\n---", readme.read_text(), re.S)
        found = front and re.search(r"^license:\s*(\S+)", front.group(1), re.M)
        if found:
            return found.group(1).strip("'\"")
    return config.get("license")


def golden(model: QwenBlockLM, special: dict, block: int) -> dict:
    """A fixed input and the logits the PyTorch module gives (the graph was checked equal to it):
    a prompt of two whole blocks prefilled under the block-causal mask, then one block of masks
    against that cache, every row's logits asked for."""
    a = model.a
    prompt = [(7 * i + 11) % a.vocab_size for i in range(2 * block)]
    with torch.no_grad():
        pk, pv = model.empty_cache(1)
        n = len(prompt)
        _, k, v = model(
            torch.tensor([prompt]),
            torch.arange(n)[None],
            pk,
            pv,
            block_causal_mask(1, 0, n, block),
            torch.tensor([n - 1]),
        )
        ids = torch.full((1, block), special["mask"])
        logits, _, _ = model(
            ids,
            torch.arange(n, n + block)[None],
            k,
            v,
            block_causal_mask(1, n, block, block),
            torch.arange(block),
        )
    return {
        "prompt_ids": prompt,
        "block_ids": ids[0].tolist(),
        "mask": "block_causal (absolute blocks of block_size)",
        "argmax": logits.argmax(-1).tolist(),
        "logits_head": [row[:8].tolist() for row in logits],
    }


def trace(
    source: Path, config: dict, base: str, dtype: str, staged: Path, special: dict, block: int
) -> tuple[Architecture, list, dict, int]:
    """The PyTorch side of an import: reads the weights, builds the decoder, exports its graph to
    `staged` and computes what the graph is checked against (check_cases, the golden file).
    Returns the architecture, those cases, the golden file and the parameter count."""
    weights = load_weights(source)
    a = architecture(config, weights, base)
    if dtype == "float16":  # rounded first, so the graph still equals this PyTorch module
        for tensor in weights.values():
            tensor.copy_(tensor.half())
    if a.tied_head:
        weights.pop("lm_head.weight", None)
    # Built without storage and given the checkpoint's tensors themselves: one copy of a 1.5B
    # model's weights in memory, not two.
    with torch.device("meta"):
        model = QwenBlockLM(a)
    missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
    if missing or unexpected:
        raise CheckpointError(
            f"import: weights do not fit a {a.base} decoder: missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    model.inv_freq = rope_frequencies(a)  # the one tensor the checkpoint does not hold
    model.eval()
    progress(f"exporting the graph ({a.layers} layers, {a.hidden_size} wide)")
    export_graph(model, staged)
    return a, check_cases(model), golden(model, special, block), sum(p.numel() for p in model.parameters())


def import_checkpoint(
    source: Path,
    out: Path,
    name: str | None = None,
    dtype: str = "float16",
    external_over: int = EXTERNAL_DATA_BYTES,
    mask_id: int | None = None,
    isolate: bool | None = None,
) -> dict:
    """Imports `source` into `out`; returns the manifest written. `isolate`: run the PyTorch side
    in a child process (default: when the weights pass ISOLATE_OVER_BYTES)."""
    if dtype not in ("float16", "float32"):
        raise CheckpointError(f"import: --dtype {dtype}: float16 or float32")
    if not source.is_dir():
        raise CheckpointError(f"import: {source} is not a directory")
    config = read_json(source / "config.json")
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise CheckpointError(
            f"import: model_type {model_type!r} is not one of the supported families: {', '.join(FAMILIES)}"
        )
    family = FAMILIES[model_type]
    tokenizer_config = read_json(source / "tokenizer_config.json")
    generation = read_json(source / "generation_config.json")
    if not (source / "tokenizer.json").exists():
        raise CheckpointError(f"import: tokenizer.json is missing from {source}")
    block = config.get(family["block_size_field"], family.get("default_block_size"))
    if block is None:
        raise CheckpointError(f"import: config.json has no {family['block_size_field']} (the block size)")

    special = special_tokens(source, config, tokenizer_config, generation, family, mask_id)

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        staged = Path(tmp) / "denoiser.onnx"
        job = (source, config, family["base"], dtype, staged, special, int(block))
        if isolate is None:  # a large checkpoint's PyTorch side runs in a process of its own
            isolate = sum(f.stat().st_size for f in source.glob("*.safetensors")) > ISOLATE_OVER_BYTES
        if isolate:
            # Its memory (the float32 weights, and whatever torch.onnx keeps of them) is all given
            # back when it exits, before onnxruntime loads the graph for the check.
            spawn = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
                a, cases, golden_file, parameters = pool.submit(trace, *job).result()
        else:
            a, cases, golden_file, parameters = trace(*job)
        progress(f"storing the weights ({dtype})")
        final = Path(tmp) / "final" / "denoiser.onnx"
        final.parent.mkdir()
        external = store(staged, final, dtype, external_over)
        progress("checking the graph against PyTorch in onnxruntime")
        worst = check(cases, final)
        if worst >= 1e-3:
            raise CheckpointError(f"import: the ONNX graph differs from PyTorch by {worst}; nothing written")
        for old in ("denoiser.onnx", EXTERNAL_DATA_FILE):
            (out / old).unlink(missing_ok=True)
        for f in final.parent.iterdir():
            f.replace(out / f.name)
    shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")
    (out / "golden.json").write_text(json.dumps(golden_file) + "\n")

    files = ["denoiser.onnx", *([external] if external else []), "tokenizer.json", "golden.json"]
    manifest = {
        "schema_version": 1,
        "name": name or source.name,
        "kind": "block-diffusion denoiser (block-causal; imported checkpoint)",
        "objective": "diffusion",
        "source": {"family": family["family"], "model_type": model_type, "architectures": config.get("architectures")},
        "license": license_of(source, config),
        "architecture": manifest_architecture(a, parameters),
        "special_tokens": special,
        "block_size": int(block),
        "block_sizes": [int(block)],
        "context_length": a.context_length,
        "chat_template": chat_template(source, tokenizer_config),
        "decoding": family["decoding"],
        "graph": {
            **graph_io.manifest_graph(
                graph_io.FP16_WEIGHTS if dtype == "float16" else "float32",
                worst,
                heads="kv_heads",
                rows=graph_io.LOGIT_POSITIONS,
            ),
            "external_data": external or None,
        },
        "files": {f: {"sha256": graph_io.sha256(out / f), "bytes": (out / f).stat().st_size} for f in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", type=Path, required=True, help="the Hugging Face checkpoint directory")
    parser.add_argument("--out", type=Path, required=True, help="the Sprout model directory to write")
    parser.add_argument("--name", default=None, help="the model's id (default: the checkpoint directory's name)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="weight storage")
    parser.add_argument(
        "--mask-id", type=int, default=None, help="the mask token's id, where the checkpoint states none"
    )
    args = parser.parse_args()
    manifest = import_checkpoint(args.source, args.out, args.name, args.dtype, mask_id=args.mask_id)
    graph = manifest["graph"]
    print(
        f"imported {manifest['source']['family']} as {manifest['name']} into {args.out} "
        f"({graph['weights']}); max |onnx - torch| = {graph['max_abs_diff_vs_torch']:.2e}"
    )


if __name__ == "__main__":
    main()
