"""mbpp.py: MBPP is read and prompted as documented, and the candidate rule cuts where it should."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mbpp
from sandbox import Limits, run_program

FAST = Limits(timeout_s=2.0)

mbpp_missing = pytest.mark.skipif(not mbpp.MBPP_PATH.exists(), reason=f"{mbpp.MBPP_PATH} is not on this machine")


@mbpp_missing
def test_mbpp_test_split_is_task_ids_11_to_510():
    tasks = mbpp.load_tasks()
    assert [t["task_id"] for t in tasks] == list(range(11, 511))


@mbpp_missing
def test_prompt_for_a_known_task():
    task = next(t for t in mbpp.load_tasks() if t["task_id"] == 11)
    assert mbpp.prompt(task) == (
        '"""Write a python function to remove first and last occurrence of a given character from the string.\n'
        'assert remove_Occ("hello","l") == "heo"\n'
        '"""\n'
        "def remove_Occ("
    )
    assert mbpp.prompt(task, with_assert=False).count("assert") == 0


@mbpp_missing
def test_entry_point_is_the_function_the_tests_call():
    task = next(t for t in mbpp.load_tasks() if t["task_id"] == 45)  # defines find_gcd, then get_gcd
    assert mbpp.entry_point(task) == "get_gcd"


@mbpp_missing
def test_reference_solutions_pass_through_the_same_program_assembly():
    tasks = {t["task_id"]: t for t in mbpp.load_tasks()}
    for task_id in (11, 45):
        task = tasks[task_id]
        result = run_program(mbpp.program(task, task["code"].replace("\r\n", "\n")), FAST)
        assert result.outcome == "passed", (task_id, result.stderr)
    wrong = "def remove_Occ(s, ch):\n    return s\n"
    assert run_program(mbpp.program(tasks[11], wrong), FAST).outcome == "failed"


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("a, b):\n    return a + b\n\nassert add(1, 2) == 3\n", "a, b):\n    return a + b\n"),
        ("a, b):\n    return a + b\nprint(add(1, 2))\n", "a, b):\n    return a + b\n"),
        ("a, b):\n    return a + b\ndef other():\n    pass\n", "a, b):\n    return a + b\n"),
        ("a, b):\n    return a\n\nif __name__ == '__main__':\n    main()\n", "a, b):\n    return a\n"),
        (
            "a,\nb):\n    s = '''\nnot code\n'''\n    return s\nclass A: pass\n",
            "a,\nb):\n    s = '''\nnot code\n'''\n    return s\n",
        ),
        ("x):\n    y = 1\n# a comment\n    return y\nz = 2\n", "x):\n    y = 1\n# a comment\n    return y\n"),
        ("x): return x\n", "x): return x\n"),
        ("x):\n    return (x\n", "x):\n    return (x\n"),  # unfinished: kept, then a syntax error
        ("x):\n    if x:\n  return 1\nfoo()\n", "x):\n    if x:\n  return 1\n"),  # tokenize fails: line rule
    ],
)
def test_truncation(completion, expected):
    assert mbpp.truncate_completion(completion) == expected


ADD = {
    "task_id": 0,
    "text": "Add two numbers.",
    "code": "def add(a, b):\n    return a + b",
    "test_list": ["assert add(1, 2) == 3"],
    "test_setup_code": "",
}


def test_a_candidate_cut_off_by_the_token_budget_loses_its_unfinished_line_only():
    assert (
        mbpp.candidate(ADD, "a, b):\n    return a - b\n    if (", cut_off=True) == "def add(a, b):\n    return a - b\n"
    )
    assert mbpp.candidate(ADD, "a, b):\n    return a - b\n", cut_off=True) == "def add(a, b):\n    return a - b\n"
    assert mbpp.candidate(ADD, "a, b): return a", cut_off=True) == "def add(a, b): return a\n"  # one line: kept
    # Ended by the model: the last line is its own; a new top-level line cuts as always.
    assert mbpp.candidate(ADD, "a, b):\n    return a - b\n    if (") == "def add(a, b):\n    return a - b\n    if (\n"
    assert mbpp.candidate(ADD, "a, b):\n    return a\nprint(", cut_off=True) == "def add(a, b):\n    return a\n"


def run_cli(*args: str, stdin: str = "", eval_dir: Path | None = None) -> list:
    env = {**os.environ, **({"SPROUT_EVAL_DIR": str(eval_dir)} if eval_dir else {})}
    done = subprocess.run(
        [sys.executable, str(Path(mbpp.__file__)), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(done.stdout)


def test_the_command_line_writes_the_test_split_prompts_from_the_eval_dir(tmp_path: Path):
    """What bench/quality.ts reads: the same prompts, the same split, SPROUT_EVAL_DIR honoured."""
    (tmp_path / "mbpp").mkdir()
    tasks = [
        {
            **ADD,
            "task_id": i,
            "code": f"def add{i}(a, b):\n    return a + b",
            "test_list": [f"assert add{i}(1, 2) == 3"],
        }
        for i in (3, 12, 11, 600)
    ]
    (tmp_path / "mbpp" / "mbpp.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    prompts = run_cli("prompts", eval_dir=tmp_path)
    assert [p["task_id"] for p in prompts] == [11, 12], "test split only, in task-id order"
    assert prompts[0] == {"task_id": 11, "entry_point": "add11", "prompt": mbpp.prompt(tasks[2])}
    assert [p["task_id"] for p in run_cli("prompts", "--limit", "1", eval_dir=tmp_path)] == [11]
    completions = [
        {"task_id": 12, "completion": "a, b):\n    return a + b\nprint(", "cut_off": False},
        {"task_id": 600, "completion": "a, b):\n    return a\n    x = (", "cut_off": True},
    ]
    assert run_cli("candidates", stdin=json.dumps(completions), eval_dir=tmp_path) == [
        {"task_id": 12, "candidate": "def add12(a, b):\n    return a + b\n"},
        {"task_id": 600, "candidate": "def add600(a, b):\n    return a\n"},
    ]
