"""The large-shape check of issue 16: a random-weight checkpoint of a real open model's shape,
imported with `npm run model:import` (float16 storage, external data past 2 GB), loaded with
onnxruntime and timed for one denoising step on this CPU.

    .venv/bin/python bench/large_import.py [--shape qwen3-1.7b|qwen2.5-1.5b|qwen3-wide-head]
                                           [--root /work/large] [--only-decode | --build-only]
                                           [--rss-limit-gib 15]

For each shape: builds the checkpoint with transformers' own Qwen3ForCausalLM / Qwen2ForCausalLM
(random init in bfloat16, `save_pretrained` as sharded safetensors), gives config.json the
family's fields (SDAR: model_type sdar, block_size 4, mask_token_id 151669; Fast-dLLM v2:
model_type Fast_dLLM_Qwen, bd_size 32) and writes a WordLevel tokenizer.json whose vocabulary is
the model's (151936 ids, Qwen's special tokens at their real ids). Then imports it, timed under
`/usr/bin/time -v` (wall time, peak RSS), and in a fresh process loads the graph with
onnxruntime (session creation time, peak RSS) and times a forward of a 4-token block against a
64-token cache, every row's logits asked for (ms per step, median of 5 after one warm-up).
A watchdog kills any step whose process tree passes --rss-limit-gib (the machine is shared).

Everything large lives under --root, outside the repository (never commit weights); the small
result goes to bench/results/large-import.json, one entry per shape (a rerun replaces its entry).
--only-decode skips building and importing and re-times the load and the forward of a model
directory already imported (for a rerun, or for timing a decode through the TypeScript runtime).
--build-only builds and imports the shape where --root does not hold it yet, prints the model
directory and times nothing (bench/rows.ts uses it for qwen3-wide-head: Qwen's 151,936-token head
on a 2-layer body 256 wide, where the head is nearly all of a step).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "large-import.json"

# Qwen's added tokens at their real ids (Qwen2.5 and Qwen3 tokenizer.json); the families add a mask.
QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]
QWEN3_EXTRA = ["<tool_response>", "</tool_response>", "<think>", "</think>"]
FIRST_SPECIAL = 151643
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# What every shape here shares with Qwen2.5's and Qwen3's config.json: the vocabulary, RoPE's
# base, the norm's epsilon and the tied head.
QWEN_COMMON = {"vocab_size": 151936, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True}

SHAPES = {
    # Qwen3-1.7B's config.json (tied embeddings), with SDAR's fields.
    "qwen3-1.7b": {
        "classes": ("Qwen3Config", "Qwen3ForCausalLM"),
        "config": dict(
            **QWEN_COMMON,
            hidden_size=2048,
            intermediate_size=6144,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=40960,
        ),
        "fields": {"model_type": "sdar", "block_size": 4, "mask_token_id": 151669},
        "special": QWEN_SPECIAL + QWEN3_EXTRA + ["<|MASK|>"],  # 151669: SDAR's mask
    },
    # Qwen2.5-1.5B's config.json (tied embeddings, qkv bias), with Fast-dLLM v2's fields.
    "qwen2.5-1.5b": {
        "classes": ("Qwen2Config", "Qwen2ForCausalLM"),
        "config": dict(
            **QWEN_COMMON,
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            max_position_embeddings=32768,
        ),
        "fields": {"model_type": "Fast_dLLM_Qwen", "bd_size": 32},
        "special": QWEN_SPECIAL + ["|<MASK>|"],  # 151665: Fast-dLLM v2's mask_id
    },
    # Qwen3's vocabulary and head (tied) on a body too small to matter: a step's cost is the head's,
    # which grows with the rows it is computed for (bench/rows.ts). SDAR's fields, blocks of 32.
    "qwen3-wide-head": {
        "classes": ("Qwen3Config", "Qwen3ForCausalLM"),
        "config": dict(
            **QWEN_COMMON,
            hidden_size=256,
            intermediate_size=768,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=4096,
        ),
        "fields": {"model_type": "sdar", "block_size": 32, "mask_token_id": 151669},
        "special": QWEN_SPECIAL + QWEN3_EXTRA + ["<|MASK|>"],  # 151669: SDAR's mask
    },
}


def log(message: str) -> None:
    print(f"[large-import {time.strftime('%H:%M:%S')}] {message}", flush=True)


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def run_watched(command: list[str], limit_bytes: int, **kwargs) -> tuple[subprocess.CompletedProcess, int]:
    """Runs `command`, killing its process group if its tree's RSS passes the limit. Returns the
    result and the tree's peak RSS as sampled (every 0.5 s)."""
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs
    )
    peak = [0, False]

    def watch():
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss(process.pid))
            if peak[0] > limit_bytes:
                peak[1] = True
                os.killpg(process.pid, 9)
                return
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = []
    assert process.stdout is not None
    for line in process.stdout:
        text = line.decode(errors="replace")
        output.append(text)
        sys.stdout.write("    " + text)
        sys.stdout.flush()
    process.wait()
    watcher.join()
    if peak[1]:
        raise SystemExit(f"large-import: {command[0]} passed the RSS limit ({limit_bytes / 2**30:.1f} GiB); killed")
    return subprocess.CompletedProcess(command, process.returncode, "".join(output)), peak[0]


