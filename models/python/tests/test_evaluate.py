"""evaluate.py: the sandbox holds, MBPP is read and prompted as documented, the truncation rule
cuts where it should, and a tiny run on the shipped model returns every metric."""

import json
import math
import os
import resource
import socket
from pathlib import Path

import numpy as np
import pytest

import evaluate
from evaluate import Limits, run_program

MODEL_DIR = Path(__file__).resolve().parents[2] / "sprout-tiny"
FAST = Limits(timeout_s=2.0)


def unshare_usable() -> bool:
    return bool(evaluate.network_isolation()[0])


# ---------------------------------------------------------------------------- the sandbox


def test_passing_candidate_passes():
    result = run_program("def add(a, b):\n    return a + b\n\nassert add(1, 2) == 3\n", FAST)
    assert result.outcome == "passed", result.stderr


def test_failing_assert_fails():
    result = run_program("def add(a, b):\n    return a - b\n\nassert add(1, 2) == 3\n", FAST)
    assert result.outcome == "failed"
    assert "AssertionError" in result.stderr


def test_other_exceptions_are_errors_and_early_exits_do_not_pass():
    assert run_program("assert undefined_name(1) == 1\n", FAST).outcome == "error"
    assert run_program("import sys\nsys.exit(0)\nassert False\n", FAST).outcome == "error"
    assert run_program("import os\nos._exit(0)\nassert False\n", FAST).outcome == "error"


def test_infinite_loop_times_out_and_is_killed():
    result = run_program("while True:\n    pass\n", Limits(timeout_s=1.0))
    assert result.outcome == "timeout"
    assert result.seconds < 4
    with pytest.raises(ProcessLookupError):  # the whole process group is gone
        os.killpg(result.pid, 0)


def test_memory_hog_does_not_pass_and_leaves_the_parent_alone():
    limits_before = resource.getrlimit(resource.RLIMIT_AS)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_program("block = bytearray(2 * 1024 ** 3)\nblock[-1] = 1\nassert True\n", FAST)
    assert result.outcome in ("error", "timeout")
    assert "MemoryError" in result.stderr or result.outcome == "timeout"
    assert resource.getrlimit(resource.RLIMIT_AS) == limits_before, "the limits are the child's only"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 100 * 1024  # KiB
    assert run_program("assert 1 + 1 == 2\n", FAST).outcome == "passed", "the parent still works"


def test_files_are_written_only_inside_the_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    program = "import os\nopen('probe.txt', 'w').write('x')\nprint(os.getcwd())\nassert os.listdir('.') == ['probe.txt']\n"
    result = run_program(program, FAST)
    assert result.outcome == "passed", result.stderr
    child_cwd = Path(result.stdout.splitlines()[0])
    assert child_cwd.resolve() != tmp_path.resolve()
    assert not (tmp_path / "probe.txt").exists()
    assert not child_cwd.exists(), "the temporary directory is removed afterwards"


@pytest.mark.skipif(not unshare_usable(), reason="`unshare --net --map-root-user` is not usable on this machine, "
                    "so candidates run with network access (evaluate.py records a warning in its results)")
def test_network_is_unreachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
        result = run_program(program, FAST)
        assert result.outcome == "error"
        assert result.network_isolated
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected


# ---------------------------------------------------------------------------- MBPP

mbpp_missing = pytest.mark.skipif(not evaluate.MBPP_PATH.exists(), reason=f"{evaluate.MBPP_PATH} is not on this machine")


@mbpp_missing
def test_mbpp_test_split_is_task_ids_11_to_510():
    tasks = evaluate.load_mbpp_test_split()
    assert [t["task_id"] for t in tasks] == list(range(11, 511))


@mbpp_missing
def test_prompt_for_a_known_task():
    task = next(t for t in evaluate.load_mbpp_test_split() if t["task_id"] == 11)
    assert evaluate.mbpp_prompt(task) == (
        '"""Write a python function to remove first and last occurrence of a given character from the string.\n'
        'assert remove_Occ("hello","l") == "heo"\n'
        '"""\n'
        "def remove_Occ("
    )
    assert evaluate.mbpp_prompt(task, with_assert=False).count("assert") == 0


@mbpp_missing
def test_entry_point_is_the_function_the_tests_call():
    task = next(t for t in evaluate.load_mbpp_test_split() if t["task_id"] == 45)  # defines find_gcd, then get_gcd
    assert evaluate.entry_point(task) == "get_gcd"


