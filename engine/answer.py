"""Answering from retrieved blocks: the spans they fall in are re-read from their tokens beside the
question, the model answers (streamed), and one more pass measures where the answer's tokens looked.

Citations are ranked by that attention mass, not by retrieval score: a retrieved span the answer
ignored is not cited. When the answer put little of its attention on the corpus at all, the result
says so (`grounded` false) instead of attaching whatever retrieval returned.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from engine.attention import AttentionMass
from engine.generate import generate_tokens, stream_text
from engine.runtime import Runtime
from ingest import catalog
from ingest.sequence import read_tokens

SYSTEM = ("You answer questions about the user's own files. Use the excerpts given with the question; "
          "answer briefly.")
PLACEHOLDER = "\x00EXCERPTS\x00"
SINK_TOKENS = 4
GROUNDED_SHARE = 0.2
CITED_SHARE = 0.02  # an excerpt with less of the answer's attention than this is not cited


MAX_CITED_LINES = 6
LINE_REACH = 32  # tokens an excerpt may grow each way to start and end on a line boundary


@dataclass
class Excerpt:
    """One span placed in the prompt: where it is in the prompt, what it cites, where the answer looked in it."""

    citation: catalog.Citation
    ids: list[int]  # the stored tokens of the part of the span the retrieved blocks cover
    breaks: list[int]  # newlines in each of those tokens
    line_start: int  # the span's line at the first of them
    token_start: int  # the sequence position of the first of them
    prompt_start: int = 0
    prompt_end: int = 0
    mass: float = 0.0
    line_mass: list[float] = field(default_factory=list)  # per line, from line_start

    def cited_lines(self) -> tuple[int, int]:
        """The lines the answer looked at most: the heaviest line, widened over neighbours that carry at
        least a third of its weight, at most MAX_CITED_LINES; the whole span when nothing was measured."""
        if not self.line_mass or max(self.line_mass) <= 0:
            return self.line_start, self.line_start + len(self.line_mass) - 1 if self.line_mass else self.line_start
        top = max(range(len(self.line_mass)), key=self.line_mass.__getitem__)
        low = high = top
        floor = self.line_mass[top] / 3
        while high - low + 1 < MAX_CITED_LINES:
            before = self.line_mass[low - 1] if low > 0 else -1.0
            after = self.line_mass[high + 1] if high + 1 < len(self.line_mass) else -1.0
            if max(before, after) < floor:
                break
            if before >= after:
                low -= 1
            else:
                high += 1
        return self.line_start + low, self.line_start + high


@dataclass
class Answer:
    text: str = ""
    citations: list[dict] = field(default_factory=list)
    grounded: bool = False
    corpus_share: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    excerpts: list[Excerpt] = field(default_factory=list)  # what the prompt held, cited or not


def excerpts_for_blocks(runtime: Runtime, root: Path, db, blocks: list[tuple[int, float]], block_tokens: int,
                        max_tokens: int) -> list[Excerpt]:
    """The parts of live spans that the best blocks cover (best block first, until `max_tokens`), in corpus
    order, parts that continue each other joined. Only the retrieved blocks go into the prompt, not whole
    spans: the small model reads a short context far better (full attention finds a passkey in 100% of
    0.5k-token haystacks, 75% at 1k)."""
    pieces: dict[int, list] = {}
    used = 0
    for block, _score in blocks:
        block_start, block_end = block * block_tokens, (block + 1) * block_tokens
        for span in catalog.citations(db, block_start, block_end):
            start, end = max(span.token_start, block_start), min(span.token_end, block_end)
            if used + end - start > max_tokens:
                continue
            used += end - start
            if span.span_id in pieces:
                piece = pieces[span.span_id]
                piece[1], piece[2] = min(piece[1], start), max(piece[2], end)
            else:
                pieces[span.span_id] = [span, start, end]
    excerpts = []
    for span, start, end in sorted(pieces.values(), key=lambda piece: piece[1]):
        tokens = read_tokens(root / "tokens.u32", span.token_start, span.token_end).tolist()
        # newlines survive byte-level decoding of single tokens, so counting them token by token is exact
        breaks = [runtime.tokenizer.decode([token]).count("\n") for token in tokens]
        start, end = _whole_lines(breaks, start - span.token_start, end - span.token_start)
        excerpts.append(Excerpt(span, tokens[start:end], breaks[start:end], span.line_start + sum(breaks[:start]),
                                span.token_start + start))
    return _join_touching(excerpts)


def _join_touching(excerpts: list[Excerpt]) -> list[Excerpt]:
    """Excerpts (in corpus order) that continue each other in one document and page, as one excerpt.

    A block that straddles two spans gives two pieces of one passage; apart, each under its own label, the
    label cuts the passage mid-sentence. The small model misreads that: a 1M-token passkey trial with the
    needle's block in the prompt answered "The pass key is the pass key." (28 of 30 mixes of filler blocks
    right split, 30 of 30 joined)."""
    joined: list[Excerpt] = []
    for excerpt in excerpts:
        last = joined[-1] if joined else None
        if (last is not None and last.citation.paths == excerpt.citation.paths
                and last.citation.page == excerpt.citation.page
                and last.token_start + len(last.ids) == excerpt.token_start
                and last.line_start + sum(last.breaks) == excerpt.line_start):
            last.ids, last.breaks = last.ids + excerpt.ids, last.breaks + excerpt.breaks
        else:
            joined.append(excerpt)
    return joined


def _whole_lines(breaks: list[int], start: int, end: int) -> tuple[int, int]:
    """[start, end) widened to the line boundaries around it (`breaks[i]`: newlines in token i), by at most
    LINE_REACH tokens each way, so an excerpt does not open or close mid-sentence in ordinary text."""
    low = start
    while low > 0 and start - low < LINE_REACH and not breaks[low - 1]:
        low -= 1
    high = end
    while high < len(breaks) and high - end < LINE_REACH and not breaks[high - 1]:
        high += 1
    return low, high


def _label(excerpt: Excerpt) -> str:
    where = f", page {excerpt.citation.page}" if excerpt.citation.page else ""
    return f"[{excerpt.citation.paths[0]}{where}]\n"


def build_prompt(runtime: Runtime, excerpts: list[Excerpt], question: str) -> list[int]:
    """Prompt token ids: the chat template around the excerpts (a label, then their own stored tokens)
    and the question; sets each excerpt's place in the prompt."""
    tokenizer = runtime.tokenizer
    rendered = tokenizer.render_chat([{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": f"Excerpts from my files:\n\n{PLACEHOLDER}"
                                                                  f"Question: {question}"}])
    before, after = rendered.split(PLACEHOLDER)
    ids = tokenizer.encode(before)
    for excerpt in excerpts:
        ids += tokenizer.encode(_label(excerpt))
        excerpt.prompt_start = len(ids)
        ids += excerpt.ids
        excerpt.prompt_end = len(ids)
        ids += tokenizer.encode("\n\n")
    return ids + tokenizer.encode(after)


