"""Names and numbers in an answer that no passage the answer read holds: what a reader must not take on trust.

The 135M reader invents years and names with a straight face (an absent question got an invented year); a
name or number that occurs in none of the passages cannot have come from the user's files.
"""

from __future__ import annotations

import re

# A number (digits, maybe with . , : - inside), or a word with a capital letter or a digit that is not the
# first word of a sentence: "PEP 572", "EXTERNALLY-MANAGED", "Guido", "3.12", "1995".
_NUMBER = re.compile(r"\d+(?:[.,:\-]\d+)*")
_WORD = re.compile(r"[^\W_][\w\-.']*[^\W_]|[^\W_]")


def names_and_numbers(text: str) -> list[str]:
    """The numbers of `text` and its capitalised words other than a sentence's first, in order, once each."""
    found = _NUMBER.findall(text)
    for sentence in re.split(r"(?<=[.!?:])\s+|\n+", text):
        words = _WORD.findall(sentence)
        found += [word for word in words[1:] if not word.isdigit() and any(c.isupper() for c in word)]
    return list(dict.fromkeys(word.rstrip(".") for word in found))


def unsupported(answer: str, passages: list[str]) -> list[str]:
    """The names and numbers of `answer` that occur (case ignored, as whole words) in none of `passages`."""
    held = "\n".join(passages).lower()
    return [word for word in names_and_numbers(answer)
            if not re.search(rf"(?<![\w]){re.escape(word.lower())}(?![\w])", held)]
