"""Fill-in-the-middle samples laid out the way inference sees them.

A sample is `<|fim_prefix|> P <|fim_suffix|> S <|fim_middle|> M <|eos|> <|eos|>…` in one window:

* The middle is a real unit of code (one line, a few lines, a statement with its indented body, or
  now and then a span cut anywhere), drawn from the window's longest document.
* The header (markers, P, S) is trimmed to a multiple of `ALIGN` tokens, so the middle starts on a
  block boundary for every trained block size, as the runtime's first block starts right after the
  prompt. The middle's end therefore falls anywhere inside a block.
* After the middle come `<|eos|>` tokens to the window's end (LLaDA's padding): the sampler bans
  `<|pad|>` and fills a block's masks after its first `<|eos|>` with `<|eos|>`, so `<|eos|>` is
  the padding a model can be asked to write.
* Token healing, as at inference (models/src/prompt.ts, sample.py's `encode_prompt`): the prefix's
  last token is taken back and the middle is encoded with its text in front, so the middle's first
  token is the one that covers the prefix boundary. The suffix is encoded on its own, as the
  runtime encodes a request's suffix.
"""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer

from tokenizer import special_ids

ALIGN = 64  # every trained block size (16, 32, 64) divides it
MAX_MIDDLE = 192  # tokens, its <|eos|> included
UNITS = ("line", "lines", "statement", "span")
UNIT_WEIGHTS = (0.4, 0.25, 0.2, 0.15)


class FimLayout:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        ids = special_ids(tokenizer)  # raises when a control token is missing
        self.bos, self.eos = ids.bos, ids.eos
        self.prefix, self.suffix, self.middle = ids.fim_prefix, ids.fim_suffix, ids.fim_middle

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def windows(self, windows: np.ndarray, rate: float, block_size: int, rng: np.random.Generator) -> np.ndarray:
        """Turns a share `rate` of the windows [batch, length] into FIM samples of the same length."""
        out = windows.copy()
        for row in np.flatnonzero(rng.random(len(windows)) < rate):
            sample = self.sample(windows[row], block_size, rng)
            if sample is not None:
                out[row] = sample
        return out

    def sample(self, window: np.ndarray, block_size: int, rng: np.random.Generator) -> np.ndarray | None:
        """One window as a FIM sample, or None when its longest document is too short for one."""
        length = window.size
        text = self.tokenizer.decode(longest_document(window, (self.bos, self.eos)).tolist())
        for _ in range(4):  # a unit that does not fit is drawn again
            cut = choose_middle(text, rng)
            if cut is None:
                return None
            head, middle = self.encode(text[: cut[0]]), text[cut[0] : cut[1]]
            if len(head) < 2:
                continue
            healed = self.tokenizer.decode(head[-1:])
            middle_ids = self.encode(healed + middle)
            if not self.tokenizer.decode(middle_ids[:1]).startswith(healed):
                middle_ids = [head[-1], *self.encode(middle)]  # BPE split the healed text: keep it
            padded = -(-(len(middle_ids) + 1) // block_size) * block_size
            if len(middle_ids) + 1 <= MAX_MIDDLE and length - padded >= ALIGN:
                return self.layout(head[:-1], self.encode(text[cut[1] :]), middle_ids, length, padded, rng)
        return None

    def layout(
        self,
        prefix: list[int],
        suffix: list[int],
        middle: list[int],
        length: int,
        padded: int,
        rng: np.random.Generator,
    ) -> np.ndarray | None:
        room = (length - padded) // ALIGN * ALIGN - 3  # prefix and suffix tokens beside the 3 markers
        want_suffix = min(len(suffix), max(room - len(prefix), int(rng.uniform(0.15, 0.6) * room)))
        n_prefix = min(len(prefix), room - want_suffix)
        n_suffix = min(len(suffix), room - n_prefix)
        header = (n_prefix + n_suffix + 3) // ALIGN * ALIGN
        if header == 0:
            return None
        excess = n_prefix + n_suffix + 3 - header  # a short document: trim to the alignment
        n_suffix -= min(excess, n_suffix)
        n_prefix = header - 3 - n_suffix
        row = [self.prefix, *prefix[len(prefix) - n_prefix :], self.suffix, *suffix[:n_suffix], self.middle, *middle]
        return np.asarray(row + [self.eos] * (length - len(row)), dtype=np.int64)


def longest_document(window: np.ndarray, separators: tuple[int, ...]) -> np.ndarray:
    """The longest run of the window between document markers."""
    cuts = [-1, *np.flatnonzero(np.isin(window, separators)).tolist(), window.size]
    start, end = max(zip(cuts, cuts[1:], strict=False), key=lambda pair: pair[1] - pair[0])
    return window[start + 1 : end]


def line_starts(text: str) -> list[int]:
    return [0, *(i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 < len(text))]


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def choose_middle(text: str, rng: np.random.Generator) -> tuple[int, int] | None:
    """Character offsets [a, b) of a middle: whole lines (one, a few, or a statement with its
    indented body) or, for the "span" unit, any cut. The window's first line may start mid-line
    and its last may be cut off, so neither is chosen."""
    starts = line_starts(text)
    lines = text.split("\n")
    candidates = [i for i in range(1, len(starts) - 1) if lines[i].strip()]
    if not candidates:
        return None
    unit = UNITS[int(rng.choice(len(UNITS), p=UNIT_WEIGHTS))]
    end_of = lambda i: starts[i + 1] if i + 1 < len(starts) else len(text)  # noqa: E731
    if unit == "statement":
        headers = [i for i in candidates if lines[i].rstrip().endswith(":")]
        if headers:
            first = int(rng.choice(headers))
            last = first
            while last + 1 < len(starts) - 1 and (
                not lines[last + 1].strip() or indent_of(lines[last + 1]) > indent_of(lines[first])
            ):
                last += 1
            while last > first and not lines[last].strip():
                last -= 1
            return starts[first], end_of(last)
        unit = "line"
    if unit == "span":
        a = int(rng.integers(starts[1], starts[-1]))
        return a, min(starts[-1], a + int(rng.integers(1, 400)))
    first = int(rng.choice(candidates))
    count = 1 if unit == "line" else int(rng.integers(2, 6))
    last = min(first + count - 1, len(starts) - 2)
    return starts[first], end_of(last)
