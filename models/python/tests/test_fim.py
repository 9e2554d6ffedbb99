"""Fill-in-the-middle samples look like inference: the middle starts on a block boundary, ends with
`<|eos|>` anywhere inside a block, is a real unit of code, and its first token is healed."""

from pathlib import Path

import numpy as np
import pytest

import corpus
from fim import ALIGN, FimLayout, choose_middle
from sample import encode_prompt
from tokenizer import load_tokenizer

TOKENIZER = load_tokenizer(Path(__file__).resolve().parents[2] / "sprout-tiny" / "tokenizer.json")
LAYOUT = FimLayout(TOKENIZER)
LENGTH = 512


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    files = [text for _, text in corpus.iter_files("validation")][:12]
    ids: list[int] = []
    for text in files:
        ids += [LAYOUT.bos, *LAYOUT.encode(text), LAYOUT.eos]
    starts = np.random.default_rng(0).integers(0, len(ids) - LENGTH, size=24)
    return np.stack([np.asarray(ids[s : s + LENGTH]) for s in starts])


def parts(row: np.ndarray) -> tuple[list[int], list[int], list[int], list[int]]:
    row = row.tolist()
    s, m = row.index(LAYOUT.suffix), row.index(LAYOUT.middle)
    end = row.index(LAYOUT.eos, m)
    return row[1:s], row[s + 1 : m], row[m + 1 : end], row[end:]


@pytest.mark.parametrize("block_size", [16, 32, 64])
def test_middle_starts_on_a_block_boundary_and_ends_with_eos_padding(windows, block_size):
    out = LAYOUT.windows(windows, 1.0, block_size, np.random.default_rng(1))
    assert out.shape == windows.shape
    ends_in_block = set()
    for row in out:
        assert row[0] == LAYOUT.prefix
        prefix, suffix, middle, tail = parts(row)
        start = len(prefix) + len(suffix) + 3
        assert start % ALIGN == 0 and start % block_size == 0, "the middle starts where the runtime's first block does"
        assert middle and set(tail) == {LAYOUT.eos}, "the middle, then <|eos|> to the window's end"
        ends_in_block.add(len(middle) % block_size)
    assert len(ends_in_block) > 3, "the end falls at many places inside a block, not only its last slot"


def test_most_middles_are_whole_lines_with_the_prefix_token_healed(windows):
    out = LAYOUT.windows(windows, 1.0, 32, np.random.default_rng(2))
    whole_lines = 0
    for row in out:
        prefix, suffix, middle, _ = parts(row)
        text = TOKENIZER.decode(middle)
        # The first middle token covers the prefix's last token (token healing), so the middle's
        # text begins with a piece that ends the prefix's line.
        whole_lines += text.endswith("\n")
    assert whole_lines >= len(out) * 0.6


def test_the_prompt_part_is_what_inference_encodes():
    text = "def add(a, b):\n    total = a + b\n    return total\n\nprint(add(1, 2))\n"
    a, b = text.index("    total"), text.index("    return")
    given = encode_prompt(TOKENIZER, text[:a], text[b:])
    head = LAYOUT.encode(text[:a])
    assert given.ids == [LAYOUT.prefix, *head[:-1], LAYOUT.suffix, *LAYOUT.encode(text[b:]), LAYOUT.middle]
    assert given.healed == TOKENIZER.decode(head[-1:])


def test_units_are_lines_statements_or_spans():
    text = "".join(f"x{i} = {i}\n" for i in range(5)) + "if x0:\n    y = 1\n    z = 2\nw = 3\nv = 4\n"
    rng = np.random.default_rng(3)
    cuts = [choose_middle(text, rng) for _ in range(300)]
    lines = [c for c in cuts if text[c[0] - 1] == "\n" and text[c[1] - 1] == "\n"]
    assert (text.index("if x0"), text.index("w = 3")) in cuts, "a statement with its indented body"
    assert len(lines) > len(cuts) * 0.6, "mostly on line boundaries"
    assert all(c[0] > 0 for c in cuts), "the first line (maybe cut mid-line) is never the middle"


def test_rate_zero_changes_nothing(windows):
    assert (LAYOUT.windows(windows, 0.0, 32, np.random.default_rng(0)) == windows).all()
