"""The excerpts an answer reads: the parts of live spans the retrieved blocks cover, re-read from their
stored tokens, widened to whole lines and joined where they continue each other."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.runtime import Runtime
from ingest import catalog
from ingest.sequence import read_tokens
from ingest.store import Store

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
    quote_start: int = 0  # where the prompt quotes this excerpt's evidence sentence again, if it does
    quote_end: int = 0
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


def excerpts_for_blocks(runtime: Runtime, store: Store, blocks: list[tuple[int, float]], block_tokens: int,
                        max_tokens: int) -> list[Excerpt]:
    """The parts of live spans that the best blocks cover (best block first, until `max_tokens`), in corpus
    order, parts that continue each other joined. Only the retrieved blocks go into the prompt, not whole
    spans: the small model reads a short context far better (full attention finds a passkey in 100% of
    0.5k-token haystacks, 75% at 1k)."""
    pieces: dict[int, list] = {}
    used = 0
    for block, _score in blocks:
        block_start, block_end = block * block_tokens, (block + 1) * block_tokens
        for span in catalog.citations(store.db, block_start, block_end):
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
        tokens = read_tokens(store.tokens_path, span.token_start, span.token_end).tolist()
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
