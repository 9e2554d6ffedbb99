"""train.py → export.py on a tiny configuration: resumable training, an ONNX export that matches
PyTorch, and a manifest that describes what was written."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

PYTHON_DIR = Path(__file__).resolve().parents[1]
TOKENIZER = PYTHON_DIR.parent / "sprout-tiny" / "tokenizer.json"
TINY = [
    "--d-model",
    "32",
    "--layers",
    "1",
    "--heads",
    "2",
    "--length",
    "32",
    "--batch",
    "2",
    "--block-sizes",
    "8",
    "--eval-every",
    "2",
    "--eval-batches",
    "1",
    "--checkpoint-every",
    "1",
]


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(PYTHON_DIR / script), *args], capture_output=True, text=True, check=True)
    return done.stdout


def free_port() -> int:
    """A port no other test run holds (several checkouts may run the suite at once)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def synthetic_data(tmp_path: Path) -> Path:
    """Random token ids as train/validation splits: enough for a few tiny training steps."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        rng.integers(7, 8192, size=2000, dtype=np.uint16).tofile(data / f"{split}.bin")
    return data


def test_train_resumes_and_exports(tmp_path: Path):
    data = synthetic_data(tmp_path)
    run_dir = tmp_path / "run"

    run(
        "train.py",
        "--data",
        str(data),
        "--run",
        str(run_dir),
        "--steps",
        "2",
        *TINY,
        "--weights-out",
        str(tmp_path / "weights"),
    )
    with (run_dir / "log.jsonl").open("a") as log:  # as if killed after logging step 3, before its checkpoint
        log.write(json.dumps({"step": 3, "loss": 1.0}) + "\n" + '{"step": 4, "lo')  # and a line cut short
    out = run("train.py", "--data", str(data), "--run", str(run_dir), "--steps", "4", *TINY)
    assert "resumed" in out
    steps = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4], "a resumed run continues where it stopped"

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(TOKENIZER, model_dir / "tokenizer.json")
    run("export.py", "--checkpoint", str(run_dir / "checkpoint.pt"), "--out", str(model_dir), "--name", "test-tiny")
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["training"]["steps"] == 4
    assert manifest["graph"]["max_abs_diff_vs_torch"] < 1e-3
    assert manifest["special_tokens"]["mask"] == 3
    assert manifest["context_length"] == 32, "the trained window, not the rotary table's size"
    assert manifest["training"]["data_splits"] is None  # the synthetic data has no data.json
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((model_dir / name).read_bytes()).hexdigest() == entry["sha256"]

    assert manifest["objective"] == "diffusion" and manifest["training"]["tokens"] == 4 * 2 * 32
    assert manifest["graph"]["weights"] == "float32"
    assert manifest["graph"]["inputs"]["logit_rows"]["shape"] == ["batch", "rows"]
    assert manifest["graph"]["outputs"]["logits"]["shape"] == ["batch", "rows", "vocab"]
    reexported_from_its_own_graph(model_dir, tmp_path / "again")

    # The GPU path: bf16 weight parts from step 2 export too.
    run("export.py", "--checkpoint", str(tmp_path / "weights"), "--out", str(model_dir), "--name", "test-tiny")
    assert json.loads((model_dir / "manifest.json").read_text())["training"]["steps"] == 2

    # int8 weights: smaller, and golden.json holds what that graph computes (what the runtime must match).
    float_bytes = (model_dir / "denoiser.onnx").stat().st_size
    run(
        "export.py",
        "--checkpoint",
        str(run_dir / "checkpoint.pt"),
        "--out",
        str(model_dir),
        "--name",
        "test-tiny",
        "--int8",
    )
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert (
        manifest["graph"]["weights"].startswith("int8") and (model_dir / "denoiser.onnx").stat().st_size < float_bytes
    )
    assert (
        manifest["files"]["denoiser.onnx"]["sha256"]
        == hashlib.sha256((model_dir / "denoiser.onnx").read_bytes()).hexdigest()
    )


def reexported_from_its_own_graph(model_dir: Path, out: Path) -> None:
    """export.py --from-model-dir: the same weights, the old manifest plus lineage, and the same
    logits on the rows asked for as with every row."""
    import onnx
    import onnxruntime
    from onnx import numpy_helper

    run("export.py", "--from-model-dir", str(model_dir), "--out", str(out))
    before, after = (json.loads((d / "manifest.json").read_text()) for d in (model_dir, out))
    assert after["training"] == before["training"] and after["name"] == before["name"]
    (lineage,) = after["lineage"]
    assert lineage["re_exported_from"]["graph_sha256"] == before["files"]["denoiser.onnx"]["sha256"]
    assert lineage["max_abs_diff_vs_previous_graph"] <= 1e-5
    for name, entry in after["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
    weights = [
        {t.name: numpy_helper.to_array(t) for t in onnx.load(str(d / "denoiser.onnx")).graph.initializer}
        for d in (model_dir, out)
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])

    session = onnxruntime.InferenceSession(str(out / "denoiser.onnx"), providers=["CPUExecutionProvider"])
    arch = after["architecture"]
    empty = np.zeros((arch["n_layers"], 1, arch["n_heads"], 0, arch["head_dim"]), dtype=np.float32)
    feeds = {
        "input_ids": np.array([[1, 400, 401, 402, 3, 3]]),
        "positions": np.arange(6)[None],
        "past_key": empty,
        "past_value": empty,
        "attention_mask": np.tril(np.ones((6, 6), dtype=bool))[None],
    }
    (every,) = session.run(["logits"], {**feeds, "logit_rows": np.arange(6)[None]})
    (some,) = session.run(["logits"], {**feeds, "logit_rows": np.array([[5, 1]])})
    np.testing.assert_allclose(some[0], every[0, [5, 1]], atol=1e-5)


def test_a_resumed_run_trains_exactly_as_one_that_never_stopped(tmp_path: Path):
    """Batches are drawn a step ahead in a thread: the checkpoint must hold the windows' generator
    as of the last batch trained on, or a resumed run would skip windows."""
    import torch

    data = synthetic_data(tmp_path)
    recipe = ["--data", str(data), "--steps", "4", "--fim-rate", "0.5", "--stage2-from", "2", "--lr", "1e-2", *TINY]
    run("train.py", *recipe, "--run", str(tmp_path / "straight"))
    run("train.py", *recipe, "--run", str(tmp_path / "stopped"), "--stop-at", "2")
    run("train.py", *recipe, "--run", str(tmp_path / "stopped"))
    straight, resumed = (
        torch.load(tmp_path / name / "checkpoint.pt", weights_only=False) for name in ("straight", "stopped")
    )
    for name, tensor in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, msg=name)


def test_the_autoregressive_twin_trains_and_exports_as_such(tmp_path: Path):
    data = synthetic_data(tmp_path)
    run(
        "train.py",
        "--data",
        str(data),
        "--run",
        str(tmp_path / "run"),
        "--steps",
        "2",
        "--objective",
        "ar",
        "--fim-rate",
        "0.5",
        *TINY,
    )
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(TOKENIZER, model_dir / "tokenizer.json")
    run("export.py", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--out", str(model_dir), "--name", "twin")
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["objective"] == "ar" and "autoregressive" in manifest["training"]["recipe"]
    assert "fill-in-the-middle" in manifest["training"]["recipe"]
    out = run(
        "sample.py",
        "--onnx",
        str(model_dir / "denoiser.onnx"),
        "--prompt",
        "x = ",
        "--suffix",
        "\n",
        "--max-tokens",
        "3",
    )
    blocks = json.loads(out)["blocks"]
    assert len(blocks) == 1 and blocks[0]["tokens"] <= blocks[0]["steps"] <= 3, "one token per forward"


def test_weight_parts_round_trip(tmp_path: Path):
    import torch

    from weights import load_checkpoint, save_parts, weights_only

    state = {
        "config": {"d_model": 8},
        "model": {"w": torch.randn(64, 64), "n": torch.tensor(3)},
        "step": 7,
        "args": {"block_sizes": [8]},
        "optimizer": {"huge": torch.randn(10)},
    }
    parts = save_parts(weights_only(state), tmp_path / "weights", part_bytes=4096)
    assert len(parts) > 1
    loaded = load_checkpoint(tmp_path / "weights")
    assert "optimizer" not in loaded and loaded["step"] == 7
    assert loaded["model"]["w"].dtype == torch.bfloat16
    torch.testing.assert_close(loaded["model"]["w"].float(), state["model"]["w"], atol=1e-2, rtol=1e-2)


def test_packing_a_built_corpus_samples_whole_files_under_a_cap(tmp_path: Path):
    from tokenizers import Tokenizer

    from data import build

    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    for split in ("train", "validation", "test"):
        with (corpus_dir / f"{split}.jsonl").open("w") as out:
            for i in range(40):
                text = f"def f{i}(x):\n    return x + {i}\n" * (1 + i % 3)
                out.write(
                    json.dumps({"source": f"pkg{i % 4}==1.0", "license": "MIT", "path": f"m{i}.py", "text": text})
                    + "\n"
                )
    summary = build(TOKENIZER, tmp_path / "packed", corpus_dir, max_train_tokens=400)
    train = np.fromfile(tmp_path / "packed" / "train.bin", dtype=np.uint16)
    assert 0 < train.size <= 400 and summary["splits"]["train"]["tokens"] == train.size
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    bos, eos = tokenizer.token_to_id("<|bos|>"), tokenizer.token_to_id("<|eos|>")
    assert train[0] == bos and train[-1] == eos, "only whole files"
    assert (train == bos).sum() == (train == eos).sum() == summary["splits"]["train"]["files"]
    assert summary["splits"]["test"]["tokens"] <= 20


def test_torchrun_data_parallel_with_two_processes_keeps_the_weights_identical(tmp_path: Path):
    """Two gloo processes draw different windows; the all-reduce must leave them with the same weights."""
    data = synthetic_data(tmp_path)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
            "--",
            str(PYTHON_DIR / "train.py"),
            "--data",
            str(data),
            "--run",
            str(run_dir),
            "--steps",
            "3",
            "--threads",
            "1",
            "--fim-rate",
            "0.5",
            "--stage2-from",
            "1",
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    digests = sorted(line.split()[-1] for line in done.stdout.splitlines() if " weights " in line)
    assert len(digests) == 2 and digests[0] == digests[1], done.stdout
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3], "only process 0 logs"
    assert all(r["world_size"] == 2 for r in records)
    assert records[-1]["stage"] == 2


def test_loss_plot_is_a_png_of_every_run(tmp_path: Path):
    from plot import plot

    for name, stage2 in (("a", 30), ("b", None)):
        (tmp_path / name).mkdir()
        lines = [
            {"step": s, "loss": 5 - s / 100, "val_loss": 5.1 - s / 100, "stage": 2 if stage2 and s >= stage2 else 1}
            for s in range(1, 61)
        ]
        (tmp_path / name / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 61, "lo')
    out = tmp_path / "loss.png"
    plot([tmp_path / "a", tmp_path / "b"], out, tokens_per_step=4096)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_the_prepared_gpu_run_works_at_tiny_scale(tmp_path: Path):
    """gpu_train.sh as the device runs it (packed xz data in, weight parts and logs out), on this
    CPU with a tiny model, no torch.compile and 4 steps: the recipe's flags all work together."""
    import lzma
    import os

    packed = tmp_path / "packed"
    packed.mkdir()
    tokens = Path(__file__).resolve().parents[2] / "sprout-tiny" / "golden.json"  # any real text works
    from tokenizer import load_tokenizer

    ids = load_tokenizer(TOKENIZER).encode(tokens.read_text() * 40).ids
    for split in ("train", "validation"):
        (packed / f"{split}.bin.xz").write_bytes(lzma.compress(np.asarray(ids, dtype=np.uint16).tobytes()))
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "OUT": str(out),
        "PACKED": str(packed),
        "RUNS": str(tmp_path),
        "COMPILE": "0",
        "STEPS": "4",
        "MINUTES": "5",
        "BATCH": "2",
        "LENGTH": "256",
        "D_MODEL": "32",
        "LAYERS": "1",
        "HEADS": "2",
    }
    subprocess.run(["bash", str(PYTHON_DIR / "gpu_train.sh")], env=env, check=True, capture_output=True, text=True)
    for name, last_stage in (("weights", 2), ("twin", 1)):
        log = [json.loads(line) for line in (out / name / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1, 2, 3, 4] and log[-1]["fim_rate"] == 0.5
        assert log[-1]["stage"] == last_stage, "stage 2 over the last 20% (the denoiser only)"
        assert list((out / name).glob("weights.pt.part*")), "weights come back in parts"
