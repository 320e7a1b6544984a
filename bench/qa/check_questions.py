"""Checks the question sets against the shipped corpus and writes the train/test split.

    python bench/qa/check_questions.py            # check only (questions.json and the later sets)
    python bench/qa/check_questions.py --split    # check, then write questions_train.json / questions_test.json

Why each check: a benchmark whose gold answers are wrong measures nothing. Every answerable item's answer
(or one of its aliases) must occur in its gold line range; every `paraphrase` item must share no content
word (stopwords dropped, Snowball-stemmed) with the text of its gold lines, so that a system cannot find it
by matching the question's words; every `absent` item names the phrases that would carry its answer, and
none of them may occur anywhere in the corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
KINDS = ("fact", "paraphrase", "why_how", "absent")
ANSWERABLE_FIELDS = ("id", "kind", "question", "answer", "aliases", "path", "start_line", "end_line")
TEST_SHARE = 0.3
# Written after the first test split had been run: more questions to work on, and held-out sets run once each.
LATER_SETS = ("questions_train_extra.json", "questions_holdout.json", "questions_holdout2.json",
              "questions_holdout3.json", "questions_holdout4.json", "questions_holdout5.json",
              "questions_holdout6.json", "questions_holdout7.json",
              "questions_holdout8.json", "questions_holdout9.json")
# The questions one works on (never a held-out one), and the splits the QA benches ask (questions_<split>.json).
WORK_SETS = ("questions_train.json", "questions_train_extra.json")
SPLITS = ("train", "test", *(name.removeprefix("questions_").removesuffix(".json") for name in LATER_SETS
                             if "holdout" in name))

# Function words only: a word that says what a passage is about is never on this list.
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each either else ever every few first for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just let may me might
more most must my myself neither never no nor not now of off on once one only or other ought our ours ourselves
out over own rather same shall she should so some such than that the their theirs them themselves then there these
they this those through to too under until up upon us very was we were what when where whether which while who
whom whose why will with within without would yet you your yours yourself yourselves
""".split())
WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def normalise(text: str) -> str:
    """Lower case, markup quotes dropped, runs of white space as one space: how answers are compared."""
    return " ".join(text.replace("`", "").replace("*", "").lower().split())


def contains(haystack: str, needle: str) -> bool:
    """Whether `needle` occurs in `haystack` (both normalised), on word boundaries where it starts or ends with a
    letter or digit, so that "1" is not found inside "10" nor "name" inside "renamed"."""
    needle = normalise(needle)
    if not needle:
        return False
    pattern = re.escape(needle)
    if needle[0].isalnum():
        pattern = r"(?<![a-z0-9])" + pattern
    if needle[-1].isalnum():
        pattern += r"(?![a-z0-9])"
    return re.search(pattern, normalise(haystack)) is not None


def corpus_lines(path: str) -> list[str]:
    return (CORPUS / path).read_text(encoding="utf-8").split("\n")


def gold_text(item: dict) -> str:
    """The item's gold lines (1-based, inclusive) joined."""
    return "\n".join(corpus_lines(item["path"])[item["start_line"] - 1:item["end_line"]])


def answer_strings(item: dict) -> list[str]:
    return [item["answer"], *item["aliases"]]


def content_stems(text: str) -> set[str]:
    """The stems of the words of `text` that are not function words (numbers count: a year is content)."""
    import snowballstemmer  # only the paraphrase check needs it

    stemmer = snowballstemmer.stemmer("english")
    words = []
    for word in WORD.findall(text.lower()):
        words.extend(part for part in re.split(r"[-']", word) if part)
    return {stemmer.stemWord(word) for word in words if word not in STOPWORDS and len(word) > 1}


def problems(items: list[dict]) -> list[str]:
    """Every way the set falls short, one line each (empty when it is sound)."""
    found, ids = [], set()
    corpus_text = "\n".join(path.read_text(encoding="utf-8") for path in sorted(CORPUS.iterdir()))
    for item in items:
        name = item.get("id", "?")
        if name in ids:
            found.append(f"{name}: duplicate id")
        ids.add(name)
        if item.get("kind") not in KINDS:
            found.append(f"{name}: unknown kind {item.get('kind')!r}")
            continue
        if item["kind"] == "absent":
            if not item.get("absent_check"):
                found.append(f"{name}: an absent item needs absent_check phrases")
            found.extend(f"{name}: {phrase!r} occurs in the corpus"
                         for phrase in item.get("absent_check", []) if contains(corpus_text, phrase))
            continue
        missing = [key for key in ANSWERABLE_FIELDS if key not in item]
        if missing:
            found.append(f"{name}: missing {', '.join(missing)}")
            continue
        lines = corpus_lines(item["path"])
        if not 1 <= item["start_line"] <= item["end_line"] <= len(lines):
            found.append(f"{name}: lines {item['start_line']}-{item['end_line']} outside {item['path']}")
            continue
        text = gold_text(item)
        if not any(contains(text, answer) for answer in answer_strings(item)):
            found.append(f"{name}: no answer string in {item['path']}:{item['start_line']}-{item['end_line']}")
        if item["kind"] == "paraphrase":
            shared = content_stems(item["question"]) & content_stems(text)
            if shared:
                found.append(f"{name}: the question shares {sorted(shared)} with its gold lines")
    return found


def split(items: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per kind, the items ordered by a hash of their id; the first 30% are the test split. Deterministic and
    blind to the questions' content."""
    train, test = [], []
    for kind in KINDS:
        ranked = sorted((item for item in items if item["kind"] == kind),
                        key=lambda item: hashlib.sha256(item["id"].encode()).hexdigest())
        cut = round(len(ranked) * TEST_SHARE)
        test.extend(ranked[:cut])
        train.extend(ranked[cut:])
    return train, test


def load(*names: str) -> list[dict]:
    """The items of the question sets `names` (files of bench/qa), one after another."""
    return [item for name in names for item in json.loads((HERE / name).read_text(encoding="utf-8"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", action="store_true", help="write questions_train.json and questions_test.json")
    args = parser.parse_args()
    sets = {name: load(name) for name in ("questions.json", *LATER_SETS)}
    items = sets["questions.json"]
    found = [line for part in sets.values() for line in problems(part)]
    seen: dict[str, str] = {}
    for name, part in sets.items():
        for item in part:
            if item["id"] in seen and seen[item["id"]] != name:
                found.append(f"{item['id']}: in both {seen[item['id']]} and {name}")
            seen.setdefault(item["id"], name)
    for line in found:
        print(line)
    for name, part in sets.items():
        counts = {kind: sum(item["kind"] == kind for item in part) for kind in KINDS}
        print(f"{name}: {len(part)} questions {counts}")
    print("OK" if not found else f"{len(found)} problems")
    if found:
        return 1
    if args.split:
        train, test = split(items)
        for name, part in (("questions_train.json", train), ("questions_test.json", test)):
            (HERE / name).write_text(json.dumps(part, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"{name}: {len(part)} {dict((kind, sum(i['kind'] == kind for i in part)) for kind in KINDS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
