"""bench_qa.py's "cited passages that do not support the answer": a citation supports when its lines, read from
the corpus file, overlap the gold lines or hold an acceptable answer (on word boundaries); on an absent question
none does. Smoke-run on lines of the shipped corpus, found here by reading it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from bench_qa import citations_not_supporting  # noqa: E402

ITEM = {"id": "aphorisms", "kind": "fact", "answer": "20", "aliases": ["twenty"], "path": "pep-0020.rst",
        "start_line": 12, "end_line": 14}
TWENTY = re.compile(r"(?<![a-z0-9])(20|twenty)(?![a-z0-9])", re.IGNORECASE)


def line_of(name: str, holding: bool) -> int:
    """The first line (1-based) of a corpus file that does, or does not, hold the answer."""
    lines = (BENCH / "qa" / "corpus" / name).read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if bool(TWENTY.search(line)) == holding and line.strip())


def cite(name: str, first: int, last: int) -> dict:
    return {"path": name, "start_line": first, "end_line": last, "score": 0.1}


def test_citations_holding_neither_the_answer_nor_the_gold_lines_are_counted():
    elsewhere = line_of("pep-0008.rst", holding=True)
    unrelated = line_of("pep-0008.rst", holding=False)
    citations = [cite("pep-0020.rst", 14, 16), cite("pep-0008.rst", elsewhere, elsewhere),
                 cite("pep-0008.rst", unrelated, unrelated)]
    assert citations_not_supporting(ITEM, {"citations": citations}) == (1, 3)
    assert citations_not_supporting(ITEM, {"citations": []}) == (0, 0)


def test_on_an_absent_question_no_citation_supports():
    absent = {"id": "nowhere", "kind": "absent", "absent_check": ["volcano"]}
    assert citations_not_supporting(absent, {"citations": [cite("pep-0020.rst", 12, 14)]}) == (1, 1)
