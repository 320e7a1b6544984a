"""An answer's evidence: the sentence of the retrieved excerpts that best matches the question, quoted
verbatim from the store with its path and lines, and how much of the question it (with its neighbours) covers.

The 135M reader often turns a good passage into a wrong answer; the sentence it should have read is what a
person can check. Chosen by lexical overlap: BM25 of the question's stemmed content words against each
sentence, with the document frequencies of the candidate sentences themselves. On the bench/qa train split it
picked a gold sentence whenever any candidate was gold (bench/results/qa_evidence_train.json); MiniLM cosine
did worse (bench/results/qa_signals_train.json), and needs a second model.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import snowballstemmer

from engine.answer.excerpts import Excerpt
from engine.answer.retrieval import content_words

# A sentence ends at a full stop, a blank line, or where a list item begins: each item of a list is its own
# statement ("- Project lead: Marta Kowalczyk"), not a clause of one long sentence with its neighbours. The
# stop of a title or a common abbreviation, or after an initial, ends nothing: "(Dr. Haddad)" cut in two
# quoted half an appointment as the evidence.
ABBREVIATIONS = ("Dr", "Mr", "Mrs", "Ms", "Prof", "St", "Jr", "Sr", "No", "Fig", "vs", "cf", "e.g", "i.e", "[A-Z]")
LIST_ITEM = re.compile(r"[ \t]*(?:[-*+]|\d+[.)])[ \t]")
# A heading is no evidence either, however many words it has: "Why not just use namedtuple?" over the section
# that answers it only restates the question. Headings as Markdown and reStructuredText write them: a line
# starting with "#", or a line underlined with a run of one punctuation character. The underline also ends the
# title's sentence: reStructuredText lets a paragraph follow it with no blank line between.
UNDERLINE = "(?:" + "|".join(re.escape(mark) + "{3,}" for mark in "=-~^\"'`#*+") + r")[ \t]*"
SENTENCE_BREAK = re.compile(r"\n" + UNDERLINE + r"(?:\n|$)|(?<=[.!?])"
                            + "".join(rf"(?<!\b{word}\.)" for word in ABBREVIATIONS)
                            + r"\s+|\n\s*\n|\n(?=" + LIST_ITEM.pattern + ")")
MIN_WORDS = 3  # a stray line is no evidence
HEADING_ATX = re.compile(r"#{1,6}[ \t]")
UNDERLINED_NEXT = re.compile(r"[ \t]*\n" + UNDERLINE + r"(?:\n|$)")
FOLLOWING_LINES = 12  # how far past the chosen sentence its end and the sentence after it are looked for
BM25_K1, BM25_B = 1.2, 0.75
_STEMMER = snowballstemmer.stemmer("english")


@dataclass(frozen=True)
class Evidence:
    """A sentence as the store holds it (verbatim, ends trimmed), with where it is."""

    path: str
    page: int | None
    start_line: int
    end_line: int
    text: str

    def as_dict(self) -> dict:
        return asdict(self)

    def quoted_in(self, text: str) -> bool:
        """Whether `text` holds this sentence word for word, spacing aside: held to its quotation, the reader
        often answers with the evidence itself, which then need not be printed a second time under it."""
        return " ".join(self.text.split()) in " ".join(text.split())


def stems(text: str) -> list[str]:
    """The stems of the content words of `text`, in order (numbers count: a year is content)."""
    return [_STEMMER.stemWord(word) for word in content_words(text)]


def sentences(excerpt: Excerpt, text: str) -> list[Evidence]:
    """The sentences (or paragraphs without a full stop) of an excerpt whose text is `text`, headings left
    out, each with its first and last line; lines are counted from the excerpt's first line."""
    found, begin = [], 0
    for boundary in [*SENTENCE_BREAK.finditer(text), None]:
        end = boundary.start() if boundary else len(text)
        piece = text[begin:end]
        body = piece.strip()
        if _words(body) >= MIN_WORDS and not _heading(body, text, end):
            first = excerpt.line_start + text.count("\n", 0, begin + len(piece) - len(piece.lstrip()))
            found.append(Evidence(excerpt.citation.paths[0], excerpt.citation.page, first,
                                  first + body.count("\n"), body))
        begin = boundary.end() if boundary else len(text)
    return found


def idf(count: int, holding: int) -> float:
    """BM25's inverse document frequency of a stem `holding` of `count` candidates hold."""
    return math.log(1 + (count - holding + 0.5) / (holding + 0.5))


def bm25(question: set[str], candidates: list[list[str]], frequency: Counter) -> list[float]:
    """BM25 of the question's stems against each candidate (its stems), the candidates being the collection;
    `frequency`: how many candidates hold each stem."""
    count = len(candidates)
    average = sum(map(len, candidates)) / count or 1.0
    scores = []
    for candidate in candidates:
        words, total = Counter(candidate), 0.0
        for stem in question & words.keys():
            tf = words[stem]
            total += (idf(count, frequency[stem]) * tf * (BM25_K1 + 1)
                      / (tf + BM25_K1 * (1 - BM25_B + BM25_B * len(candidate) / average)))
        scores.append(total)
    return scores


