"""Answering from retrieved blocks: the spans they fall in are re-read from their tokens beside the
question, the model answers (streamed), and one more pass measures where the answer's tokens looked.

Citations are ranked by that attention mass, not by retrieval score: a retrieved span the answer
ignored is not cited. When the answer put little of its attention on the corpus at all, the result
says so (`grounded` false) instead of attaching whatever retrieval returned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from engine.attention import AttentionMass
from engine.generate import greedy_tokens, stream_text
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


@dataclass
class Excerpt:
    """One span placed in the prompt: where it is in the prompt, what it cites, where the answer looked in it."""

    citation: catalog.Citation
    prompt_start: int = 0
    prompt_end: int = 0
    mass: float = 0.0
    line_mass: list[float] = field(default_factory=list)  # per line of the span, from its first line

    def cited_lines(self) -> tuple[int, int]:
        """The lines the answer looked at most: the heaviest line, widened over neighbours that carry at
        least a third of its weight, at most MAX_CITED_LINES; the whole span when nothing was measured."""
        if not self.line_mass or max(self.line_mass) <= 0:
            return self.citation.line_start, self.citation.line_end
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
        return self.citation.line_start + low, self.citation.line_start + high


@dataclass
class Answer:
    text: str = ""
    citations: list[dict] = field(default_factory=list)
    grounded: bool = False
    corpus_share: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def spans_for_blocks(db, blocks: list[tuple[int, float]], block_tokens: int, max_tokens: int) -> list[catalog.Citation]:
    """Live spans under the best blocks, best block first, until `max_tokens`; returned in corpus order."""
    chosen: dict[int, catalog.Citation] = {}
    used = 0
    for block, _score in blocks:
        for span in catalog.citations(db, block * block_tokens, (block + 1) * block_tokens):
            if span.span_id in chosen:
                continue
            size = span.token_end - span.token_start
            if used + size > max_tokens:
                continue
            chosen[span.span_id] = span
            used += size
    return sorted(chosen.values(), key=lambda span: span.token_start)


def _label(span: catalog.Citation) -> str:
    where = f"page {span.page}, " if span.page else ""
    return f"[{span.paths[0]}, {where}lines {span.line_start}-{span.line_end}]\n"


def build_prompt(runtime: Runtime, root: Path, spans: list[catalog.Citation], question: str) -> tuple[list[int], list[Excerpt]]:
    """Prompt token ids: the chat template around excerpts (label + the span's own stored tokens) and the question."""
    tokenizer = runtime.tokenizer
    rendered = tokenizer.render_chat([{"role": "system", "content": SYSTEM},
                                      {"role": "user", "content": f"Excerpts from my files:\n\n{PLACEHOLDER}"
                                                                  f"Question: {question}"}])
    before, after = rendered.split(PLACEHOLDER)
    ids = tokenizer.encode(before)
    excerpts = []
    for span in spans:
        ids += tokenizer.encode(_label(span))
        excerpt = Excerpt(span, prompt_start=len(ids))
        ids += read_tokens(root / "tokens.u32", span.token_start, span.token_end).astype(np.int64).tolist()
        excerpt.prompt_end = len(ids)
        ids += tokenizer.encode("\n\n")
        excerpts.append(excerpt)
    return ids + tokenizer.encode(after), excerpts


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
        excerpt.line_mass = _mass_by_line(runtime, prompt[excerpt.prompt_start:excerpt.prompt_end],
                                          mass[excerpt.prompt_start:excerpt.prompt_end].tolist())
    return sum(excerpt.mass for excerpt in excerpts)


def _mass_by_line(runtime: Runtime, ids: list[int], mass: list[float]) -> list[float]:
    """Attention mass per line of a span: a token counts for the line it starts on (newlines survive
    byte-level decoding of single tokens, so counting them token by token is exact)."""
    lines = [0.0]
    for token, weight in zip(ids, mass):
        lines[-1] += weight
        lines.extend([0.0] * runtime.tokenizer.decode([token]).count("\n"))
    return lines


def citation_record(excerpt: Excerpt, text: str) -> dict:
    span = excerpt.citation
    first, last = excerpt.cited_lines()
    lines = text.split("\n")[first - span.line_start:last - span.line_start + 1]
    return {"path": span.paths[0], "paths": list(span.paths), "page": span.page, "start_line": first,
            "end_line": last, "text": "\n".join(lines), "context": text,
            "context_lines": [span.line_start, span.line_end], "score": round(excerpt.mass, 4)}


def answer_stream(runtime: Runtime, root: Path, spans: list[catalog.Citation], question: str,
                  max_new_tokens: int, started: float) -> Iterator[tuple[str, object]]:
    """Events: ("token", text) as the answer streams, then ("answer", Answer)."""
    prompt, excerpts = build_prompt(runtime, root, spans, question)
    result = Answer()
    produced: list[int] = []

    def counted():
        for token in greedy_tokens(runtime.model, prompt, max_new_tokens, runtime.tokenizer.stop_ids):
            produced.append(token)
            yield token

    pieces = []
    for piece in stream_text(runtime.tokenizer, counted()):
        if not pieces:
            result.timings["first_token_s"] = time.perf_counter() - started
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
