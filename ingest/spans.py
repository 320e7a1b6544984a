"""Cutting a document's text into spans at natural boundaries: the units that answers cite.

langchain-text-splitters chooses the boundaries (language-aware separators for code, header-first ones
for Markdown and reStructuredText, paragraphs then lines then words for plain text and PDF pages). The
spans then tile the text exactly: consecutive, no gap, no overlap, a boundary never inside a line's
leading newline, so every character (and so every token of the document's body) belongs to exactly one
span. PDF spans never cross a page.

Each span knows its character range, its line range (1-based, inclusive, trailing blank lines left out;
for PDFs counted within the page) and page, and a heading: the Markdown or reStructuredText section path in force where the span
starts ("Setup > Wifi"), or for code the nearest definition line before it ("def checksum(data):").
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import cache

from ingest.extract import Extracted

SPAN_CHARS = 800  # about 200 tokens (10-20 lines): small enough to cite a passage, large enough to keep a thought

_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_MD_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
_RST_TITLE = re.compile(r"^([^\s][^\n]*)\n([=\-`:'\"~^_*+#<>.])\2{2,}[ \t]*$", re.M)
# A definition line: modifiers, a keyword, a name. Possessive quantifiers keep it from backtracking (2x faster).
_DEFINITION = re.compile(
    r"(?m)^[ \t]*+(?:(?:pub(?:\([^)\n]*\))?|export|public|private|protected|static|async|default|abstract|final)"
    r"[ \t]+)*+(?:def|class|function|fn|func|struct|enum|trait|impl|interface|module|type|sub|proc|object)"
    r"[ \t]+[\w.$<>]+[^\n]*")
_LANGCHAIN_LANGUAGES = {"python", "js", "ts", "go", "rust", "java", "kotlin", "c", "cpp", "csharp", "ruby", "php",
                        "swift", "scala", "lua", "haskell", "elixir", "perl", "powershell", "proto", "sol", "r",
                        "latex", "html", "cobol"}


@dataclass(frozen=True)
class Span:
    char_start: int
    char_end: int
    line_start: int
    line_end: int
    page: int | None
    heading: str | None


def split_spans(extracted: Extracted, span_chars: int = SPAN_CHARS) -> list[Span]:
    """The spans of a document's text, in order, covering it exactly."""
    text = extracted.text
    splitter = _splitter(extracted.kind, extracted.language, span_chars)
    headings = _headings(text, extracted.kind)
    spans: list[Span] = []
    for page, start, end in _regions(extracted):
        region = text[start:end]
        cuts = _cuts(region, splitter.split_text(region))
        line = 1
        for cut, next_cut in zip(cuts, cuts[1:] + [len(region)]):
            content_end = cut + len(region[cut:next_cut].rstrip())  # trailing blank lines are not content
            spans.append(Span(start + cut, start + next_cut, line, line + region.count("\n", cut, content_end), page,
                              _heading_at(headings, text, start + cut, start + next_cut)))
            line += region.count("\n", cut, next_cut)
    return spans


def _regions(extracted: Extracted) -> list[tuple[int | None, int, int]]:
    """(page, start, end) pieces that tile the text: PDF pages (each keeping the joiner after it), else the whole."""
    if not extracted.pages:
        return [(None, 0, len(extracted.text))]
    pages = extracted.pages
    ends = [start for _, start, _ in pages[1:]] + [len(extracted.text)]
    return [(number, start, end) for (number, start, _), end in zip(pages, ends)]


def _cuts(region: str, chunks: list[str]) -> list[int]:
    """Where each chunk starts in `region`, moved past leading newlines so a span starts at the start of a line."""
    cuts, at = [0], 0
    for chunk in chunks:
        found = at if region.startswith(chunk, at) else region.find(chunk, at)
        if found < 0:
            continue  # the splitter changed the text; this chunk's characters stay with the previous span
        cut = found
        while cut < len(region) and region[cut] == "\n":
            cut += 1
        if cut > cuts[-1] and cut < len(region):
            cuts.append(cut)
        at = found + len(chunk)
    return cuts


@cache
def _splitter(kind: str, language: str | None, span_chars: int):
    from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

    options = dict(chunk_size=span_chars, chunk_overlap=0, strip_whitespace=False)
    chosen = {"markdown": "markdown", "rst": "rst"}.get(kind) or (language if language in _LANGCHAIN_LANGUAGES else None)
    if chosen:
        return RecursiveCharacterTextSplitter.from_language(Language(chosen), **options)
    return RecursiveCharacterTextSplitter(keep_separator="end", **options)


def _headings(text: str, kind: str) -> tuple[list[int], list[str]]:
    """Positions where a heading comes into force, and the heading from there on (sorted by position)."""
    if kind == "markdown":
        found = _markdown_headings(text)
    elif kind == "rst":
        found = _rst_headings(text)
    elif kind == "code":
        found = [(m.start(), m.group(0).strip()[:120]) for m in _DEFINITION.finditer(text)]
    else:
        found = []
    return [at for at, _ in found], [title for _, title in found]


def _markdown_headings(text: str) -> list[tuple[int, str]]:
    found, path, in_fence, at = [], [], False, 0
    for line in text.splitlines(keepends=True):
        if _MD_FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            match = _MD_HEADING.match(line.rstrip("\r\n"))
            if match:
                level = len(match.group(1))
                path = [entry for entry in path if entry[0] < level] + [(level, match.group(2))]
                found.append((at, " > ".join(title for _, title in path)))
        at += len(line)
    return found


def _rst_headings(text: str) -> list[tuple[int, str]]:
    found, path, levels = [], [], []
    for match in _RST_TITLE.finditer(text):
        title, mark = match.group(1).strip(), match.group(2)
        if len(match.group(0).splitlines()[1].rstrip()) < len(title):
            continue  # an underline shorter than its title is not a title
        if mark not in levels:
            levels.append(mark)
        level = levels.index(mark)
        path = [entry for entry in path if entry[0] < level] + [(level, title)]
        found.append((match.start(), " > ".join(t for _, t in path)))
    return found


def _heading_at(headings: tuple[list[int], list[str]], text: str, start: int, end: int) -> str | None:
    """The heading in force at the span's first non-blank character."""
    positions, titles = headings
    if not positions:
        return None
    first = start + (len(text[start:end]) - len(text[start:end].lstrip()))
    index = bisect.bisect_right(positions, first) - 1
    return titles[index] if index >= 0 else None
