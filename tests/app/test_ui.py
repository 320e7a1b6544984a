"""The chat's conversation as the page keeps it: a follow-up refers back to the latest question asked; the
document view is scrolled to the cited lines."""

from __future__ import annotations

from app import render
from app.ui import build_ui, last_question


def test_a_follow_up_refers_to_the_latest_question_of_the_conversation():
    history = [{"role": "user", "content": "Who leads project Osprey?"}, {"role": "assistant", "content": "Ines."},
               {"role": "user", "content": "And the budget?"}, {"role": "assistant", "content": "48,200 euros."}]
    assert last_question(history) == "And the budget?"
    assert last_question(history[:2]) == "Who leads project Osprey?"
    assert last_question([]) is None


def test_the_document_view_scrolls_to_the_first_cited_line_each_time_it_shows_a_passage():
    page = build_ui(corpus=None)  # the corpus is only used when an event runs
    [view] = [block for block in page.blocks.values() if getattr(block, "elem_id", None) == "passage"]
    script = view.js_on_load
    assert script == render.SCROLL_TO_CITED
    assert "watch('value'" in script and f"#{render.FIRST_CITED}" in script and "scrollTop" in script
