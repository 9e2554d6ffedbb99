from pathlib import Path

from tokenizers import Tokenizer

from tokenizer import SPECIAL_TOKENS

SHIPPED = Path(__file__).resolve().parents[2] / "sprout-tiny" / "tokenizer.json"


def test_special_tokens_hold_the_first_ids():
    tokenizer = Tokenizer.from_file(str(SHIPPED))
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))


def test_byte_level_round_trip_of_any_text():
    tokenizer = Tokenizer.from_file(str(SHIPPED))
    text = "def f(x):\n\treturn 'ünïcödé 🌱' + x  # \x00 odd bytes\r\n"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False).ids) == text
