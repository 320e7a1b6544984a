"""The prompt an answer is generated from: the chat template around the labelled excerpts and the question."""

from __future__ import annotations

from collections.abc import Iterator

from engine.answer.excerpts import Excerpt
from engine.runtime import Runtime

SYSTEM = ("You answer questions about the user's own files. Use the excerpts given with the question; "
          "answer briefly.")
PLACEHOLDER = "\x00EXCERPTS\x00"
QUOTE_PLACEHOLDER = "\x00QUOTE\x00"
QUOTE = '\n(The most relevant sentence: "{}")'
# How the reader repeats the quote's label when it opens its answer by quoting the evidence (12 of the 64
# answers of the bench/qa train run).
QUOTE_ECHOES = ("the most relevant sentence is:", "the most relevant sentence:")


def _label(excerpt: Excerpt) -> str:
    where = f", page {excerpt.citation.page}" if excerpt.citation.page else ""
    return f"[{excerpt.citation.paths[0]}{where}]\n"


def build_prompt(runtime: Runtime, excerpts: list[Excerpt], question: str,
                 quote: tuple[Excerpt, str] | None = None) -> list[int]:
    """Prompt token ids: the chat template around the excerpts (a label, then their own stored tokens)
    and the question; sets each excerpt's place in the prompt.

    `quote`, (the excerpt holding the evidence, the evidence sentence), repeats that sentence under the
    question, marked as the most relevant: the 135M reader otherwise often answers from a neighbouring
    line or restates the question (docs/benchmarks.md, "Answers on real prose"). Its place is kept on the
    excerpt, so the answer's attention to it counts as attention to that excerpt."""
    tokenizer = runtime.tokenizer
    asked = f"Question: {question}" + (QUOTE_PLACEHOLDER if quote else "")
    rendered = tokenizer.render_chat([{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": f"Excerpts from my files:\n\n{PLACEHOLDER}{asked}"}])
    before, after = rendered.split(PLACEHOLDER, 1)  # the first is ours: the question comes after it
    ids = tokenizer.encode(before)
    for excerpt in excerpts:
        excerpt.quote_start = excerpt.quote_end = 0
        ids += tokenizer.encode(_label(excerpt))
        excerpt.prompt_start = len(ids)
        ids += excerpt.ids
        excerpt.prompt_end = len(ids)
        ids += tokenizer.encode("\n\n")
    if quote is None:
        return ids + tokenizer.encode(after)
    quoted, sentence = quote
    asked, rest = after.rsplit(QUOTE_PLACEHOLDER, 1)  # the last is ours: the question comes before it
    opening, closing = QUOTE.split("{}")
    ids += tokenizer.encode(asked + opening)
    quoted.quote_start = len(ids)
    ids += tokenizer.encode(sentence)
    quoted.quote_end = len(ids)
    return ids + tokenizer.encode(closing + rest)


def fit_excerpts(runtime: Runtime, excerpts: list[Excerpt], question: str, max_prompt_tokens: int,
                 quote: tuple[Excerpt, str] | None = None) -> list[Excerpt]:
    """The excerpts, the last ones dropped until the whole prompt fits `max_prompt_tokens`.

    Excerpts are chosen by a token budget, but each grows to whole lines and gets a label, so the prompt
    can exceed the budget a little; this bounds it for certain, whatever the excerpts and the question.
    The quoted excerpt (`quote`) is never dropped."""
    kept = list(excerpts)
    while kept and len(build_prompt(runtime, kept, question, quote)) > max_prompt_tokens:
        dropped = next((excerpt for excerpt in reversed(kept) if quote is None or excerpt is not quote[0]), None)
        if dropped is None:
            return []
        kept.remove(dropped)
    return kept


def without_quote_label(pieces: Iterator[str]) -> Iterator[str]:
    """The pieces of a streaming answer without the quote's label where the reader repeats it at the start of a
    line ('The most relevant sentence is: "…"'), opening its answer with it or going on to quote after a first
    try: the label is the prompt's scaffolding, not part of the answer. A line's start is held back only while
    it can still be the label."""
    held, deciding, leading = "", True, False
    for piece in pieces:
        shown = []
        for char in piece:
            if leading and char.isspace():
                continue
            leading = False
            if deciding:
                held += char
                opening = held.lstrip().lower()
                if char != "\n" and any(echo.startswith(opening) and echo != opening for echo in QUOTE_ECHOES):
                    continue
                deciding = False
                echo = next((echo for echo in QUOTE_ECHOES if opening.startswith(echo)), None)
                if echo is None:
                    shown.append(held)
                else:
                    leading = True
                held = ""
            else:
                shown.append(char)
            if char == "\n":
                deciding = True
        if shown:
            yield "".join(shown)
    if deciding and held:
        yield held
