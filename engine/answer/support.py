"""What in an answer no passage the answer read holds: names and numbers, quotations and file labels that a
reader must not take on trust.

The 135M reader invents years and names with a straight face (an absent question got an invented year), and
echoes the prompt's forms: text in quotation marks that no file holds, "[file]" labels before text of its own.
A name or number that occurs in none of the passages cannot have come from the user's files; a quotation is
only one when its words stand in a passage as they are; a label only when it names a file the answer read.
"""

from __future__ import annotations

import re

# A number (digits, maybe with . , : - inside, and the letters it is written with: "Q3", "E17", "3rd"), or a
# word with a capital letter that is not the first word of a sentence: "PEP 572", "EXTERNALLY-MANAGED", "Guido",
# "3.12", "1995". The number is whole: the "3" of "Q3" alone occurs in no passage that says "Q3".
_NUMBER = re.compile(r"(?<![^\W\d_])[^\W\d_]*\d+(?:[.,:\-]\d+)*[^\W\d_]*(?![^\W\d_])")
_WORD = re.compile(r"[^\W_][\w\-.']*[^\W_]|[^\W_]")
_QUOTED = re.compile(r'"([^"\n]*[^\W\d_][^"\n]*)"|\u201c([^\u201d\n]*[^\W\d_][^\u201d\n]*)\u201d')
# "[notes/boat.md]", "[report.pdf, page 3]": what the prompt's excerpt labels look like (a file name with a
# suffix), so that "list[int]" or a footnote "[1]" is not taken for one.
_LABEL = re.compile(r"\[([^\[\]\n]*[\w-]\.[A-Za-z0-9]{1,8})(?:, page \d+)?\]")


def names_and_numbers(text: str) -> list[str]:
    """The numbers of `text` and its capitalised words other than a sentence's first, in order, once each."""
    found = _NUMBER.findall(text)
    for sentence in re.split(r"(?<=[.!?:])\s+|\n+", text):
        words = _WORD.findall(sentence)
        found += [word for word in words[1:] if not word.isdigit() and any(c.isupper() for c in word)]
    return list(dict.fromkeys(word.rstrip(".") for word in found))


def quotations(text: str) -> list[str]:
    """The text inside quotation marks ("…" or \u201c…\u201d) in `text`, holding at least one letter."""
    return [" ".join((straight or curly).split()) for straight, curly in _QUOTED.findall(text)]


def unsupported(answer: str, passages: list[str], files: tuple[str, ...] | list[str] = ()) -> list[str]:
    """What `answer` says that none of `passages` holds: its names and numbers that occur (case ignored, as
    whole words) in none of them; its quotations (shown in quotation marks) that no passage holds word for
    word (case and line breaks aside); its "[label]"s (shown in brackets) naming none of `files` (the paths of
    the files it read; a label may leave out leading folders)."""
    held = "\n".join(passages).lower()
    pieces = {piece.lower() for piece in _NUMBER.findall(held)}  # as `names_and_numbers` cuts a link or a code
    found = [word for word in names_and_numbers(answer) if word.lower() not in pieces
             and not re.search(rf"(?<![\w]){re.escape(word.lower())}(?![\w])", held)]
    plain = " ".join(held.split())
    found += [f'"{quote}"' for quote in quotations(answer) if quote.lower() not in plain]
    found += [label[0] for label in _LABEL.finditer(answer)
              if not any(path == label[1].strip() or path.endswith("/" + label[1].strip()) for path in files)]
    return list(dict.fromkeys(found))
