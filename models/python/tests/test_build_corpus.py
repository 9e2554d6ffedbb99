"""The corpus builder (build_corpus.py) and its parts (corpus/), on tiny synthetic wheels, stdlib trees
and eval sets in tmp_path."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

import build_corpus as bc
from corpus import decontaminate, dedup, filters, licenses, stdlib, wheels

# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def metadata(name: str = "demo", version: str = "1.0", *headers: str) -> str:
    return (
        "\n".join(["Metadata-Version: 2.4", f"Name: {name}", f"Version: {version}", *headers]) + "\n\nA description.\n"
    )


def make_wheel(directory: Path, name: str, version: str, files: dict[str, str], *headers: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata(name, version, *headers))
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def module_source(seed: str, functions: int = 8) -> str:
    """A plausible module whose every line depends on `seed`, so different seeds share nothing."""
    lines = [f'"""Helpers for {seed} records."""', "", "import math", ""]
    for index in range(functions):
        lines += [
            f"def {seed}_measure_{index}(values, scale={index + 2}):",
            f"    total_{seed} = sum(value * scale for value in values if value > {index})",
            f"    spread_{seed} = max(values) - min(values) + {index * 3}",
            f"    return math.sqrt(total_{seed} / (spread_{seed} or 1)) + {index}",
            "",
        ]
    return "\n".join(lines) + "\n"


MBPP_CODE = (
    "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) "
)
MBPP_TEXT = "Write a function to find the similar elements from the given two tuple lists."
QUIX_SOLUTION = (
    "def bitcount(n):\n    count = 0\n    while n:\n        n &= n - 1\n        count += 1\n    return count"
)
QUIX_GCD = "def gcd(a, b):\n    if b == 0:\n        return a\n    else:\n        return gcd(b, a % b)"
QUIX_CYCLE = (
    "def detect_cycle(node):\n    hare = tortoise = node\n    while True:\n"
    "        if hare is None or hare.successor is None:\n            return False\n"
    "        tortoise = tortoise.successor\n        hare = hare.successor.successor\n"
    "        if hare is tortoise:\n            return True"
)


def make_eval_root(root: Path) -> Path:
    (root / "mbpp").mkdir(parents=True)
    (root / "quixbugs").mkdir(parents=True)
    task = {
        "text": MBPP_TEXT,
        "code": MBPP_CODE,
        "task_id": 2,
        "test_list": ["assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)"],
    }
    (root / "mbpp" / "mbpp.jsonl").write_text(json.dumps(task) + "\n")
    (root / "mbpp" / "sanitized-mbpp.json").write_text(
        json.dumps([{"prompt": MBPP_TEXT.replace("similar", "shared"), "code": MBPP_CODE, "task_id": 2}])
    )
    programs = [
        {"name": "bitcount", "buggy_program": QUIX_SOLUTION.replace("&=", "^="), "solution": QUIX_SOLUTION},
        {"name": "gcd", "buggy_program": QUIX_GCD, "solution": QUIX_GCD},
        {"name": "detect_cycle", "buggy_program": QUIX_CYCLE, "solution": QUIX_CYCLE},
    ]
    (root / "quixbugs" / "quixbugs_python.jsonl").write_text("".join(json.dumps(p) + "\n" for p in programs))
    return root


@pytest.fixture
def decontaminator(tmp_path: Path) -> decontaminate.Decontaminator:
    return decontaminate.Decontaminator(decontaminate.EvalSet.load(make_eval_root(tmp_path / "eval")))


def judge(decontaminator: decontaminate.Decontaminator, text: str) -> str | None:
    tree = filters.parse_python(text)
    assert tree is not None
    verdict = decontaminator.drop_reason(text, tree)
    return None if verdict is None else verdict[0]


# ------------------------------------------------------------------------------------------
# Licenses
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "keep"),
    [
        (["License-Expression: MIT"], True),
        (["License-Expression: BSD-3-Clause"], True),
        (["License-Expression: Apache-2.0"], True),
        (["License-Expression: 0BSD"], True),
        (["Classifier: License :: OSI Approved :: MIT License"], True),
        (["Classifier: License :: OSI Approved :: BSD License"], True),
        (["License-Expression: GPL-3.0-only"], False),
        (["License-Expression: MPL-2.0"], False),
        (["License-Expression: MIT OR GPL-3.0"], True),
        (["License-Expression: MIT AND GPL-3.0"], False),
        ([], False),
        (["License: "], False),
        (["License: UNKNOWN"], False),
        (["License: GPL v3"], False),
        (["License: LGPL-2.1-or-later"], False),
        (["License: MIT License"], True),
        (["License: Apache 2.0", "Classifier: License :: OSI Approved :: Apache Software License"], True),
        (["License: Apache 2.0", "Classifier: License :: Other/Proprietary License"], False),
        (["License: BSD", "Classifier: License :: OSI Approved :: GNU General Public License (GPL)"], False),
        (["License: Copyright (c) 2024 Someone", "Classifier: License :: OSI Approved :: BSD License"], True),
        (["License: Copyright (c) 2024 Someone"], False),
        (["License: Public Domain"], False),
        (["License: MIT OR Apache-2.0"], True),
        (["License: BSD 3-Clause OR Apache-2.0"], True),
        (["License: The MIT License (MIT)"], True),
        (["Classifier: License :: OSI Approved :: Python Software Foundation License"], True),
        (["License-Expression: LicenseRef-Proprietary"], False),
        (["License-Expression: Apache-2.0 WITH LLVM-exception"], True),
        (["License-Expression: (MIT OR Apache-2.0) AND BSD-3-Clause"], True),
        (["License-Expression: MPL-2.0 AND (Apache-2.0 OR MIT)"], False),
        (["License-Expression: GPL-2.0-or-later"], False),
        (["License-Expression: BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0"], True),
        (["License-Expression: MIT", "Classifier: License :: OSI Approved :: GNU General Public License (GPL)"], True),
    ],
)
def test_classify_license(headers: list[str], keep: bool) -> None:
    assert licenses.classify_license(metadata("demo", "1.0", *headers)).keep is keep


def test_classify_license_recognises_a_whole_mit_text_and_names_it() -> None:
    text = (
        "License: MIT License\n        \n        Copyright (c) 2023 Someone\n        \n"
        "        Permission is hereby granted, free of charge, to any person obtaining a copy"
    )
    verdict = licenses.classify_license(metadata("demo", "1.0", text))
    assert verdict.keep and verdict.license == "MIT"


def test_classify_license_reports_a_canonical_name() -> None:
    assert licenses.classify_license(metadata("d", "1", "License: Apache License, Version 2.0")).license == "Apache-2.0"
    assert (
        licenses.classify_license(metadata("d", "1", "License-Expression: MIT OR GPL-3.0")).license == "MIT OR GPL-3.0"
    )


# ------------------------------------------------------------------------------------------
# Newest version
# ------------------------------------------------------------------------------------------


def test_version_order_is_numeric_and_knows_pre_and_post_releases() -> None:
    ordered = ["1.9", "1.10.0rc1", "1.10.0", "1.10.0.post1", "1.10.1", "2.0.0.dev3", "2.0.0a1", "2.0.0", "10.0"]
    assert sorted(ordered, key=wheels.version_sort_key) == ordered
    assert wheels.version_sort_key("2.13.0+cpu") < wheels.version_sort_key("2.14.1")
    assert wheels.version_sort_key("1.0") == wheels.version_sort_key("1.0.0")


def test_select_newest_wheels_keeps_one_per_project(tmp_path: Path) -> None:
    names = [
        "numpy-1.26.4-cp311-cp311-linux.whl",
        "numpy-2.4.6-cp311-cp311-linux.whl",
        "numpy-2.10.0-cp311-cp311-linux.whl",
        "Flask_Login-0.6.3-py3-none-any.whl",
        "flask_login-0.6.2-py3-none-any.whl",
        "torch-2.13.0+cpu-cp311-cp311-linux.whl",
        "torch-2.14.1-cp311-cp311-linux.whl",
    ]
    chosen, skipped = wheels.select_newest_wheels(tmp_path / name for name in names)
    assert [path.name for path in chosen] == [
        "Flask_Login-0.6.3-py3-none-any.whl",
        "numpy-2.10.0-cp311-cp311-linux.whl",
        "torch-2.14.1-cp311-cp311-linux.whl",
    ]
    assert skipped == 4


# ------------------------------------------------------------------------------------------
# File filters
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("pkg/core.py", None),
        ("pkg/_vendor/six.py", "vendored"),
        ("pkg/third_party/lib/x.py", "vendored"),
        ("pkg/vendored/x.py", "vendored"),
        ("pkg/externals/x.py", "vendored"),
        ("ray/_private/thirdparty_files/attr/_make.py", "vendored"),
        ("pkg/tests/helpers.py", "tests"),
        ("pkg/test/data.py", "tests"),
        ("pkg/testing/asserts.py", "tests"),
        ("pkg/test_core.py", "tests"),
        ("pkg/core_test.py", "tests"),
        ("conftest.py", "tests"),
        ("pkg/proto/service_pb2.py", "generated"),
        ("pkg/proto/service_pb2_grpc.py", "generated"),
        ("pkg/contest.py", None),
        ("pkg/attestation.py", None),
    ],
)
def test_path_drop_reason(path: str, reason: str | None) -> None:
    assert filters.path_drop_reason(path) == reason


def test_content_drop_reason() -> None:
    good = module_source("alpha")
    assert filters.content_drop_reason(good.encode())[0] is None
    assert filters.content_drop_reason(("# Generated by protoc. DO NOT EDIT!\n" + good).encode())[0] == "generated"
    assert (
        filters.content_drop_reason(("# -*- coding: utf-8 -*-\n# This file is auto-generated\n" + good).encode())[0]
        == "generated"
    )
    assert (
        filters.content_drop_reason(good.encode() + b"\n" * 10 + b"# generated by hand, late in the file\n")[0] is None
    )
    assert filters.content_drop_reason(good.encode(), size=filters.MAX_FILE_BYTES + 1)[0] == "too_large"
    assert filters.content_drop_reason(("x = '" + "a" * 1001 + "'\n" + good).encode())[0] == "long_lines"
    assert filters.content_drop_reason(good.encode("utf-8") + "# caf\u00e9\n".encode("latin-1"))[0] == "not_utf8"
    assert filters.content_drop_reason(b"import os\n\n\nprint(os.sep)\n")[0] == "too_short"
    assert filters.content_drop_reason(("print 'python 2'\n" + good).encode())[0] == "unparsable"


def test_decode_source_normalises_line_endings_and_bom() -> None:
    assert filters.decode_source(b"\xef\xbb\xbfa = 1\r\nb = 2\r") == "a = 1\nb = 2\n"


def test_stdlib_walk_skips_excluded_directories(tmp_path: Path) -> None:
    for relative in ["json/__init__.py", "test/test_json.py", "idlelib/run.py", "site-packages/x/y.py", "os.py"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x = 1\n")
    assert [relative for relative, _ in stdlib.iter_source_files(tmp_path)] == ["json/__init__.py", "os.py"]


# ------------------------------------------------------------------------------------------
# Deduplication
# ------------------------------------------------------------------------------------------


def test_exact_key_ignores_line_endings_and_trailing_whitespace() -> None:
    text = module_source("alpha")
    assert dedup.exact_key(text) == dedup.exact_key(text.replace("\n", "  \r\n"))
    assert dedup.exact_key(text) != dedup.exact_key(text.replace("scale", "factor"))


def test_near_duplicates_one_changed_line_is_a_duplicate_a_different_file_is_not() -> None:
    original = module_source("alpha")
    lines = original.split("\n")
    lines[5] = "    total_alpha = sum(abs(value) for value in values)  # changed"
    edited = "\n".join(lines)
    index = dedup.NearDuplicateIndex()
    assert index.add_unless_duplicate(original)
    assert not index.add_unless_duplicate(edited)
    assert index.add_unless_duplicate(module_source("beta"))
    assert index.count == 2


def test_minhash_signature_is_stable() -> None:
    signature = dedup.minhash_signature(module_source("alpha"))
    assert signature.shape == (dedup.MINHASH_PERMUTATIONS,)
    assert (signature == dedup.minhash_signature(module_source("alpha"))).all()
    assert (dedup.minhash_signature("") == dedup.minhash_signature("")).all()  # no crash on empty text


# ------------------------------------------------------------------------------------------
# Decontamination
# ------------------------------------------------------------------------------------------


def test_file_containing_an_mbpp_solution_is_contaminated(decontaminator: decontaminate.Decontaminator) -> None:
    copied = module_source("alpha") + "\n\n" + MBPP_CODE.replace("\r\n", "\n").replace("  ", "    ") + "\n"
    assert judge(decontaminator, copied) == "contaminated"
    assert judge(decontaminator, module_source("beta")) is None


def test_file_containing_an_mbpp_prompt_is_contaminated(decontaminator: decontaminate.Decontaminator) -> None:
    text = f'"""\n{MBPP_TEXT.upper()}\n"""\n' + module_source("alpha")
    assert judge(decontaminator, text) == "contaminated"


def test_quixbugs_definition_needs_a_distinctive_name_and_the_same_parameters(
    decontaminator: decontaminate.Decontaminator,
) -> None:
    rewritten = module_source("alpha") + "\n\ndef detect_cycle(node):\n    return node in node.seen\n"
    assert judge(decontaminator, rewritten) == "contaminated"
    other_parameters = module_source("alpha") + "\n\ndef detect_cycle(graph, start):\n    return start in graph\n"
    assert judge(decontaminator, other_parameters) is None
    one_word_name = module_source("alpha") + "\n\ndef bitcount(n):\n    return bin(n).count('1')\n"
    assert judge(decontaminator, one_word_name) is None
    assert decontaminate.is_distinctive_function_name("shortest_path_length")
    assert not decontaminate.is_distinctive_function_name("gcd") and not decontaminate.is_distinctive_function_name(
        "_private"
    )


def test_benchmark_style_asserts_are_dropped(decontaminator: decontaminate.Decontaminator) -> None:
    asserts = "\n".join(f"assert alpha_measure_0([{i}, {i + 1}]) == {i * 2}" for i in range(3))
    assert judge(decontaminator, module_source("alpha") + asserts + "\n") == "benchmark_like"
    two = "\n".join(f"assert alpha_measure_0([{i}, {i + 1}]) == {i * 2}" for i in range(2))
    assert judge(decontaminator, module_source("alpha") + two + "\n") is None


def test_boilerplate_ngrams_do_not_contaminate(tmp_path: Path) -> None:
    root = make_eval_root(tmp_path / "eval")
    loop = (
        "def count_pairs(arr, n):\n    cnt = 0\n    for i in range(n):\n        for j in range(i + 1, n):\n"
        "            if arr[i] == arr[j]:\n                cnt += 1\n    return cnt\n"
    )
    (root / "mbpp" / "mbpp.jsonl").write_text(
        json.dumps({"text": "Count equal pairs in the array please.", "code": loop}) + "\n"
    )
    decontaminator = decontaminate.Decontaminator(decontaminate.EvalSet.load(root))
    library = (
        module_source("alpha") + "\n\ndef scan(x, n):\n    for i in range(n):\n        for j in range(i + 1, n):\n"
        "            if x[i] == x[j]:\n                return True\n    return False\n"
    )
    assert judge(decontaminator, library) is None
    assert judge(decontaminator, module_source("alpha") + "\n\n" + loop) == "contaminated"


def test_strings_and_comments_are_not_code_tokens(tmp_path: Path) -> None:
    root = make_eval_root(tmp_path / "eval")
    solution = (
        "import re\ndef text_match(text):\n    patterns = re.compile(r'^[a-zA-Z0-9_]*$')\n"
        "    if patterns.search(text):\n        return 'Found a match!'\n    return 'Not matched!'\n"
    )
    (root / "mbpp" / "mbpp.jsonl").write_text(
        json.dumps({"text": "Match a word of letters and digits.", "code": solution}) + "\n"
    )
    decontaminator = decontaminate.Decontaminator(decontaminate.EvalSet.load(root))
    library = module_source("alpha") + "\nNAME = re.compile(r'^[a-zA-Z0-9_]*$')  # same regex as the eval, other code\n"
    assert judge(decontaminator, library) is None
    assert decontaminate.code_tokens("x = 'a # b'  # it's\ny = 1") == [b"x", b"=", b"y", b"=", b"1"]


# ------------------------------------------------------------------------------------------
# Split
# ------------------------------------------------------------------------------------------


def test_split_is_stable_and_roughly_90_5_5() -> None:
    # Pinned: if these change, every previously built corpus changes its splits.
    assert [
        bc.split_of("cpython-stdlib", path) for path in ("os.py", "json/__init__.py", "asyncio/tasks.py")
    ] == PINNED_SPLITS
    counts = {split: 0 for split in bc.SPLITS}
    for index in range(20_000):
        counts[bc.split_of("demo", f"pkg/module_{index}.py")] += 1
    assert 17_600 < counts["train"] < 18_400
    assert 800 < counts["validation"] < 1_200 and 800 < counts["test"] < 1_200


PINNED_SPLITS = ["train", "train", "train"]


# ------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------


def build_fixture(tmp_path: Path) -> tuple[Path, list[Path], Path]:
    stdlib = tmp_path / "stdlib"
    (stdlib / "json").mkdir(parents=True)
    (stdlib / "json" / "__init__.py").write_text(module_source("json"))
    (stdlib / "test").mkdir()
    (stdlib / "test" / "test_json.py").write_text(module_source("testjson"))
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "demo", "1.0", {"demo/old.py": module_source("old")}, "License-Expression: MIT")
    make_wheel(
        wheels / "nested",
        "demo",
        "2.0",
        {
            "demo/core.py": module_source("core"),
            "demo/core_copy.py": module_source("core") + "\n",  # exact duplicate (sorts after core.py)
            "demo/near_core.py": module_source("core").replace("scale=3", "scale=30"),  # near duplicate
            "demo/_vendor/six.py": module_source("six"),
            "demo/tests/test_core.py": module_source("tests"),
            "demo/leak.py": module_source("leak") + "\n\n" + MBPP_CODE.replace("\r\n", "\n") + "\n",
            "demo/data.txt": "not python",
        },
        "License-Expression: BSD-3-Clause",
    )
    make_wheel(wheels, "copyleft", "3.1", {"copyleft/a.py": module_source("gpl")}, "License-Expression: GPL-3.0-only")
    make_wheel(
        tmp_path / "other",
        "extra",
        "0.1",
        {"extra/tool.py": module_source("extra")},
        "Classifier: License :: OSI Approved :: ISC License (ISCL)",
    )
    return stdlib, [wheels, tmp_path / "other", tmp_path / "missing"], make_eval_root(tmp_path / "eval")


def read_records(out: Path) -> list[dict]:
    return [json.loads(line) for split in bc.SPLITS for line in (out / f"{split}.jsonl").read_text().splitlines()]


def test_build_corpus_end_to_end(tmp_path: Path) -> None:
    stdlib, wheel_roots, eval_root = build_fixture(tmp_path)
    out = tmp_path / "out"
    manifest = bc.build_corpus(out, stdlib, wheel_roots, eval_root)

    records = read_records(out)
    assert sorted((record["source"], record["path"]) for record in records) == [
        ("cpython-stdlib=={}.{}".format(*bc.sys.version_info[:2]), "json/__init__.py"),
        ("demo==2.0", "demo/core.py"),
        ("extra==0.1", "extra/tool.py"),
    ]
    assert {record["license"] for record in records} == {"PSF-2.0", "BSD-3-Clause", "ISC"}
    assert json.loads((out / "corpus.json").read_text()) == manifest
    drops = manifest["drops"]
    assert drops["license"] == 1 and drops["vendored"] == 1 and drops["tests"] == 1
    assert drops["exact_duplicate"] == 1 and drops["near_duplicate"] == 1 and drops["contaminated"] == 1
    assert manifest["wheels_skipped_older_version"] == 1
    assert manifest["total"] == {"files": 3, "bytes": sum(len(r["text"].encode()) for r in records), "sources": 3}
    assert sum(split["files"] for split in manifest["splits"].values()) == 3
    assert [dropped["project"] for dropped in manifest["dropped_sources"]] == ["copyleft"]
    assert manifest["decontamination"]["files"] == [
        {"source": "demo==2.0", "path": "demo/leak.py", "rule": manifest["decontamination"]["files"][0]["rule"]}
    ]

    again = tmp_path / "again"
    bc.build_corpus(again, stdlib, wheel_roots, eval_root)
    for split in bc.SPLITS:  # deterministic, byte for byte
        assert (out / f"{split}.jsonl").read_bytes() == (again / f"{split}.jsonl").read_bytes()


def test_max_bytes_stops_in_source_order(tmp_path: Path) -> None:
    stdlib, wheel_roots, eval_root = build_fixture(tmp_path)
    first_file = len(module_source("json").encode())
    manifest = bc.build_corpus(tmp_path / "out", stdlib, wheel_roots, eval_root, max_bytes=first_file + 10)
    assert manifest["capped"] is True
    assert manifest["total"]["files"] == 1
    assert [record["path"] for record in read_records(tmp_path / "out")] == ["json/__init__.py"]