def fit_excerpts(runtime: Runtime, excerpts: list[Excerpt], question: str, max_prompt_tokens: int) -> list[Excerpt]:
    """The excerpts, the last ones dropped until the whole prompt fits `max_prompt_tokens`.

    Excerpts are chosen by a token budget, but each grows to whole lines and gets a label, so the prompt
    can exceed the budget a little; this bounds it for certain, whatever the excerpts and the question."""
    kept = list(excerpts)
    while kept and len(build_prompt(runtime, kept, question)) > max_prompt_tokens:
        kept.pop()
    return kept


@torch.inference_mode()
def attention_on_excerpts(runtime: Runtime, prompt: list[int], answer: list[int], excerpts: list[Excerpt]) -> float:
    """Sets each excerpt's share of the answer's attention; returns the corpus' share of it overall.

    Counted over every layer and head, leaving out the first tokens (attention sinks, which soak up
    weight whatever the content) and the answer's own tokens."""
    model = runtime.model
    tokens = torch.tensor([prompt + answer], device=runtime.device)
    recorder = AttentionMass(*model.rope(tokens.shape[1]), from_row=len(prompt))
    model.hidden_states(tokens, recorder)
    mass = recorder.mass[:len(prompt)].cpu()
    mass[:SINK_TOKENS] = 0
    mass /= float(mass.sum()) or 1.0
    for excerpt in excerpts:
        excerpt.mass = float(mass[excerpt.prompt_start:excerpt.prompt_end].sum())
        excerpt.line_mass = _mass_by_line(excerpt.breaks, mass[excerpt.prompt_start:excerpt.prompt_end].tolist())
    return sum(excerpt.mass for excerpt in excerpts)


