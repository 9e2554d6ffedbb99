"""evaluate.py: the continuation, infilling and repair rules, and a tiny run on the shipped model
that returns every metric (and report.py's table and manifest record of it)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

import evaluate
import mbpp
import report
from sandbox import OUTCOMES

MODEL_DIR = Path(__file__).resolve().parents[2] / "sprout-tiny"

mbpp_missing = pytest.mark.skipif(not mbpp.MBPP_PATH.exists(), reason=f"{mbpp.MBPP_PATH} is not on this machine")


def test_continuation_validity_needs_a_complete_non_blank_line():
    prefix = "def f(x):\n    y = x\n"
    assert evaluate.continuation_valid(prefix, "    return y\nprint(f(")
    assert not evaluate.continuation_valid(prefix, "\n\n\n")
    assert not evaluate.continuation_valid(prefix, "    return y")  # no complete line
    assert not evaluate.continuation_valid(prefix, "    return (y\n")
    assert evaluate.first_line_matches("    return y  \nmore", "    return y")


def test_infill_match_ignores_only_trailing_whitespace_and_outer_blank_lines():
    assert evaluate.middle_matches("    x = 1  \n", "    x = 1\n")
    assert evaluate.middle_matches("\n    x = 1\n    y = 2\n\n", "    x = 1\n    y = 2\n")
    assert not evaluate.middle_matches("x = 1\n", "    x = 1\n"), "indentation is code"
    assert not evaluate.middle_matches("    x = 1\n    y = 2\n", "    x = 1\n")


def test_injected_edits_change_the_block_by_a_bounded_distance():
    rng = np.random.default_rng(0)
    tokens = list(range(100, 134))
    for n in (1, 2):
        for _ in range(20):
            edited = evaluate.inject_edits(tokens, 32, n, rng, tokens)
            assert len(edited) == 32
            assert evaluate.token_distance(edited, tokens[:32]) <= 2 * n


def test_repair_replaces_only_confident_disagreements():
    """With a test double that is sure of the original (or unsure), the rule restores it (or leaves it)."""
    import torch

    original = [10, 11, 12, 13]

    def model_that_knows(confidence: float):
        def forward(tokens, past_k, past_v, causal):
            probs = torch.full((1, len(tokens), 32), (1 - confidence) / 31)
            probs[0, torch.arange(len(tokens)), torch.tensor(original[: len(tokens)], dtype=torch.long)] = confidence
            return probs.log(), past_k[:, :, :, :0], past_v[:, :, :, :0]

        return evaluate.Model(
            directory=Path("."),
            manifest={"architecture": {"n_layers": 1, "n_heads": 1, "head_dim": 2}},
            tokenizer=None,
            forward=evaluate.CountingForward(forward),
            session=None,
            onnx_sha256="",
        )

    corrupted = [10, 99, 12, 98]
    assert evaluate.repair(model_that_knows(0.9), [], corrupted, threshold=0.5) == original
    assert evaluate.repair(model_that_knows(0.3), [], corrupted, threshold=0.5) == corrupted


# ---------------------------------------------------------------------------- end to end


@mbpp_missing
def test_tiny_end_to_end_run_on_the_shipped_model(tmp_path: Path):
    settings = evaluate.Settings(
        limit=2,
        max_tokens=16,
        continuation_files=1,
        val_windows=2,
        val_draws=1,
        val_length=64,
        infill_cases=1,
        repair_cases=2,
        quixbugs_limit=2,
    )
    results = evaluate.evaluate(MODEL_DIR, settings)
    model = results["model"]
    assert model["name"] and len(model["onnx_sha256"]) == 64 and isinstance(model["sha256_matches_manifest"], bool)
    assert results["settings"]["max_tokens"] == 16 and results["settings"]["limit"] == 2
    mbpp = results["mbpp"]
    assert mbpp["total"] == 2 and [t["task_id"] for t in mbpp["tasks"]] == [11, 12]
    assert 0 <= mbpp["pass_at_1"] <= 1 and sum(mbpp["outcomes"].values()) == 2
    assert all(
        t["outcome"] in OUTCOMES and t["candidate"].startswith(f"def {t['entry_point']}(") for t in mbpp["tasks"]
    )
    assert 0 <= mbpp["syntax_valid_rate"] <= 1
    continuation = results["continuation"]
    assert continuation["files"] == 1
    for key in (
        "syntax_valid_rate",
        "reference_syntax_valid_rate",
        "first_line_exact_match_rate",
        "blank_completion_rate",
    ):
        assert 0 <= continuation[key] <= 1
    validation = results["validation"]
    for estimator in ("train", "exact"):
        assert math.isfinite(validation[estimator]["nats_per_token"]) and validation[estimator]["nats_per_token"] > 0
        assert validation[estimator]["bits_per_byte"] > 0
    assert "upper bound" in validation["note"]
    infilling = results["infilling"]
    assert infilling["mbpp_line"]["cases"] == 1 and 0 <= infilling["mbpp_line"]["pass_rate"] <= 1
    assert infilling["single_line"]["cases"] + infilling["multi_line"]["cases"] >= 1
    repair = results["repair"]
    assert repair["injected"]["cases"] == 2 and repair["injected"]["mean_distance_before"] > 0
    assert repair["quixbugs"]["programs"] == 2
    decoding = results["decoding"]["all"]
    assert decoding["generations"] == 3 + len(infilling["cases"]) and decoding["tokens_per_step"] > 0
    assert decoding["forwards_per_generation"] >= 2  # a prefill and at least one denoising step
    assert results["wall_time_s"]["total"] > 0
    table = report.format_table([results, results])
    assert "MBPP pass@1" in table and table.count(model["name"]) == 2, "one column per model"

    (tmp_path / "manifest.json").write_text((MODEL_DIR / "manifest.json").read_text())
    report.record_in_manifests([{**results, "model": {**model, "directory": str(tmp_path)}}])
    recorded = json.loads((tmp_path / "manifest.json").read_text())
    assert recorded["evaluation"]["models"][model["name"]]["mbpp_tasks"] == 2
    assert recorded["files"] == json.loads((MODEL_DIR / "manifest.json").read_text())["files"], "the rest is kept"