def tokenizer_json(vocab_size: int, special: list[str]) -> dict:
    """A WordLevel tokenizer of `vocab_size` ids: `t<i>` below Qwen's first special id, the
    special tokens at their real ids, `<|pad_i|>` for the rest (Qwen pads its vocabulary too)."""
    vocab = {f"t{i}": i for i in range(FIRST_SPECIAL)}
    added = []
    for i in range(FIRST_SPECIAL, vocab_size):
        k = i - FIRST_SPECIAL
        content = special[k] if k < len(special) else f"<|pad_{i}|>"
        vocab[content] = i
        added.append(
            {
                "id": i,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        )
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"},
    }


def build(shape: str, checkpoint: Path) -> dict:
    """The random checkpoint, in a child process of its own so its memory is returned."""
    import torch
    import transformers

    spec = SHAPES[shape]
    config_class, model_class = (getattr(transformers, c) for c in spec["classes"])
    config = config_class(**spec["config"])
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # one bf16 copy (3.4 GB for 1.7B), never float32
    t0 = time.perf_counter()
    model = model_class(config).eval()
    if spec["classes"][0] == "Qwen2Config":  # Qwen2 initialises biases to zero: make them count
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.02)
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(checkpoint, max_shard_size="1GB")
    del model
    config_json = json.loads((checkpoint / "config.json").read_text())
    config_json.update(spec["fields"])
    (checkpoint / "config.json").write_text(json.dumps(config_json, indent=2))
    (checkpoint / "tokenizer.json").write_text(
        json.dumps(tokenizer_json(spec["config"]["vocab_size"], spec["special"]))
    )
    (checkpoint / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": TEMPLATE, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})
    )
    (checkpoint / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [151645, 151643], "pad_token_id": 151643, "bos_token_id": 151643})
    )
    return {"parameters": parameters, "build_s": time.perf_counter() - t0}