def _mass_by_line(breaks: list[int], mass: list[float]) -> list[float]:
    """Attention mass per line: a token counts for the line it starts on."""
    lines = [0.0]
    for newlines, weight in zip(breaks, mass):
        lines[-1] += weight
        lines.extend([0.0] * newlines)
    return lines


def citation_record(excerpt: Excerpt, text: str) -> dict:
    span = excerpt.citation
    first, last = excerpt.cited_lines()
    lines = text.split("\n")[first - excerpt.line_start:last - excerpt.line_start + 1]
    return {"path": span.paths[0], "paths": list(span.paths), "page": span.page, "start_line": first,
            "end_line": last, "text": "\n".join(lines), "context": text,
            "context_lines": [excerpt.line_start, excerpt.line_start + text.count("\n")],
            "score": round(excerpt.mass, 4)}


SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


def _sentence_key(text: str) -> str:
    """A sentence as compared for repeats: spaces collapsed, list numbers and bullets dropped, lower case."""
    return " ".join(text.split()).lstrip("0123456789.)-* ").lower()


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
    """Where to cut `text` when its last finished sentence (or line) says again what an earlier one said:
    the end of the last sentence before the repeat. None when nothing repeats. Greedy decoding of a small
    model loops ("She is the one who made the design of the project." over and over), and the loop adds
    nothing. List numbers and bullets are not sentences of their own."""
    return _first_repeat(_finished_sentences(text)[0])


def _first_repeat(sentences: list[tuple[str, int]]) -> int | None:
    """`repeat_cut` over sentences already split by `_finished_sentences`."""
    seen: set[str] = set()
    kept_end = 0
    for key, end in sentences:
        if key in seen:
            return kept_end
        seen.add(key)
        kept_end = end
    return None


def without_repeats(pieces: Iterator[str]) -> Iterator[str]:
    """The pieces of a streaming answer as they may be shown, ending before the first repeated sentence.
    Joined, they are the kept answer: an unfinished sentence that so far reads like the start of an earlier
    one is held back, since it may be a repeat that will be cut, and text already printed on a terminal
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
        ready = rest if any(key.startswith(tail) for key, _ in sentences) else len(text)
        if ready > shown:
            yield text[shown:ready]
            shown = ready
    if len(text) > shown:
        yield text[shown:]


def answer_stream(runtime: Runtime, excerpts: list[Excerpt], question: str, max_new_tokens: int,
                  started: float, temperature: float = 0.0) -> Iterator[tuple[str, object]]:
    """Events: ("token", text) as the answer streams, then ("answer", Answer)."""
    prompt = build_prompt(runtime, excerpts, question)
    result = Answer(excerpts=excerpts)
    produced: list[int] = []

    def counted():
        for token in generate_tokens(runtime.model, prompt, max_new_tokens, runtime.tokenizer.stop_ids, temperature):
            produced.append(token)
            yield token

    def timed():
        for number, piece in enumerate(stream_text(runtime.tokenizer, counted())):
            if number == 0:
                result.timings["first_token_s"] = time.perf_counter() - started
            yield piece

    pieces = []
    for piece in without_repeats(timed()):
        pieces.append(piece)
        yield "token", piece
    result.text = "".join(pieces)
    if produced and excerpts:
        result.corpus_share = attention_on_excerpts(runtime, prompt, produced, excerpts)
    result.grounded = result.corpus_share >= GROUNDED_SHARE
    ranked = sorted(excerpts, key=lambda excerpt: -excerpt.mass)
    result.citations = [citation_record(e, runtime.tokenizer.decode(prompt[e.prompt_start:e.prompt_end]))
                        for e in ranked if e.mass >= CITED_SHARE]
    result.timings["total_s"] = time.perf_counter() - started
    yield "answer", result
