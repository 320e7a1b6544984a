"""Cutting a streamed answer before it repeats itself: greedy decoding of a small model loops."""

from __future__ import annotations

import re
from collections.abc import Iterator

SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")
REPEAT_WORDS = 4  # shorter sentences ("Yes.", "See below.") may stand inside an earlier one and still be new


def _sentence_key(text: str) -> str:
    """A sentence as compared for repeats: spaces collapsed, list numbers, bullets and quotation marks around it
    dropped, lower case (a quotation said again in quotation marks is a repeat)."""
    return " ".join(text.split()).lstrip("0123456789.)-* \"'\u201c\u2018").rstrip("\"'\u201d\u2019 ").lower()


def _finished_sentences(text: str) -> tuple[list[tuple[str, int]], int]:
    """The finished sentences (or lines) of `text`, each as (key, where it ends), and where the unfinished rest
    begins. A bare list number or a blank line is not a sentence: it joins the one after it."""
    sentences, begin = [], 0
    for boundary in SENTENCE_END.finditer(text):
        key = _sentence_key(text[begin:boundary.end()])
        if key:
            sentences.append((key, boundary.end()))
            begin = boundary.end()
    return sentences, begin


def repeat_cut(text: str) -> int | None:
    """Where to cut `text` when a finished sentence (or line) says again what was said before it: the end of
    the last sentence before the repeat. None when nothing repeats. Greedy decoding of a small model loops
    ("She is the one who made the design of the project." over and over), and the loop adds nothing. List
    numbers and bullets are not sentences of their own. A sentence of REPEAT_WORDS words or more repeats
    when the text before it holds it anywhere: a quotation of a wrapped line ("a mild strain of the" and,
    on the next line, "medial ligament.") is two pieces that, said again on one line, are one sentence."""
    return _first_repeat(_finished_sentences(text)[0])


def _first_repeat(sentences: list[tuple[str, int]]) -> int | None:
    """`repeat_cut` over sentences already split by `_finished_sentences`."""
    seen: set[str] = set()
    said, kept_end = " ", 0
    for key, end in sentences:
        if key in seen or (len(key.split()) >= REPEAT_WORDS and f" {key} " in said):
            return kept_end
        seen.add(key)
        said += key + " "
        kept_end = end
    return None


def without_repeats(pieces: Iterator[str]) -> Iterator[str]:
    """The pieces of a streaming answer as they may be shown, ending before the first repeated sentence.
    Joined, they are the kept answer: an unfinished sentence that so far reads like a part of what was said
    before it is held back, since it may be a repeat that will be cut, and text already printed on a terminal
    cannot be taken back."""
    text, shown = "", 0
    for piece in pieces:
        text += piece
        sentences, rest = _finished_sentences(text)
        cut = _first_repeat(sentences)
        if cut is not None:
            text = text[:cut]
            break
        tail = _sentence_key(text[rest:])
        said = " " + " ".join(key for key, _ in sentences)
        ready = rest if f" {tail}" in said else len(text)
        if ready > shown:
            yield text[shown:ready]
            shown = ready
    cut = _first_repeat(_finished_sentences(text + " ")[0])  # the answer ended, so its last sentence did too
    if cut is not None:  # held back as a part of what was said before, it is a repeat
        text = text[:max(cut, shown)]
    if len(text) > shown:
        yield text[shown:]
