"""The chat's sources panel: evidence above the sources, shown before the answer ends; a question not found said
so plainly, its closest passages not offered as support; a document view opened at its cited lines."""

from __future__ import annotations

import re

from app import render
from engine import Answer, Citation, Evidence, Grounds

CITATION = Citation(path="notes/boat.md", paths=["notes/boat.md"], page=None, start_line=3, end_line=3,
                    text="The key hangs behind the clock.", context="# Boat\n\nThe key hangs behind the clock.",
                    context_lines=[1, 3], score=0.4)
EVIDENCE = Evidence(path="notes/boat.md", page=None, start_line=3, end_line=3, text="The key hangs behind the clock.")


def test_evidence_comes_before_the_sources_and_unsupported_words_are_named():
    html = render.sources_html(Answer(text="Behind the clock, since 1999.", citations=[CITATION], evidence=[EVIDENCE],
                                      found=True, unsupported=["1999"], grounded=True))
    assert html.index("The key hangs behind the clock.") < html.index("[1] notes/boat.md")
    assert "notes/boat.md, line 3" in html and "1999" in html
    assert render.NOT_FOUND not in html


def test_a_question_not_found_is_said_plainly_with_the_closest_passages():
    answer = Answer(text="In 1783.", closest=[CITATION], evidence=[EVIDENCE], found=False)
    html = render.sources_html(answer)
    assert render.NOT_FOUND in html and "closest passages" in html and "[1] notes/boat.md" in html
    assert "<blockquote>" not in html
    assert render.listed(answer) == [CITATION]  # what the chat offers to open


def test_a_found_answer_that_no_passage_supports_says_so_under_its_evidence():
    html = render.sources_html(Answer(text="On the moon.", evidence=[EVIDENCE], found=True, grounded=True))
    assert "The key hangs behind the clock." in html and "No passage" in html and "[1]" not in html


def test_the_evidence_shows_before_the_answer_ends_and_a_question_not_found_says_so_at_once():
    html = render.grounds_html(Grounds(evidence=[EVIDENCE], found=True))
    assert "<blockquote>The key hangs behind the clock.</blockquote>" in html and "notes/boat.md, line 3" in html
    assert render.NOT_FOUND in render.grounds_html(Grounds(evidence=[], found=False))
    named = render.grounds_html(Grounds(evidence=[], found=False, unknown=["Okafor"]))
    assert f"<b>{render.NOT_FOUND}</b> No file mentions \u201cOkafor\u201d." in named


def test_the_document_view_marks_the_cited_lines_and_anchors_the_first_of_them():
    document = [f"line {number} of the boat notes" for number in range(20, 45)]  # lines 20..44 of the file
    cited = Citation(path="notes/boat.md", paths=["notes/boat.md"], page=None, start_line=37, end_line=38,
                     text="", context="", context_lines=[37, 38], score=0.4)
    html = render.passage_html(cited, 20, document)
    rows = re.findall(r'<div class="line[^"]*"[^>]*>.*?</div>', html)
    assert len(rows) == 25
    anchored = [row for row in rows if f'id="{render.FIRST_CITED}"' in row]
    assert anchored == [rows[37 - 20]] and "line 37 of the boat notes" in anchored[0]
    assert [row for row in rows if "<mark>" in row] == rows[17:19]
    assert html.count(f'id="{render.FIRST_CITED}"') == 1
