"""Turning document text into the model's token ids, exactly as the model's own tokenizer would, but fast.

The model's tokenizer arrives as a `tokenizers.Tokenizer` (ingest never imports the engine). Documents are
encoded in *document mode*: text that happens to spell a control token ("<file_sep>" inside a file about
tokenizers) is encoded as ordinary text, so only the sequence's own headers and separators carry those ids.

Speed: that tokenizer's byte-level pre-tokenizer runs at about 0.4M tokens/s per core here, below what a
front end that must keep up with a whole corpus needs. When `tiktoken` is installed and the tokenizer is a
byte-level BPE of a kind whose splitting rule we can state as one regular expression (GPT-2's, with or
without digits split one by one, or an explicit Split regex), the same vocabulary and merge order are
handed to tiktoken's BPE, which gives the same ids about three times faster and releases the GIL, so
threads scale. The fast encoder is only used after it reproduces the reference on a probe text, and text
holding a character whose UTF-8 bytes the vocabulary lacks (which the reference silently drops) is
always encoded by the reference. Without tiktoken, or for any other tokenizer, the reference is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from tokenizers import Tokenizer

# GPT-2's pre-tokenizer pattern (what `ByteLevel(use_regex=True)` applies).
_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# The same after `Digits(individual_digits=True)`: digits stand alone, and text is cut around them first,
# so a space never joins a digit and a whitespace run stops before one as if the text ended there.
_GPT2_DIGITS_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
_PROBE = ("Hello world's 12345 x1y22 \t\n\n   indented  42\r\n¿Qué tal? naïve café — “quotes” 東京 🙂 "
          "a  \n\tdef f(x):\n        return x**2  # 3.14\n<filename> 0x1F $100.00 it'll I'M \u00a0nbsp\u2009 ")


@dataclass
class SequenceTokenizer:
    """What the sequence needs of a tokenizer: document-mode encoding, the header and separator ids."""

    encode_many: Callable[[list[str]], list[list[int]]]
    fingerprint: str
    filename_id: int | None
    file_sep_id: int | None
    engine: str  # "tiktoken" or "tokenizers": which encoder does the work

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


def sequence_tokenizer(backend: Tokenizer, fingerprint: str, fast: bool = True) -> SequenceTokenizer:
    """A document-mode tokenizer from the model's tokenizer; `fast=False` keeps the reference encoder."""
    reference = Tokenizer.from_str(backend.to_str())
    reference.encode_special_tokens = True

    # The batch call releases the GIL (a single `encode` does not), so reading threads run in parallel;
    # the `_fast` variant (in recent tokenizers releases) also skips computing offsets nobody reads.
    encode_batch = getattr(reference, "encode_batch_fast", reference.encode_batch)

    def encode_reference(texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in encode_batch(texts, add_special_tokens=False)]

    encode_many, engine = encode_reference, "tokenizers"
    accelerated = _tiktoken_encoder(reference, encode_reference) if fast else None
    if accelerated is not None:
        encode_many, engine = accelerated, "tiktoken"
    return SequenceTokenizer(encode_many, fingerprint, backend.token_to_id("<filename>"),
                             backend.token_to_id("<file_sep>"), engine)


def _tiktoken_encoder(reference: Tokenizer, encode_reference: Callable[[list[str]], list[list[int]]]):
    """tiktoken's BPE over the same vocabulary and merges, or None where that would not be exact."""
    try:
        import tiktoken
    except ImportError:
        return None
    config = json.loads(reference.to_str())
    model, pattern = config.get("model") or {}, _split_pattern(config)
    if (model.get("type") != "BPE" or pattern is None or config.get("normalizer") is not None
            or model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix")
            or model.get("ignore_merges")):
        return None
    ranks = _byte_ranks(model, {token["content"] for token in config.get("added_tokens", [])})
    if ranks is None:
        return None
    missing = _missing_bytes_pattern(ranks)
    if missing is False:
        return None
    core = tiktoken.Encoding("wholecorpus-document", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})

    def encode_many(texts: list[str]) -> list[list[int]]:
        return [encode_reference([text])[0] if missing is not None and missing.search(text)
                else core.encode_ordinary(text) for text in texts]

    return encode_many if encode_many([_PROBE]) == encode_reference([_PROBE]) else None


def _split_pattern(config: dict) -> str | None:
    """The one regular expression equal to this tokenizer's pre-tokenizer, where there is one."""
    pre = config.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    last = steps[-1] if steps else {}
    if kinds[-1:] != ["ByteLevel"] or last.get("add_prefix_space"):
        return None
    if kinds == ["ByteLevel"] and last.get("use_regex", True):
        return _GPT2_PATTERN
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and last.get("use_regex", True):
        return _GPT2_DIGITS_PATTERN
    if (kinds == ["Split", "ByteLevel"] and not last.get("use_regex", True)
            and steps[0].get("behavior") == "Isolated" and not steps[0].get("invert")
            and "Regex" in steps[0].get("pattern", {})):
        return steps[0]["pattern"]["Regex"]
    return None


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-printable-character table, inverted (character -> byte)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[chr(byte)] = byte
        else:
            table[chr(256 + extra)] = byte
            extra += 1
    return table


def _byte_ranks(model: dict, added: set[str]) -> dict[bytes, int] | None:
    """Token bytes -> id, where ids grow with merge order (tiktoken merges by the rank of the result)."""
    decoder = _byte_decoder()
    vocab: dict[str, int] = model.get("vocab") or {}
    try:
        ranks = {bytes(decoder[ch] for ch in token): index for token, index in vocab.items() if token not in added}
    except KeyError:
        return None
    previous = -1
    for merge in model.get("merges") or []:
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        index = vocab.get(left + right)
        if index is None or index <= previous:
            return None
        previous = index
    return ranks


def _missing_bytes_pattern(ranks: dict[bytes, int]):
    """A regex for characters whose UTF-8 holds a byte the vocabulary lacks; None if none; False if unusable."""
    missing = [byte for byte in range(256) if bytes([byte]) not in ranks]
    classes = []
    for byte in missing:
        if byte < 0x80:
            classes.append(re.escape(chr(byte)))
        elif 0xC2 <= byte <= 0xDF:
            classes.append(_range((byte & 0x1F) << 6, ((byte & 0x1F) << 6) + 0x3F))
        elif 0xE0 <= byte <= 0xEF:
            classes.append(_range(max((byte & 0x0F) << 12, 0x800), ((byte & 0x0F) << 12) + 0xFFF))
        elif 0xF0 <= byte <= 0xF4:
            classes.append(_range(max((byte & 0x07) << 18, 0x10000), ((byte & 0x07) << 18) + 0x3FFFF))
        elif 0x80 <= byte <= 0xBF:
            return False  # a continuation byte: too many characters to list; keep the reference encoder
        # 0xC0, 0xC1 and 0xF5-0xFF never occur in UTF-8
    return re.compile("[" + "".join(classes) + "]") if classes else None


def _range(first: int, last: int) -> str:
    return f"{re.escape(chr(first))}-{re.escape(chr(min(last, 0x10FFFF)))}"
