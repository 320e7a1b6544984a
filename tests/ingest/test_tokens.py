"""The document-mode tokenizer: control-token text stays text, everything else as the model's tokenizer."""

from __future__ import annotations

import sysconfig
from pathlib import Path


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


def test_documents_are_encoded_as_the_models_tokenizer_encodes_them(sequence, model_tokenizer):
    backend, _ = model_tokenizer
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / name).read_text(encoding="utf-8") for name in ("textwrap.py", "json/decoder.py", "this.py")]
    texts += ["Prices: 12,345.67 € — naïve café, 東京, 🙂\r\n\ttabs  and   spaces 007\n"]
    assert sequence.encode_many(texts) == [backend.encode(text, add_special_tokens=False).ids for text in texts]
