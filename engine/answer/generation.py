"""Answering from excerpts: the model answers (streamed, cut before it repeats itself), then one more
pass measures where the answer's tokens looked, which decides what it cites (`engine.answer.citations`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.answer.citations import CITED_SHARE, GROUNDED_SHARE, Citation, attention_on_excerpts, citation_record
from engine.answer.evidence import Evidence
from engine.answer.excerpts import Excerpt
from engine.answer.prompt import build_prompt, without_quote_label
from engine.answer.repeats import without_repeats
from engine.model.generate import CopyBias, copy_bias, generate_tokens, stream_text
from engine.model.tokenizer import ChatTokenizer
from engine.runtime import Runtime

# How strongly the reader is held to a quotation of the evidence it has begun (`engine.model.generate.CopyBias`),
# chosen on the bench/qa questions to work on (docs/benchmarks.md, "Holding the reader to its quotation").
COPY_STRENGTH = 6.0


def quotation_bias(tokenizer: ChatTokenizer, sentence: str) -> CopyBias:
    """The copy bias towards the evidence `sentence` as the store holds it and with its lines run together: a
    reader quoting "… statements ``return``/``continue``\n  within the finally suite" writes the line break
    and its indent as one space, which the stored text never follows with "within", and the quotation ended
    there."""
    return copy_bias(tokenizer.encode(sentence), COPY_STRENGTH, tokenizer.announcing_ids, tokenizer.blank_ids,
                     variants=(tokenizer.encode(" ".join(sentence.split())),))


@dataclass(frozen=True)
class Grounds:
    """What the answer will rest on, known before its first token: the evidence sentence(s), whether the
    question was found in the files, and the names and numbers it uses that no file mentions (`unknown`, one
    reason for not found). Chosen from the retrieved passages before generation starts, so a caller can show
    them while the answer streams rather than after it."""

    evidence: list[Evidence]
    found: bool
    unknown: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Token:
    """A piece of the answer as it streams."""

    text: str


@dataclass
class Answer:
    """The answer kept (a repeating tail cut off), what it cites, the sentence(s) that support it, whether the
    question was found in the files (`unknown`: the question's names no file mentions), the names and numbers
    of the answer no passage holds, whether it drew on the corpus, timings. `citations`: the passages that
    support the answer (none when the question was not found); `closest`: when it was not found, the passages
    that come nearest it, offered as that and not as support (and `text` is empty: no answer was made).
    `timings["first_token_s"]`: when the reply's first words could show (for a question not found, the whole
    reply)."""

    text: str = ""
    citations: list[Citation] = field(default_factory=list)
    closest: list[Citation] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    found: bool = False
    unknown: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    grounded: bool = False
    corpus_share: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    excerpts: list[Excerpt] = field(default_factory=list)  # what the prompt held, cited or not


def answer_stream(runtime: Runtime, excerpts: list[Excerpt], question: str, max_new_tokens: int,
                  started: float, temperature: float = 0.0,
                  quote: tuple[Excerpt, str] | None = None) -> Iterator[Token | Answer]:
    """Events: a Token for each piece of the answer as it streams, then the Answer. `quote`: the evidence
    sentence to repeat under the question, with the excerpt that holds it (`build_prompt`); an answer that
    starts quoting it is held to the quotation, and one that announces what follows with a colon goes on with
    it rather than stop there (`COPY_STRENGTH`, `CopyBias`)."""
    prompt = build_prompt(runtime, excerpts, question, quote)
    tokenizer = runtime.tokenizer
    copy = None if quote is None else quotation_bias(tokenizer, quote[1])
    result = Answer(excerpts=excerpts)
    produced: list[int] = []

    def counted():
        for token in generate_tokens(runtime.model, prompt, max_new_tokens, tokenizer.stop_ids, temperature,
                                     copy=copy):
            produced.append(token)
            yield token

    def timed():
        for number, piece in enumerate(stream_text(tokenizer, counted())):
            if number == 0:
                result.timings["first_token_s"] = time.perf_counter() - started
            yield piece

    pieces = []
    for piece in without_repeats(without_quote_label(timed())):
        pieces.append(piece)
        yield Token(piece)
    result.text = "".join(pieces)
    if produced and excerpts:
        result.corpus_share = attention_on_excerpts(runtime, prompt, produced, excerpts)
    result.grounded = result.corpus_share >= GROUNDED_SHARE
    ranked = sorted(excerpts, key=lambda excerpt: -excerpt.mass)
    result.citations = [citation_record(e, tokenizer.decode(prompt[e.prompt_start:e.prompt_end]))
                        for e in ranked if e.mass >= CITED_SHARE]
    result.timings["total_s"] = time.perf_counter() - started
    yield result
