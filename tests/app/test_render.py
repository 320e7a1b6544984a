"""The chat's sources panel: evidence above the sources; a question not found said so plainly."""

from __future__ import annotations

from app import render
from engine import Answer, Citation, Evidence

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
    html = render.sources_html(Answer(text="In 1783.", citations=[CITATION], evidence=[EVIDENCE], found=False))
    assert render.NOT_FOUND in html and "[1] notes/boat.md" in html
    assert "<blockquote>" not in html
