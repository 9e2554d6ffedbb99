"""Weights-only checkpoints in parts small enough to travel (the GPU machine returns files of at
most 16 MiB). A part set is a directory of `weights.pt.partN` files that concatenate to one
`torch.save` of {config, model (bf16), step, args}; export.py reads either form."""

from __future__ import annotations

import io
from pathlib import Path

import torch

PART_BYTES = 15 * 1024 * 1024


def save_parts(state: dict, directory: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("weights.pt.part*"):
        old.unlink()
    paths = []
    for index, start in enumerate(range(0, len(data), part_bytes)):
        path = directory / f"weights.pt.part{index}"
        path.write_bytes(data[start : start + part_bytes])
        paths.append(path)
    return paths


def load_parts(directory: Path) -> dict:
    parts = sorted(directory.glob("weights.pt.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if not parts:
        raise FileNotFoundError(f"no weights.pt.part* files in {directory}")
    return torch.load(io.BytesIO(b"".join(p.read_bytes() for p in parts)), map_location="cpu", weights_only=False)


def load_checkpoint(path: Path) -> dict:
    """A training checkpoint file, or a directory of weight parts."""
    return load_parts(path) if path.is_dir() else torch.load(path, map_location="cpu", weights_only=False)


def weights_only(state: dict) -> dict:
    """What export needs from a training checkpoint, with weights in bf16 (half the bytes)."""
    return {
        "config": state["config"],
        "model": {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state["model"].items()},
        "step": state["step"],
        "args": state["args"],
    }


def from_model_dir(model_dir: Path) -> dict:
    """A shipped model directory's weights as a checkpoint's {config, model} (float32), read from
    its ONNX graph's initializers (export.py names them after the state dict, with graph_io's
    `.fp16` suffix when stored in half precision), so a shipped model can be fine-tuned when its
    training run is gone."""
    import json

    import onnx
    from onnx import numpy_helper

    from graph_io import FP16_SUFFIX

    manifest = json.loads((model_dir / "manifest.json").read_text())
    names = ("vocab_size", "d_model", "n_layers", "n_heads", "ffn_hidden", "max_positions", "rope_base", "norm_eps")
    config = {name: manifest["architecture"][name] for name in names}
    graph = onnx.load(str(model_dir / manifest["graph"]["file"]))
    model = {}
    for initializer in graph.graph.initializer:
        name = initializer.name.removesuffix(FP16_SUFFIX)
        model[name] = torch.from_numpy(numpy_helper.to_array(initializer).astype("float32").copy())
    return {"config": config, "model": model, "name": manifest["name"]}
