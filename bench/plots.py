"""Draws the README's plots from the latest benchmark JSON.

    .venv/bin/python bench/plots.py          (npm run bench runs it last)

Reads bench/results/engine.json (bench/engine.ts, which also writes the README's tables) and
draws docs/plots/tpf-quality.png (tokens per forward against quality, every setting of the
dial), docs/plots/step-latency.png (one denoising step against context length, with the KV
cache and recomputing the context) and docs/plots/concurrency.png (aggregate tokens/s against
concurrent requests, batching on and off).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PLOTS = ROOT / "docs" / "plots"


def clusters(points: list[tuple[float, float, str]], dx: float = 0.3, dy: float = 0.25) -> list[tuple[float, float, str]]:
    """Points close together share one label (their numbers, comma-separated), so labels do not overlap."""
    groups: list[list[tuple[float, float, str]]] = []
    for point in sorted(points, key=lambda p: (p[1], p[0])):
        near = next((g for g in groups if abs(g[0][0] - point[0]) < dx and abs(g[-1][1] - point[1]) < dy), None)
        if near is None:
            groups.append([point])
        else:
            near.append(point)
    return [(g[0][0], sum(p[1] for p in g) / len(g), ",".join(label for _, _, label in g)) for g in groups]


def plot_dial(engine: dict, path: Path) -> None:
    """Each setting is a numbered point; the key beside the plot names them."""
    fig, ax = plt.subplots(figsize=(8.5, 4.5), dpi=110)
    points, key = [], []
    for number, d in enumerate(engine["dial"], start=1):
        twin = d["name"].startswith("autoregressive")
        x, y = d["tokens_per_forward"], d["twin_bits_per_token"]
        ax.scatter(x, y, s=40, marker="s" if twin else "o", color="tab:orange" if twin else "tab:green", zorder=3)
        points.append((x, y, str(number)))
        key.append(f"{number:>2}  {d['name']}")
    for x, y, label in clusters(points):
        ax.annotate(label, (x, y), fontsize=7, xytext=(7, 0), textcoords="offset points", va="center")
    ax.text(1.03, 1.0, "\n".join(key), transform=ax.transAxes, fontsize=7.5, va="top", family="monospace")
    ax.set_xlabel("tokens per forward (parallelism)")
    ax.set_ylabel("bits per token under the twin\n(lower: more plausible)")
    ax.set_title(f"{engine['model']}: speed against quality, every setting of the dial", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0, 0.7, 1))
    fig.savefig(path)
    plt.close(fig)


def plot_latency(engine: dict, path: Path) -> None:
    points = engine["step_latency"]
    context = [p["context"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(context, [p["with_cache_ms"] for p in points], "o-", color="tab:green", label="with the KV cache")
    ax.plot(context, [p["without_cache_ms"] for p in points], "o-", color="tab:red", label="recomputing the context")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("one denoising step of a 32-token block (ms)")
    ax.set_title(f"{engine['model']}: step latency against context", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_concurrency(engine: dict, path: Path) -> None:
    """sprout-tiny's rows only: tokens/s against concurrent requests, batching on and off."""
    rows = [r for r in engine["concurrency"] if r["model"] == engine["model"]]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for batching, color in (("on", "tab:green"), ("off", "tab:gray")):
        line = sorted((r for r in rows if (r["max_batch"] > 1) == (batching == "on")), key=lambda r: r["concurrency"])
        xs = [r["concurrency"] for r in line]
        ax.plot(xs, [r["tokens_per_s"] for r in line], "o-", color=color, label=f"batching {batching}")
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8, 16], labels=["1", "2", "4", "8", "16"])
    ax.set_xlabel("concurrent requests")
    ax.set_ylabel("aggregate tokens/s")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{engine['model']} through the node's scheduler ({engine['machine']['cpus']} CPU cores)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    engine = json.loads((RESULTS / "engine.json").read_text())
    PLOTS.mkdir(parents=True, exist_ok=True)
    plot_dial(engine, PLOTS / "tpf-quality.png")
    plot_latency(engine, PLOTS / "step-latency.png")
    plot_concurrency(engine, PLOTS / "concurrency.png")
    print(f"wrote {PLOTS / 'tpf-quality.png'}, {PLOTS / 'step-latency.png'} and {PLOTS / 'concurrency.png'}")


if __name__ == "__main__":
    main()
