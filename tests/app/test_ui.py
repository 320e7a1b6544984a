"""The chat's conversation as the page keeps it: a follow-up refers back to the latest question asked."""

from __future__ import annotations

from app.ui import last_question


def test_a_follow_up_refers_to_the_latest_question_of_the_conversation():
    history = [{"role": "user", "content": "Who leads project Osprey?"}, {"role": "assistant", "content": "Ines."},
               {"role": "user", "content": "And the budget?"}, {"role": "assistant", "content": "48,200 euros."}]
    assert last_question(history) == "And the budget?"
    assert last_question(history[:2]) == "Who leads project Osprey?"
    assert last_question([]) is None
