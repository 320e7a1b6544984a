"""Spans: they tile the text, their line ranges point at the right lines, headings and pages are right."""

from __future__ import annotations

import pytest

from ingest.extract import extract
from ingest.spans import split_spans
from tests.ingest.pdfs import make_pdf


def markdown_doc() -> str:
    sections = []
    for chapter in range(1, 4):
        sections.append(f"# Chapter {chapter}\n\nIntro to chapter {chapter}.\n")
        for part in range(1, 4):
            body = "\n".join(f"Fact {chapter}.{part}.{i}: the value is {chapter * 100 + part * 10 + i}." for i in range(12))
            sections.append(f"## Part {chapter}.{part}\n\n{body}\n")
    sections.append("```\n# not a heading, inside a code fence\n```\n")
    return "\n".join(sections)


def python_doc() -> str:
    blocks = ['"""A module."""\n\nimport os\n']
    for n in range(6):
        lines = "\n".join(f"        total += {i} * value  # step {i}" for i in range(14))
        blocks.append(f"\nclass Worker{n}:\n    def run_{n}(self, value):\n        total = 0\n{lines}\n        return total\n")
    return "\n".join(blocks)


def assert_tiles(text: str, spans) -> None:
    assert spans[0].char_start == 0 and spans[-1].char_end == len(text)
    assert all(a.char_end == b.char_start for a, b in zip(spans, spans[1:]))


def assert_lines_point_at_the_text(text: str, spans) -> None:
    lines = text.split("\n")
    for span in spans:
        content = text[span.char_start:span.char_end].strip()
        if not content:
            continue
        cited = "\n".join(lines[span.line_start - 1:span.line_end])
        assert content in cited, (span, cited)
        assert content.split("\n")[0] in lines[span.line_start - 1]
        assert content.split("\n")[-1] in lines[span.line_end - 1]


@pytest.mark.parametrize("name, text", [("guide.md", markdown_doc()), ("worker.py", python_doc()),
                                        ("plain.txt", ("word " * 50 + "\n\n") * 40), ("one-line.txt", "x" * 3000)])
def test_spans_tile_the_text_and_cite_the_right_lines(name, text):
    spans = split_spans(extract(name, text.encode()), span_chars=400)
    assert len(spans) > 3
    assert_tiles(text, spans)
    assert_lines_point_at_the_text(text, spans)
    assert max(span.char_end - span.char_start for span in spans) <= 400


def test_markdown_spans_start_at_headers_and_know_their_section():
    text = markdown_doc()
    spans = split_spans(extract("guide.md", text.encode()), span_chars=400)
    for span in spans:
        first_line = text[span.char_start:span.char_end].lstrip("\n").split("\n")[0]
        if first_line.startswith("## Part "):
            part = first_line.removeprefix("## Part ")
            assert span.heading == f"Chapter {part.split('.')[0]} > Part {part}"
    facts = [s for s in spans if "Fact 2.3.5" in text[s.char_start:s.char_end]]
    assert [s.heading for s in facts] == ["Chapter 2 > Part 2.3"]
    assert not any(s.heading and "not a heading" in s.heading for s in spans)


def test_code_spans_name_the_definition_they_are_in():
    text = python_doc()
    spans = split_spans(extract("worker.py", text.encode()), span_chars=400)
    step = next(s for s in spans if "total += 13 * value" in text[s.char_start:s.char_end] and "Worker4" not in
                text[s.char_start:s.char_end] and s.char_start > text.index("class Worker3"))
    assert step.heading == "def run_3(self, value):"


def test_pdf_spans_stay_on_their_page_and_count_lines_within_it():
    pages = [[f"page {p} line {i}" for i in range(1, 41)] for p in (1, 2)]
    extracted = extract("doc.pdf", make_pdf(pages))
    spans = split_spans(extracted, span_chars=300)
    assert_tiles(extracted.text, spans)
    page_ranges = {number: (start, end) for number, start, end in extracted.pages}
    for span in spans:
        start, end = page_ranges[span.page]
        assert start <= span.char_start and span.char_end <= end + 2  # the page joiner stays with its page
        first = extracted.text[span.char_start:span.char_end].strip().split("\n")[0]
        assert first == f"page {span.page} line {span.line_start}"
    assert {span.page for span in spans} == {1, 2}
