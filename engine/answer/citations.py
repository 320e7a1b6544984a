"""What an answer cites: the excerpts it put its attention on, measured by one more pass of the model, kept
only where they support the answer.

Citations are ranked by that attention mass, not by retrieval score: a retrieved span the answer
ignored is not cited. Attention alone does not say the answer drew on a passage (the small model spreads
it over every excerpt it reads), so a citation is kept only when its passage holds the evidence sentence or
the words the answer adds to the question (`supporting`). When the answer put little of its attention on
the corpus at all, the result says so (`grounded` false) instead of attaching whatever retrieval returned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from engine.answer.evidence import Evidence, Lines, stems
from engine.answer.excerpts import MAX_CITED_LINES, Excerpt
from engine.model.attention import AttentionMass
from engine.runtime import Runtime

SINK_TOKENS = 4
GROUNDED_SHARE = 0.2
CITED_SHARE = 0.02  # an excerpt with less of the answer's attention than this is not cited
# A passage supports an answer when its marked lines hold at least this share of the content words the answer
# adds to the question: a majority, so that one common word shared by chance ("module", "version") does not
# make a passage a source, while a long answer that also says things of its own can still cite where it drew.
SUPPORT_SHARE = 0.5


@dataclass
class Citation:
    """One cited passage: the document (`path`, and every path with the same content), page and lines the
    answer looked at, their text, the whole excerpt around them, and its share of the answer's attention."""

    path: str
    paths: list[str]
    page: int | None
    start_line: int
    end_line: int
    text: str
    context: str
    context_lines: list[int]  # first and last line of `context`
    score: float

    def as_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def attention_on_excerpts(runtime: Runtime, prompt: list[int], answer: list[int], excerpts: list[Excerpt]) -> float:
    """Sets each excerpt's share of the answer's attention; returns the corpus' share of it overall.

    Counted over every layer and head, leaving out the first tokens (attention sinks, which soak up
    weight whatever the content) and the answer's own tokens. An excerpt's share includes what went to its
    evidence sentence quoted under the question."""
    model = runtime.model
    tokens = torch.tensor([prompt + answer], device=runtime.device)
    recorder = AttentionMass(*model.rope(tokens.shape[1]), from_row=len(prompt))
    model.hidden_states(tokens, recorder)
    mass = recorder.mass[:len(prompt)].cpu()
    mass[:SINK_TOKENS] = 0
    mass /= float(mass.sum()) or 1.0
    for excerpt in excerpts:
        excerpt.mass = float(mass[excerpt.prompt_start:excerpt.prompt_end].sum()
                             + mass[excerpt.quote_start:excerpt.quote_end].sum())
        excerpt.line_mass = _mass_by_line(excerpt.breaks, mass[excerpt.prompt_start:excerpt.prompt_end].tolist())
    return sum(excerpt.mass for excerpt in excerpts)


def _mass_by_line(breaks: list[int], mass: list[float]) -> list[float]:
    """Attention mass per line: a token counts for the line it starts on."""
    lines = [0.0]
    for newlines, weight in zip(breaks, mass):
        lines[-1] += weight
        lines.extend([0.0] * newlines)
    return lines


def citation_record(excerpt: Excerpt, text: str) -> Citation:
    """The citation of `excerpt`, whose text (as the prompt held it) is `text`."""
    span = excerpt.citation
    first, last = excerpt.cited_lines()
    lines = text.split("\n")[first - excerpt.line_start:last - excerpt.line_start + 1]
    return Citation(path=span.paths[0], paths=list(span.paths), page=span.page, start_line=first, end_line=last,
                    text="\n".join(lines), context=text,
                    context_lines=[excerpt.line_start, excerpt.line_start + text.count("\n")],
                    score=round(excerpt.mass, 4))


def pinned_to_evidence(citations: list[Citation], evidence: Evidence | None, lines: Lines | None = None) -> list[Citation]:
    """The citations, the one whose passage holds the start of the evidence sentence first and marking that
    sentence's lines; where the evidence runs on past the passage (it is completed from its document), the
    passage is widened to its end by `lines`, which reads a document's lines.

    The heaviest lines of the answer's attention sat a line or two off the answer: on the bench/qa train split
    the first citation overlapped the gold lines for 24% of fact questions, the evidence sentence for 90%."""
    for number, citation in enumerate(citations):
        first, last = citation.context_lines
        if (evidence is not None and citation.path == evidence.path and citation.page == evidence.page
                and first <= evidence.start_line <= last):
            context = citation.context.split("\n")
            if evidence.end_line > last and lines is not None:
                context += lines(citation.path, citation.page, last + 1, evidence.end_line)[1]
                last = first + len(context) - 1
            end = min(evidence.end_line, last)
            pinned = replace(citation, start_line=evidence.start_line, end_line=end,
                             text="\n".join(context[evidence.start_line - first:end - first + 1]),
                             context="\n".join(context), context_lines=[first, last])
            return [pinned, *citations[:number], *citations[number + 1:]]
    return citations


def holds_evidence(citation: Citation, evidence: Evidence | None) -> bool:
    """Whether the citation's marked lines are the evidence sentence's (as `pinned_to_evidence` marks them)."""
    return (evidence is not None and citation.path == evidence.path and citation.page == evidence.page
            and citation.start_line == evidence.start_line)


def added_words(answer: str, question: str) -> set[str]:
    """The stems of the content words (names and numbers included) the answer adds to the question. The
    question's own words are left out: retrieval found every passage by them, so that a passage holds them
    says nothing about whether the answer drew on it."""
    return set(stems(answer)) - set(stems(question))


def supporting_lines(citation: Citation, wanted: set[str]) -> tuple[int, int] | None:
    """The lines of the citation's passage that hold at least SUPPORT_SHARE of `wanted`: its marked lines when
    they do, else the shortest run of at most MAX_CITED_LINES lines holding the most of them (the answer's
    attention often sat a line or two off what it repeated); None when no run holds enough."""
    if not wanted:
        return None
    first = citation.context_lines[0]
    lines = [set(stems(line)) & wanted for line in citation.context.split("\n")]

    def share(low: int, high: int) -> float:
        return len(set().union(*lines[low - first:high - first + 1])) / len(wanted)

    if share(citation.start_line, citation.end_line) >= SUPPORT_SHARE:
        return citation.start_line, citation.end_line
    runs = [(low, low + length - 1) for length in range(1, MAX_CITED_LINES + 1)
            for low in range(first, first + len(lines) - length + 1)]
    best = max(runs, key=lambda run: (share(*run), run[0] - run[1]))  # the most words, then the fewest lines
    return best if share(*best) >= SUPPORT_SHARE else None


def supporting(citations: list[Citation], evidence: Evidence | None, answer: str, question: str) -> list[Citation]:
    """The citations whose passage supports the answer, in their order: the one marking the evidence sentence,
    and those holding at least SUPPORT_SHARE of the words the answer adds to the question (marked where they
    hold them). The others the answer did not draw on, whatever attention it gave them: they are dropped."""
    wanted = added_words(answer, question)
    kept = []
    for citation in citations:
        if holds_evidence(citation, evidence):
            kept.append(citation)
            continue
        lines = supporting_lines(citation, wanted)
        if lines is not None:
            low, high = lines
            first = citation.context_lines[0]
            text = "\n".join(citation.context.split("\n")[low - first:high - first + 1])
            kept.append(replace(citation, start_line=low, end_line=high, text=text))
    return kept
