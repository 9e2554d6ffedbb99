"""Plots training runs' losses against training tokens, as a PNG.

    python models/python/plot.py --run runs/sprout --run runs/twin --out models/sprout-tiny/loss.png

Reads each run's `log.jsonl` (train.py). Training loss is smoothed over 50 steps; validation loss
(train.py's periodic evaluation) is drawn as points. The denoiser's loss is its ELBO estimate
(an upper bound on NLL, per token) and the twin's is its NLL, both in nats per token, so the
curves compare bounds with exact values. Steps where the recipe changes (stage 2) are marked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from train import logged_step  # noqa: E402


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if logged_step(line) != float("inf")]


def plot(runs: list[Path], out: Path, tokens_per_step: int, smooth: int = 50) -> None:
    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=110)
    for run in runs:
        records = read_log(run / "log.jsonl")
        if not records:
            continue
        steps = np.array([r["step"] for r in records])
        loss = np.array([r["loss"] for r in records])
        kernel = np.ones(min(smooth, len(loss))) / min(smooth, len(loss))
        smoothed = np.convolve(loss, kernel, mode="valid")
        tokens = steps[len(steps) - len(smoothed) :] * tokens_per_step / 1e6
        (line,) = axis.plot(tokens, smoothed, linewidth=1.2, label=f"{run.name} train")
        evals = [r for r in records if "val_loss" in r]
        if evals:
            axis.plot(
                [r["step"] * tokens_per_step / 1e6 for r in evals],
                [r["val_loss"] for r in evals],
                "o",
                markersize=3.5,
                color=line.get_color(),
                label=f"{run.name} validation",
            )
        stage2 = next((r["step"] for r in records if r.get("stage") == 2), None)
        if stage2:
            axis.axvline(stage2 * tokens_per_step / 1e6, color=line.get_color(), linestyle=":", linewidth=1)
    axis.set_xlabel("training tokens (millions)")
    axis.set_ylabel("nats per token (denoiser: ELBO; twin: NLL)")
    axis.set_title("Sprout training runs (dotted: stage 2 begins)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", required=True, help="a run directory; repeat for several")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokens-per-step", type=int, default=16 * 256, help="batch × window (train.py's defaults)")
    args = parser.parse_args()
    plot(args.run, args.out, args.tokens_per_step)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