def decode_step(model_dir: Path, threads: int, fold_all: bool = False) -> dict:
    """In this process (run it in a fresh one): session creation and one 4-token block against a
    64-token cache through onnxruntime, with this process's peak RSS."""
    import numpy as np
    import onnxruntime

    manifest = json.loads((model_dir / "manifest.json").read_text())
    arch = manifest["architecture"]
    # The manifest's names, old and new (layers / n_layers).
    a = {k: arch.get(k, arch.get(alias)) for k, alias in [("layers", "n_layers"), ("kv_heads", "n_kv_heads")]}
    a |= {"head_dim": arch["head_dim"], "vocab_size": arch["vocab_size"]}
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    if fold_all:  # fold the tied embedding's widening Cast too (onnxruntime skips outputs past 1 GB)
        options.add_session_config_entry("optimization.constant_folding_max_output_size_in_bytes", "0")
    t0 = time.perf_counter()
    session = onnxruntime.InferenceSession(
        str(model_dir / "denoiser.onnx"), options, providers=["CPUExecutionProvider"]
    )
    load_s = time.perf_counter() - t0
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rng = np.random.default_rng(0)
    past, block = 64, 4
    cache_shape = (a["layers"], 1, a["kv_heads"], past, a["head_dim"])
    ids = np.full((1, block), manifest["special_tokens"]["mask"], dtype=np.int64)
    mask = np.ones((1, block, past + block), dtype=bool)  # the block sees its past and itself
    feed = {
        "input_ids": ids,
        "positions": np.arange(past, past + block, dtype=np.int64)[None],
        "past_key": rng.standard_normal(cache_shape, dtype=np.float32),
        "past_value": rng.standard_normal(cache_shape, dtype=np.float32),
        "attention_mask": mask,
        "logit_positions": np.arange(block, dtype=np.int64),  # flat: b·time + t, batch 1
    }

    def step() -> float:
        t = time.perf_counter()
        logits, new_key, _ = session.run(["logits", "new_key", "new_value"], feed)
        assert logits.shape == (block, a["vocab_size"]) and np.isfinite(logits).all()
        assert new_key.shape == (a["layers"], 1, a["kv_heads"], block, a["head_dim"])
        return (time.perf_counter() - t) * 1000

    first = step()
    times = sorted(step() for _ in range(5))
    # A prefill of the 64 tokens the cache holds (causal, last row's logits only), for scale.
    prefill_feed = {
        "input_ids": rng.integers(0, FIRST_SPECIAL, (1, past), dtype=np.int64),
        "positions": np.arange(past, dtype=np.int64)[None],
        "past_key": np.zeros((*cache_shape[:3], 0, a["head_dim"]), dtype=np.float32),
        "past_value": np.zeros((*cache_shape[:3], 0, a["head_dim"]), dtype=np.float32),
        "attention_mask": np.tril(np.ones((past, past), dtype=bool))[None],
        "logit_positions": np.array([past - 1], dtype=np.int64),
    }
    t = time.perf_counter()
    session.run(["logits"], prefill_feed)
    prefill_ms = (time.perf_counter() - t) * 1000
    return {
        "threads": threads,
        "session_create_s": round(load_s, 2),
        "peak_rss_after_load_gib": round(rss_after_load / 2**30, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 2),
        "first_step_ms": round(first, 1),
        "step_ms_median": round(times[len(times) // 2], 1),
        "step_ms_min": round(times[0], 1),
        "step": f"{block}-token block against a {past}-token cache, logits for all {block} rows",
        "prefill_64_ms": round(prefill_ms, 1),
    }


def time_v(output: str) -> dict:
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", output)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", output)
    seconds = 0.0
    if wall:
        for part in wall.group(1).split(":"):
            seconds = seconds * 60 + float(part)
    return {"wall_s": round(seconds, 1), "peak_rss_gib": round(int(rss.group(1)) / 2**20, 2) if rss else None}


def build_checkpoint(shape: str, checkpoint: Path, me: list[str], limit: int) -> None:
    """The random checkpoint of `shape`, built by a child process (`build`), and its build.json."""
    log(f"building a random {shape} checkpoint in {checkpoint}")
    result, peak = run_watched([*me, "--child", "build"], limit)
    if result.returncode:
        raise SystemExit(f"large-import: building the checkpoint failed ({result.returncode})")
    built = json.loads(result.stdout.strip().splitlines()[-1])
    (checkpoint / "build.json").write_text(json.dumps({**built, "peak_rss_gib": round(peak / 2**30, 2)}))


def import_model(shape: str, checkpoint: Path, model_dir: Path, limit: int) -> tuple[subprocess.CompletedProcess, int]:
    """`npm run model:import` of the checkpoint into `model_dir` (float16), under /usr/bin/time -v."""
    log(f"importing into {model_dir}")
    command = ["/usr/bin/time", "-v", "npm", "run", "-s", "model:import", "--", "--from", str(checkpoint)]
    command += ["--out", str(model_dir), "--dtype", "float16", "--name", f"{shape}-random"]
    result, peak = run_watched(command, limit, cwd=REPO)
    if result.returncode:
        raise SystemExit(f"large-import: the import failed ({result.returncode})")
    return result, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=list(SHAPES), default="qwen3-1.7b")
    parser.add_argument("--root", type=Path, default=Path("/work/large"))
    parser.add_argument("--only-decode", action="store_true", help="re-time load and forward of the imported model")
    parser.add_argument(
        "--build-only", action="store_true", help="build and import where missing, print the model directory"
    )
    parser.add_argument("--rss-limit-gib", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--fold-all",
        action="store_true",
        help="fold every widening Cast, the >1 GB tied embedding's too (more memory at load, no Cast per step)",
    )
    parser.add_argument("--child", choices=["build", "decode"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    checkpoint = args.root / f"{args.shape}-hf"
    model_dir = args.root / f"{args.shape}-sprout"
    if args.child == "build":
        print(json.dumps(build(args.shape, checkpoint)))
        return
    if args.child == "decode":
        print(json.dumps(decode_step(model_dir, args.threads, args.fold_all)))
        return

    limit = int(args.rss_limit_gib * 2**30)
    me = [sys.executable, __file__, "--shape", args.shape, "--root", str(args.root), "--threads", str(args.threads)]
    me += ["--fold-all"] if args.fold_all else []
    entry: dict = {"shape": args.shape, "config": SHAPES[args.shape]["config"], **SHAPES[args.shape]["fields"]}
    if args.build_only:
        if not (checkpoint / "config.json").exists():
            build_checkpoint(args.shape, checkpoint, me, limit)
        if not (model_dir / "manifest.json").exists():
            import_model(args.shape, checkpoint, model_dir, limit)
        print(model_dir)
        return
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    if args.only_decode:
        entry = previous["runs"].get(args.shape, entry)
    else:
        args.root.mkdir(parents=True, exist_ok=True)
        if not (checkpoint / "config.json").exists():
            build_checkpoint(args.shape, checkpoint, me, limit)
        if (checkpoint / "build.json").exists():
            entry["checkpoint"] = json.loads((checkpoint / "build.json").read_text())
        entry["checkpoint_bytes"] = sum(f.stat().st_size for f in checkpoint.iterdir())
        result, peak = import_model(args.shape, checkpoint, model_dir, limit)
        manifest = json.loads((model_dir / "manifest.json").read_text())
        entry["import"] = {
            **time_v(result.stdout),
            "sampled_tree_peak_rss_gib": round(peak / 2**30, 2),
            "command": f"npm run model:import -- --from {checkpoint} --out {model_dir} --dtype float16",
            "max_abs_diff_vs_torch": manifest["graph"]["max_abs_diff_vs_torch"],
            "parameters": manifest["architecture"]["parameters"],
        }
        entry["files"] = {name: meta["bytes"] for name, meta in manifest["files"].items()}
    log(f"loading {model_dir} with onnxruntime and timing a step")
    result, peak = run_watched([*me, "--child", "decode"], limit)
    if result.returncode:
        raise SystemExit(f"large-import: loading or the forward failed ({result.returncode})")
    key = "onnxruntime_python_fold_all" if args.fold_all else "onnxruntime_python"
    entry[key] = json.loads(result.stdout.strip().splitlines()[-1])
    entry["date"] = time.strftime("%Y-%m-%d")
    entry["machine"] = {"cpus": os.cpu_count(), "cpu": cpu_model()}
    previous["runs"][args.shape] = entry
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")
    log(f"wrote {RESULTS}")
    print(json.dumps(entry, indent=2))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
