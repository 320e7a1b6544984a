"""The QA evaluation sets (bench/qa) are sound: well-formed items, each gold answer really in its gold lines of the
shipped corpus, absent items' answer phrases nowhere in it, the train/test split disjoint and complete, and the
later sets (more to work on, held-out ones) new."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

QA = Path(__file__).resolve().parents[2] / "bench" / "qa"
KINDS = {"fact", "paraphrase", "why_how", "absent"}


def load(name: str) -> list[dict]:
    return json.loads((QA / name).read_text(encoding="utf-8"))


ALL, TRAIN, TEST = load("questions.json"), load("questions_train.json"), load("questions_test.json")
LATER = {name: load(name) for name in ("questions_train_extra.json", "questions_holdout.json", "questions_holdout2.json",
                                      "questions_holdout3.json", "questions_holdout4.json",
                                      "questions_holdout5.json", "questions_holdout6.json",
                                      "questions_holdout7.json", "questions_holdout8.json",
                                      "questions_holdout9.json")}
EVERY = ALL + [item for part in LATER.values() for item in part]
ANSWERABLE = [item for item in EVERY if item["kind"] != "absent"]


def flat(text: str) -> str:
    return " ".join(text.replace("`", "").replace("*", "").lower().split())


def test_the_set_is_large_enough_and_every_kind_is_there():
    assert len(ALL) >= 80
    counts = {kind: sum(item["kind"] == kind for item in ALL) for kind in KINDS}
    assert min(counts.values()) >= 15, counts
    assert len({item["id"] for item in ALL}) == len(ALL)


def test_train_and_test_are_a_disjoint_cover_with_about_30_percent_test():
    train, test = {item["id"] for item in TRAIN}, {item["id"] for item in TEST}
    assert not train & test
    assert train | test == {item["id"] for item in ALL}
    assert 0.25 <= len(test) / len(ALL) <= 0.35
    for kind in KINDS:
        assert any(item["kind"] == kind for item in TEST), kind
    by_id = {item["id"]: item for item in ALL}
    assert all(item == by_id[item["id"]] for item in TRAIN + TEST)


def test_the_later_sets_are_new_and_share_no_question_or_gold_lines():
    assert len({item["id"] for item in EVERY}) == len(EVERY)
    for name, part in LATER.items():
        if "holdout" in name:
            assert {item["kind"] for item in part} == KINDS, name
    later = [item for part in LATER.values() for item in part if item["kind"] != "absent"]
    overlapping = [(a["id"], b["id"]) for a in later for b in ANSWERABLE if a is not b and a["path"] == b["path"]
                   and a["start_line"] <= b["end_line"] and b["start_line"] <= a["end_line"]]
    assert not overlapping


@pytest.mark.parametrize("item", ANSWERABLE, ids=lambda item: item["id"])
def test_gold_answer_is_in_its_line_range(item):
    assert item["question"].strip() and item["answer"].strip() and isinstance(item["aliases"], list)
    lines = (QA / "corpus" / item["path"]).read_text(encoding="utf-8").split("\n")
    assert 1 <= item["start_line"] <= item["end_line"] <= len(lines)
    gold = flat("\n".join(lines[item["start_line"] - 1:item["end_line"]]))
    assert any(flat(answer) in gold for answer in [item["answer"], *item["aliases"]])


def words(text: str) -> str:
    """Text as its runs of letters and digits, space-separated and padded: a phrase is found as whole words."""
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def test_absent_answers_are_nowhere_in_the_corpus():
    corpus = words("\n".join(path.read_text(encoding="utf-8") for path in (QA / "corpus").iterdir()))
    absent = [item for item in EVERY if item["kind"] == "absent"]
    for item in absent:
        assert item["absent_check"], item["id"]
        for phrase in item["absent_check"]:
            assert words(phrase) not in corpus, (item["id"], phrase)
