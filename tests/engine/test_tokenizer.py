"""Our tokenizer (built from the GGUF metadata) against transformers' reading of the same file."""

from __future__ import annotations

import pytest

from engine.model.generate import stream_text
from engine.model.weights import load_model_tokenizer

transformers = pytest.importorskip("transformers")

STRINGS = [
    "Hello world",
    "Room 12345 costs 3.14159 euros, 2024-03-14",
    "  leading spaces\n\n\ttabs and trailing   ",
    "Ünïcödé “quotes” — 🚀 日本語テキスト Ελληνικά",
    "def f(x):\n    return {'a': [1, 2]}  # comment\n",
    "x    =   y\r\n\r\n",
    "<|im_start|>user\nhi<|im_end|>",
    "<filename>notes/a.md\nbody<file_sep>",
    "",
]

CONVERSATIONS = [
    [{"role": "user", "content": "Hi there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Ünïcödé\n  code:\tx = 1"}],
]


@pytest.fixture(scope="module")
def ours(default_model_path):
    return load_model_tokenizer(default_model_path)


@pytest.fixture(scope="module")
def theirs(default_model_path):
    return transformers.AutoTokenizer.from_pretrained(default_model_path.parent, gguf_file=default_model_path.name)


@pytest.mark.parametrize("text", STRINGS)
def test_ids_match_transformers_and_round_trip(ours, theirs, text):
    ids = ours.encode(text)
    assert ids == theirs.encode(text, add_special_tokens=False)
    assert ours.decode(ids) == text


def test_digits_are_single_tokens(ours):
    """SmolLM was trained with every digit split on its own; passkeys depend on it."""
    ids = ours.encode("pass key 90210")
    assert [ours.decode([i]) for i in ids[-5:]] == list("90210")


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chat_template_matches_transformers(ours, theirs, messages):
    expected = theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours.render_chat(messages) == expected
    assert ours.render_chat(messages).endswith("<|im_start|>assistant\n")


def test_stop_ids_include_end_of_turn(ours):
    assert ours.token_id("<|im_end|>") in ours.stop_ids


@pytest.mark.parametrize("text", STRINGS[:6])
def test_streamed_pieces_are_whole_characters_that_join_to_the_text(ours, text):
    """Streaming one token at a time never shows half a character (🚀 and 日本語 span several byte tokens)."""
    pieces = list(stream_text(ours, iter(ours.encode(text))))
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