@mbpp_missing
def test_reference_solutions_pass_through_the_same_program_assembly():
    tasks = {t["task_id"]: t for t in evaluate.load_mbpp_test_split()}
    for task_id in (11, 45):
        task = tasks[task_id]
        result = run_program(evaluate.mbpp_program(task, task["code"].replace("\r\n", "\n")), FAST)
        assert result.outcome == "passed", (task_id, result.stderr)
    wrong = "def remove_Occ(s, ch):\n    return s\n"
    assert run_program(evaluate.mbpp_program(tasks[11], wrong), FAST).outcome == "failed"


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("a, b):\n    return a + b\n\nassert add(1, 2) == 3\n", "a, b):\n    return a + b\n"),
        ("a, b):\n    return a + b\nprint(add(1, 2))\n", "a, b):\n    return a + b\n"),
        ("a, b):\n    return a + b\ndef other():\n    pass\n", "a, b):\n    return a + b\n"),
        ("a, b):\n    return a\n\nif __name__ == '__main__':\n    main()\n", "a, b):\n    return a\n"),
        ("a,\nb):\n    s = '''\nnot code\n'''\n    return s\nclass A: pass\n", "a,\nb):\n    s = '''\nnot code\n'''\n    return s\n"),
        ("x):\n    y = 1\n# a comment\n    return y\nz = 2\n", "x):\n    y = 1\n# a comment\n    return y\n"),
        ("x): return x\n", "x): return x\n"),
        ("x):\n    return (x\n", "x):\n    return (x\n"),  # unfinished: kept, then a syntax error
        ("x):\n    if x:\n  return 1\nfoo()\n", "x):\n    if x:\n  return 1\n"),  # tokenize fails: line rule
    ],
)
def test_truncation(completion, expected):
    assert evaluate.truncate_completion(completion) == expected


# ---------------------------------------------------------------------------- other metrics


def test_noise_estimators_weight_as_documented():
    rng = np.random.default_rng(0)
    clean = np.arange(10, 74)
    noisy, weight = evaluate.noise_block_wise(clean, 16, "exact", rng, mask_id=3)
    for start in range(0, 64, 16):  # k masked, each weighted n/k: the weights of a block sum to n
        assert math.isclose(weight[start : start + 16].sum(), 16)
    assert ((noisy == 3) == (weight > 0)).all() and (noisy[weight == 0] == clean[weight == 0]).all()
    noisy, weight = evaluate.noise_block_wise(clean, 16, "train", rng, mask_id=3)
    for start in range(0, 64, 16):  # one t per block: every masked token weighted 1/t, 1/t ≤ 1/t_min
        block = weight[start : start + 16]
        assert len(set(block[block > 0])) <= 1 and (block <= 1 / evaluate.T_MIN).all()


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

        return evaluate.Model(directory=Path("."), manifest={"architecture": {"n_layers": 1, "n_heads": 1, "head_dim": 2}},
                              tokenizer=None, forward=evaluate.CountingForward(forward), session=None, onnx_sha256="")

    corrupted = [10, 99, 12, 98]
    assert evaluate.repair(model_that_knows(0.9), [], corrupted, threshold=0.5) == original
    assert evaluate.repair(model_that_knows(0.3), [], corrupted, threshold=0.5) == corrupted


# ---------------------------------------------------------------------------- end to end


@mbpp_missing
def test_tiny_end_to_end_run_on_the_shipped_model(tmp_path: Path):
    settings = evaluate.Settings(limit=2, max_tokens=16, continuation_files=1, val_windows=2, val_draws=1, val_length=64,
                                 infill_cases=1, repair_cases=2, quixbugs_limit=2)
    results = evaluate.evaluate(MODEL_DIR, settings)
    model = results["model"]
    assert model["name"] and len(model["onnx_sha256"]) == 64 and isinstance(model["sha256_matches_manifest"], bool)
    assert results["settings"]["max_tokens"] == 16 and results["settings"]["limit"] == 2
    mbpp = results["mbpp"]
    assert mbpp["total"] == 2 and [t["task_id"] for t in mbpp["tasks"]] == [11, 12]
    assert 0 <= mbpp["pass_at_1"] <= 1 and sum(mbpp["outcomes"].values()) == 2
    assert all(t["outcome"] in evaluate.OUTCOMES and t["candidate"].startswith(f"def {t['entry_point']}(") for t in mbpp["tasks"])
    assert 0 <= mbpp["syntax_valid_rate"] <= 1
    continuation = results["continuation"]
    assert continuation["files"] == 1
    for key in ("syntax_valid_rate", "reference_syntax_valid_rate", "first_line_exact_match_rate", "blank_completion_rate"):
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
    table = evaluate.format_table([results, results])
    assert "MBPP pass@1" in table and table.count(model["name"]) == 2, "one column per model"

    (tmp_path / "manifest.json").write_text((MODEL_DIR / "manifest.json").read_text())
    evaluate.record_in_manifests([{**results, "model": {**model, "directory": str(tmp_path)}}])
    recorded = json.loads((tmp_path / "manifest.json").read_text())
    assert recorded["evaluation"]["models"][model["name"]]["mbpp_tasks"] == 2
    assert recorded["files"] == json.loads((MODEL_DIR / "manifest.json").read_text())["files"], "the rest is kept"
