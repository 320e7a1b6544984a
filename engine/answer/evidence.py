"""An answer's evidence: the sentence of the retrieved excerpts that best matches the question, quoted
verbatim from the store with its path and lines, and how much of the question it (with its neighbours) covers.

The 135M reader often turns a good passage into a wrong answer; the sentence it should have read is what a
person can check. Chosen by lexical overlap: BM25 of the question's stemmed content words against each
sentence read with the title of its section, with the document frequencies of the candidate sentences
themselves. On the bench/qa train split it
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
from ingest.extract import kind_of

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
FOLLOWING_LINES = 12  # how far past the chosen sentence its end and the sentences after it are looked for
FURTHER_SENTENCES = 2  # how many sentences past the next one the evidence may run on for the rest of the question
# A PDF page or a plain text file marks no title ("2. Error codes", "Nordvarm HX-9 Heat Pump"): read as a
# sentence, a title beats the line under it that answers. Such a title is known by its layout: a short line that
# ends without punctuation, starts at the margin where a sentence, another title or the text ended, and runs
# straight into a line that begins with a capital or a digit. Text with markup of its own is left to its markup.
UNMARKED_KINDS = ("pdf", "text")
TITLE_MAX_WORDS = 8
TITLE_REACH = 40  # lines above an excerpt searched for the title it stands under
WHY = re.compile(r"\bwhy\b", re.IGNORECASE)
BM25_K1, BM25_B = 1.2, 0.75
_STEMMER = snowballstemmer.stemmer("english")
Lines = Callable[[str, int | None, int, int], tuple[int, list[str]]]  # (name, page, first, last) -> (first, lines)


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


@dataclass(frozen=True)
class Sentence:
    """A candidate for evidence, and the title of the section it stands in ("" when none is known)."""

    evidence: Evidence
    title: str


def stems(text: str) -> list[str]:
    """The stems of the content words of `text`, in order (numbers count: a year is content)."""
    return [_STEMMER.stemWord(word) for word in content_words(text)]


def sentences(excerpt: Excerpt, text: str, lines: Lines | None = None) -> list[Sentence]:
    """The sentences (or paragraphs without a full stop) of an excerpt whose text is `text`, headings left
    out, each with its first and last line (lines are counted from the excerpt's first line) and the title it
    stands under: the last heading before it in the excerpt, else the one in force where the excerpt starts
    (`title_above`, which reads the document's `lines` for text without markup)."""
    before, title = title_above(excerpt, lines)
    titles = layout_titles(text, before) if unmarked(excerpt.citation.paths[0]) else set()
    found, begin = [], 0
    for boundary_start, boundary_end in [*_breaks(text, titles), (len(text), len(text))]:
        piece = text[begin:boundary_start]
        body = piece.strip()
        opening = begin + len(piece) - len(piece.lstrip())
        if opening in titles or (body and _heading(body, text, boundary_start)):
            title = body.lstrip("#").strip()
        elif _words(body) >= MIN_WORDS:
            first = excerpt.line_start + text.count("\n", 0, opening)
            found.append(Sentence(Evidence(excerpt.citation.paths[0], excerpt.citation.page, first,
                                           first + body.count("\n"), body), title))
        begin = boundary_end
    return found


def unmarked(path: str) -> bool:
    """Whether the document called `path` is of a kind that marks no headings (a PDF, plain text)."""
    return kind_of(path)[0] in UNMARKED_KINDS


def layout_titles(text: str, before: str | None = None) -> set[int]:
    """Where the lines of `text` that stand as titles by their layout begin (see UNMARKED_KINDS); `before` is
    the line above the text (None: the text begins the page or the file)."""
    lines = text.split("\n")
    found, at, above, above_title = set(), 0, before, False
    for number, line in enumerate(lines):
        following = lines[number + 1] if number + 1 < len(lines) else ""
        body = line.strip()
        ended = above is None or _words(above) == 0 or above_title or above.rstrip()[-1] in ".!?:"
        above_title = (ended and bool(body) and not line[0].isspace() and body[-1].isalnum() and ": " not in body
                       and body[0] not in "-*+\u2022" and 0 < _words(body) and len(body.split()) <= TITLE_MAX_WORDS
                       and (following[:1].isupper() or following[:1].isdigit())
                       and not (LIST_ITEM.match(line) and LIST_ITEM.match(following)))
        if above_title:
            found.add(at)
        at += len(line) + 1
        above = line
    return found


def title_above(excerpt: Excerpt, lines: Lines | None) -> tuple[str | None, str]:
    """(The line above the excerpt, the title in force where it starts.) With markup, the title is the last of
    the span's heading path (for code, the definition it lies in); without, the nearest line above the excerpt
    that stands as a title by its layout, looked for in the document when `lines` reads it."""
    if not unmarked(excerpt.citation.paths[0]):
        return None, section_title(excerpt)
    if lines is None or excerpt.line_start <= 1:
        return None, ""
    first, held = lines(excerpt.citation.paths[0], excerpt.citation.page, max(1, excerpt.line_start - TITLE_REACH),
                        excerpt.line_start)
    if first + len(held) - 1 != excerpt.line_start or len(held) < 2:
        return None, ""
    text = "\n".join(held)
    starts = sorted(layout_titles(text, None if first == 1 else ""))
    above = [at for at in starts if at < len(text) - len(held[-1])]
    title = _line_at(text, above[-1]).strip() if above else ""
    return held[-2], title


def _breaks(text: str, titles: set[int]) -> list[tuple[int, int]]:
    """Where the sentences of `text` break: SENTENCE_BREAK, and around each line that stands as a title."""
    lines = [(at, at + len(_line_at(text, at))) for at in titles]  # [start, end)
    found = [match.span() for match in SENTENCE_BREAK.finditer(text)
             if not any(start <= match.start() < end for start, end in lines)]
    for start, end in lines:
        found += [(start - 1, start)] if start else []
        found += [(end, end + 1)] if end < len(text) else []
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


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


def completed(evidence: Evidence, lines: Lines, wanted: frozenset[str] = frozenset(), reason: bool = False) -> Evidence:
    """The evidence sentence whole, as its document has it, and the sentence after it when the paragraph
    goes on, and on to the next two when one of them holds a stem of `wanted` (the question's) that the
    evidence lacks (`lines` reads the document's lines).

    An excerpt ends where its retrieved block does, often in mid-sentence ("… must use", the rest unread).
    And the sentence that matches a question's words often sets up what the answer is, the next one saying it
    ("JSON was initially considered but quickly rejected. While great as …, the syntax does not lend itself
    to easy editing"): on the bench/qa train split, the acceptable answer stood in the chosen sentence for
    28 of 36 fact and why/how questions, in the sentence and the next one for 32. A sentence that asks ("So
    why not use a concurrent collector?") is answered by what follows it, also across a paragraph's end. Where
    the question names what the sentence before did not ("What did Dr. Okafor prescribe?" over "Saw Dr. Okafor
    about the knee. It is a mild strain. She prescribed …"), the sentence naming it is the answer.

    A question asking why (`reason`) matches the sentences that state what is to be explained; the reason
    often opens the next paragraph ("… a semantics-version key was initially proposed. ¶ In the end, though,
    it was decided that this was a premature optimization."): for one, the evidence runs on past one
    paragraph's end, to the first sentence after it, unless that is code (indented deeper, or fenced) or
    announces some (ends with a colon), which is no reason and no quotation."""
    first, held = lines(evidence.path, evidence.page, evidence.start_line, evidence.end_line + FOLLOWING_LINES)
    text = "\n".join(held)
    begin = text.find(evidence.text) if first == evidence.start_line else -1
    if begin < 0:
        return evidence
    titles = layout_titles(text) if unmarked(evidence.path) else set()
    breaks = iter([(start, end) for start, end in _breaks(text, titles) if start >= begin + len(evidence.text)]
                  + [(len(text), len(text))])
    stop = next(breaks)
    end = stop[0]
    have = set(stems(text[begin:end]))
    crossings = int(reason)  # paragraph ends the evidence may still cross for a reason
    for taken in range(1 + FURTHER_SENTENCES):
        if stop[0] == len(text) or text[stop[0] - 1] not in ".!?":
            break
        crossed = bool(re.search(r"\n\s*\n", text[stop[0]:stop[1]]))
        asks = text[stop[0] - 1] == "?" and end == stop[0]  # the evidence so far ends with a question
        if crossed and not (asks or crossings):
            break
        after = next(breaks)
        following = text[stop[1]:after[0]]
        if (_words(following) < MIN_WORDS or stop[1] in titles or LIST_ITEM.match(following)
                or crossed and (_code(text, stop[1], stop[0] - 1) or following.rstrip().endswith(":"))
                or _heading(following, text, after[0])):
            break
        new = set(stems(following))
        if not taken or crossed or (wanted - have) & new:
            end = stop[1] + len(following.rstrip())
        if crossed and not asks:
            crossings -= 1
        have |= new
        stop = after
    body = text[begin:end].strip()
    return replace(evidence, end_line=evidence.start_line + body.count("\n"), text=body)


def asks_why(question: str) -> bool:
    """Whether `question` asks for a reason ("Why …?", "… and why was it dropped?")."""
    return WHY.search(question) is not None


def _code(text: str, start: int, before: int) -> bool:
    """Whether the paragraph of `text` starting at `start` is code: fenced, or indented deeper than the line
    that ends at `before` (a literal block of reStructuredText, an indented block of Markdown)."""
    line = _line_at(text, start)
    return line.lstrip().startswith(("```", "~~~")) or _indent(line) > _indent(_line_at(text, before))


def _line_at(text: str, at: int) -> str:
    """The line of `text` that position `at` lies in, without its line break."""
    end = text.find("\n", at)
    return text[text.rfind("\n", 0, at) + 1:len(text) if end < 0 else end]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def section_title(excerpt: Excerpt) -> str:
    """The title of the section the excerpt's span lies in (the last of its heading path), or for code the
    definition it lies in; "" when none. What a section is about is context a sentence under it need not
    repeat: under "Why not use a concurrent collector?", "It would make every program slower." answers the
    question with none of its words. The title is never evidence itself (`sentences`), but it counts towards
    which sentence is chosen and whether the evidence covers what was asked."""
    return (excerpt.citation.heading or "").rsplit(" > ", 1)[-1]


def name_title(path: str) -> str:
    """A file's name as words ("notes/heat-pump-manual.pdf": "heat pump manual"). People name a note by what it
    is about, which its sentences need not repeat: like a section's title, the name counts towards whether the
    evidence covers what was asked (not towards which sentence is chosen: every sentence of the file shares it,
    so it would only favour the file's shortest)."""
    return re.sub(r"[\W_]+", " ", path.rsplit("/", 1)[-1].rsplit(".", 1)[0])


@dataclass
class Choice:
    """The evidence chosen, which excerpt holds it, its BM25 score (0 when no sentence shares a word with the
    question), and `support`: the IDF-weighted share of the question's content stems that the evidence sentence,
    its neighbours in the excerpt, the title of its section and the name of its file hold (a stem no candidate
    holds weighs most).
    Unlike the BM25 score, `support` does not grow with the number of candidates, so it means the same in a
    small store."""

    evidence: list[Evidence]
    excerpt: int | None
    score: float
    support: float


def _scored(excerpts: list[Excerpt], texts: list[str], question: str,
            lines: Lines | None) -> tuple[set[str], list[tuple[int, Sentence]], list[list[str]], list[float]]:
    """The question's stems, the candidate sentences (with the number of the excerpt holding each), their stems,
    and their BM25 scores against the question, each read with the title of its section."""
    wanted = set(stems(question))
    pool = [(number, sentence) for number, (excerpt, text) in enumerate(zip(excerpts, texts))
            for sentence in sentences(excerpt, text, lines)]
    candidates = [stems(sentence.evidence.text) for _, sentence in pool]
    titled = [candidate + stems(sentence.title) for candidate, (_, sentence) in zip(candidates, pool)]
    scores = bm25(wanted, titled, Counter(stem for candidate in titled for stem in set(candidate))) if pool else []
    return wanted, pool, candidates, scores


def choose_evidence(excerpts: list[Excerpt], texts: list[str], question: str, lines: Lines | None = None) -> Choice:
    """The best-matching sentence among the excerpts (whose texts are `texts`), each read with the title of its
    section (a sentence under "Baking" is about baking); given `lines`, which reads a document's lines, titles
    are also looked for above an excerpt without markup, and the sentence is completed from its document
    (`completed`). The score and support are the chosen sentence's as the excerpts hold it."""
    wanted, pool, candidates, scores = _scored(excerpts, texts, question, lines)
    if not pool or max(scores) <= 0:
        return Choice([], None, 0.0, 0.0)
    best = max(range(len(scores)), key=scores.__getitem__)
    number, sentence = pool[best]
    held = set().union(*(candidates[i] for i in (best - 1, best, best + 1) if 0 <= i < len(pool) and pool[i][0] == number),
                       stems(sentence.title), stems(name_title(sentence.evidence.path)))
    frequency = Counter(stem for candidate in candidates for stem in set(candidate))
    weight = {stem: idf(len(pool), frequency[stem]) for stem in wanted}
    support = sum(weight[stem] for stem in wanted & held) / sum(weight.values())
    chosen = sentence.evidence if lines is None else completed(sentence.evidence, lines, frozenset(wanted),
                                                                    asks_why(question))
    return Choice([chosen], number, scores[best], support)


def best_sentences(excerpts: list[Excerpt], texts: list[str], question: str,
                   lines: Lines | None = None) -> list[tuple[int, Evidence]]:
    """Each excerpt that shares a word with the question, as (its number, its best-matching sentence), the
    best-matching first: where a person would look first among passages that do not answer it."""
    _, pool, _, scores = _scored(excerpts, texts, question, lines)
    best: dict[int, tuple[float, Evidence]] = {}
    for (number, sentence), score in zip(pool, scores):
        if score > 0 and score > best.get(number, (0.0, None))[0]:
            best[number] = (score, sentence.evidence)
    return [(number, evidence) for number, (_, evidence) in sorted(best.items(), key=lambda item: -item[1][0])]
