"""Whether a question was found in the files: its evidence covers what was asked, and every name it uses is in them.

A question near the files' topics but not in them ("How do I activate a venv from PowerShell?" over notes on
virtual environments) finds a sentence that matches its topic words well; the one word that makes it a different
question is a name no file holds. A name or number the files never mention cannot be answered from them, however
well the rest matches, and saying which one is the plainest reason a person can be given.
"""

from __future__ import annotations

import re

import sqlite_utils

from engine.answer.evidence import Choice
from engine.answer.retrieval import STOPWORDS
from ingest import catalog

# "Found" when the evidence sentence, with its neighbours and its section's title, holds at least FOUND_SUPPORT of
# the question's words weighted by their IDF among the candidate sentences (a word no candidate holds weighs most),
# or when its BM25 score reaches FOUND_SCORE. The share asks whether the evidence covers what was asked; BM25 only
# how strongly it matches some of it, and a question near the files' topics but not in them matches its topic words
# strongly.
# Chosen on the bench/qa questions to work on (docs/benchmarks.md, "Answers on real prose: later question sets").
FOUND_SCORE = 10.0
FOUND_SUPPORT = 0.5
WORD = re.compile(r"\w+(?:-\w+)*")  # "Wi-Fi", "X-Checksum": one word, hyphens and all


def names(question: str) -> list[str]:
    """The words of `question` written as names or numbers, once each: with a digit ("M1", "2019"), an underscore
    ("kw_only") or a capital past the first letter ("PowerShell", "ASGI", "Wi-Fi"). Such a word is written the same
    wherever it occurs. A word that is merely capitalised is not one: "Mom", "Doctor" or "the Lake House" may stand
    in the notes in other words, and a question refused for them would be refused wrongly."""
    found = [word for word in WORD.findall(question) if len(word) > 1 and word.lower() not in STOPWORDS
             and ("_" in word or any(c.isdigit() for c in word) or any(c.isupper() for c in word[1:]))]
    return list(dict.fromkeys(found))


def unknown_names(db: sqlite_utils.Database, question: str) -> list[str]:
    """The names and numbers of `question` (`names`) that no live document mentions, as written or, for a
    hyphenated one, run together ("Wi-Fi" is held by notes that write "wifi")."""
    return [name for name in names(question) if not catalog.mentions(db, name)
            and not ("-" in name and catalog.mentions(db, name.replace("-", "")))]


def is_found(choice: Choice, unknown: list[str]) -> bool:
    """Whether the evidence `choice` answers the question: it covers or matches what was asked (FOUND_SUPPORT,
    FOUND_SCORE) and the question names nothing the files never mention (`unknown`)."""
    return not unknown and (choice.score >= FOUND_SCORE or choice.support >= FOUND_SUPPORT)


def unknown_said(unknown: list[str]) -> str:
    """The names no file mentions, as a sentence to show after "Not found in your files." ("" when none)."""
    if not unknown:
        return ""
    quoted = [f"\u201c{name}\u201d" for name in unknown]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"No file mentions {listed}."
