"""Turning document text into the model's token ids, exactly as the model's own tokenizer would.

The model's tokenizer arrives as a `tokenizers.Tokenizer` (ingest never imports the engine). Documents are
encoded in *document mode*: text that happens to spell a control token ("<file_sep>" inside a file about
tokenizers) is encoded as ordinary text, so only the sequence's own headers and separators carry those ids.
Encoding goes through the batch call, which releases the GIL, so the reading threads tokenize in parallel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tokenizers import Tokenizer


@dataclass
class SequenceTokenizer:
    """What the sequence needs of a tokenizer: document-mode encoding, the header and separator ids."""

    encode_many: Callable[[list[str]], list[list[int]]]
    fingerprint: str
    filename_id: int | None
    file_sep_id: int | None

    def encode(self, text: str) -> list[int]:
        return self.encode_many([text])[0]

    def header(self, name: str) -> list[int]:
        """`<filename>name\\n` (or `### File: name\\n` as text where the vocabulary has no <filename>)."""
        if self.filename_id is None:
            return self.encode(f"### File: {name}\n")
        return [self.filename_id] + self.encode(f"{name}\n")

    def separator(self) -> list[int]:
        """`<file_sep>` after each document (a blank line where the vocabulary has none)."""
        return [self.file_sep_id] if self.file_sep_id is not None else self.encode("\n\n")


def sequence_tokenizer(backend: Tokenizer, fingerprint: str) -> SequenceTokenizer:
    """A document-mode tokenizer from the model's tokenizer."""
    document = Tokenizer.from_str(backend.to_str())
    document.encode_special_tokens = True

    # The batch call releases the GIL (a single `encode` does not), so reading threads run in parallel;
    # the `_fast` variant (in recent tokenizers releases) also skips computing offsets nobody reads.
    encode_batch = getattr(document, "encode_batch_fast", document.encode_batch)

    def encode_many(texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in encode_batch(texts, add_special_tokens=False)]

    return SequenceTokenizer(encode_many, fingerprint, backend.token_to_id("<filename>"),
                             backend.token_to_id("<file_sep>"))
