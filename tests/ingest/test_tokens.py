"""The document-mode tokenizer: control-token text stays text, and the fast path equals the model's tokenizer."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


def test_text_spelling_a_control_token_is_encoded_as_text(sequence, model_tokenizer):
    backend, _ = model_tokenizer
    ids = sequence.encode("before <file_sep> after <filename>x")
    assert backend.token_to_id("<file_sep>") not in ids and backend.token_to_id("<filename>") not in ids
    assert backend.decode(ids) == "before <file_sep> after <filename>x"


def test_header_and_separator_use_the_models_file_tokens(sequence, model_tokenizer):
    backend, fingerprint = model_tokenizer
    header = sequence.header("notes/a.md")
    assert header[0] == backend.token_to_id("<filename>")
    assert backend.decode(header[1:]) == "notes/a.md\n"
    assert sequence.separator() == [backend.token_to_id("<file_sep>")]
    assert sequence.fingerprint == fingerprint


def test_every_encoder_agrees_with_the_reference_on_real_source(sequence, reference):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / name).read_text(encoding="utf-8") for name in ("textwrap.py", "json/decoder.py", "this.py")]
    texts += ["Prices: 12,345.67 € — naïve café, 東京, 🙂\r\n\ttabs  and   spaces 007\n", "x\x04y\x1dz \U00050000 1"]
    assert sequence.encode_many(texts) == reference.encode_many(texts)


@pytest.fixture(scope="module")
def fast(sequence):
    if sequence.engine != "tiktoken":
        pytest.skip("tiktoken is not installed: the reference encoder is the only one in use")
    return sequence


# Characters that decide where pre-tokenization cuts (whitespace runs, digits, apostrophes, letters,
# punctuation, bytes missing from the vocabulary), mixed with any character at all.
_TRICKY = st.sampled_from(list(" \t\n\r\x0b\x0c\xa0\u2009\u3000019'sStTmMdD-_.,;:!?()<>|aZéß€東🙂\x04\x1d"))


@settings(max_examples=400, deadline=None)
@given(st.text(st.one_of(_TRICKY, st.characters(codec="utf-8")), max_size=60))
def test_fast_path_equals_the_reference_on_any_text(fast, reference, text):
    assert fast.encode(text) == reference.encode(text)