def _words(text: str) -> int:
    return len(re.findall(r"[^\W\d_]{2,}", text))


def _heading(piece: str, text: str, end: int) -> bool:
    """Whether `piece`, the text before `end`, is a heading: a "#" line, or a title its underline follows (the
    underline ends the title's sentence)."""
    return bool(HEADING_ATX.match(piece) or UNDERLINED_NEXT.match(text, end))


Lines = Callable[[str, int | None, int, int], tuple[int, list[str]]]  # (name, page, first, last) -> (first, lines)


def completed(evidence: Evidence, lines: Lines) -> Evidence:
    """The evidence sentence whole, as its document has it, and the sentence after it when the paragraph
    goes on (`lines` reads the document's lines).

    An excerpt ends where its retrieved block does, often in mid-sentence ("… must use", the rest unread).
    And the sentence that matches a question's words often sets up what the answer is, the next one saying it
    ("JSON was initially considered but quickly rejected. While great as …, the syntax does not lend itself
    to easy editing"): on the bench/qa train split, the acceptable answer stood in the chosen sentence for
    28 of 36 fact and why/how questions, in the sentence and the next one for 32. A sentence that asks ("So
    why not use a concurrent collector?") is answered by what follows it, also across a paragraph's end."""
    first, held = lines(evidence.path, evidence.page, evidence.start_line, evidence.end_line + FOLLOWING_LINES)
    text = "\n".join(held)
    begin = text.find(evidence.text) if first == evidence.start_line else -1
    if begin < 0:
        return evidence
    breaks = SENTENCE_BREAK.finditer(text, begin)
    stop = next(breaks, None)
    end = stop.start() if stop else len(text)
    asks = stop is not None and text[stop.start() - 1] == "?"
    if stop is not None and text[stop.start() - 1] in ".!?" and (asks or not re.search(r"\n\s*\n", stop.group(0))):
        after = next(breaks, None)
        ends = after.start() if after else len(text)
        following = text[stop.end():ends]
        if _words(following) >= MIN_WORDS and not LIST_ITEM.match(following) and not _heading(following, text, ends):
            end = stop.end() + len(following.rstrip())
    body = text[begin:end].strip()
    return replace(evidence, end_line=evidence.start_line + body.count("\n"), text=body)


def section_title(excerpt: Excerpt) -> str:
    """The title of the section the excerpt's span lies in (the last of its heading path), or for code the
    definition it lies in; "" when none. What a section is about is context a sentence under it need not
    repeat: under "Why not use a concurrent collector?", "It would make every program slower." answers the
    question with none of its words. The title is never evidence itself (`sentences`), but it counts towards
    whether the evidence covers what was asked."""
    return (excerpt.citation.heading or "").rsplit(" > ", 1)[-1]


@dataclass
class Choice:
    """The evidence chosen, which excerpt holds it, its BM25 score (0 when no sentence shares a word with the
    question), and `support`: the IDF-weighted share of the question's content stems that the evidence sentence,
    its neighbours in the excerpt and the title of its section hold (a stem no candidate holds weighs most).
    Unlike the BM25 score, `support` does not grow with the number of candidates, so it means the same in a
    small store."""

    evidence: list[Evidence]
    excerpt: int | None
    score: float
    support: float


def choose_evidence(excerpts: list[Excerpt], texts: list[str], question: str, lines: Lines | None = None) -> Choice:
    """The best-matching sentence among the excerpts (whose texts are `texts`); given `lines`, which reads a
    document's lines, completed from its document (`completed`). The score and support are the chosen sentence's
    as the excerpts hold it."""
    wanted = set(stems(question))
    pool = [(number, sentence) for number, (excerpt, text) in enumerate(zip(excerpts, texts))
            for sentence in sentences(excerpt, text)]
    candidates = [stems(sentence.text) for _, sentence in pool]
    if not candidates:
        return Choice([], None, 0.0, 0.0)
    frequency = Counter(stem for candidate in candidates for stem in set(candidate))
    scores = bm25(wanted, candidates, frequency)
    if max(scores) <= 0:
        return Choice([], None, 0.0, 0.0)
    best = max(range(len(scores)), key=scores.__getitem__)
    number = pool[best][0]
    held = set().union(*(candidates[i] for i in (best - 1, best, best + 1) if 0 <= i < len(pool) and pool[i][0] == number),
                       stems(section_title(excerpts[number])))
    weight = {stem: idf(len(pool), frequency[stem]) for stem in wanted}
    support = sum(weight[stem] for stem in wanted & held) / sum(weight.values())
    chosen = pool[best][1] if lines is None else completed(pool[best][1], lines)
    return Choice([chosen], number, scores[best], support)
