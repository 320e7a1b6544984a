"""The "found" decision on the questions one works on: its two signals and the rules they make, no generation.

    python bench/qa/found_train.py [--store .qa-store]

For every question of questions_train.json and questions_train_extra.json (never a held-out one): the evidence
`engine ask` chooses and completes (`choose_evidence` over the retrieved excerpts, with the document's lines),
its BM25 score and its IDF-weighted share of the question's words (`support`), and whether it holds an acceptable
answer. Then, for each rule, how many absent questions it says are not found and how many answerable ones it
wrongly refuses (and how many of those had their answer in the evidence). Writes
bench/results/qa_found_train.json (one row a question, the rules' counts).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QA = ROOT / "bench" / "qa"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(QA))
FILES = ("questions_train.json", "questions_train_extra.json")
RULES = {
    "shipped: support >= 0.5 or BM25 >= 10": lambda row: row["support"] >= 0.5 or row["score"] >= 10,
    "before: BM25 >= 5.5 or support >= 0.6": lambda row: row["score"] >= 5.5 or row["support"] >= 0.6,
    **{f"support >= {t}": (lambda row, t=t: row["support"] >= t) for t in (0.4, 0.45, 0.5, 0.55, 0.6)},
    **{f"support >= 0.5 or BM25 >= {s}": (lambda row, s=s: row["support"] >= 0.5 or row["score"] >= s)
       for s in (8, 12)},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(".qa-store"))
    args = parser.parse_args()
    from check_questions import contains

    import engine
    from engine.answer.evidence import choose_evidence

    items = [item for name in FILES for item in json.loads((QA / name).read_text(encoding="utf-8"))]
    rows = []
    with engine.open_store(args.store, device="cpu") as store:
        for item in items:
            excerpts = store.passages(item["question"])
            texts = [store.runtime.tokenizer.decode(excerpt.ids) for excerpt in excerpts]
            choice = choose_evidence(excerpts, texts, item["question"], store.lines)
            quoted = " ".join(evidence.text for evidence in choice.evidence)
            rows.append({"id": item["id"], "kind": item["kind"], "score": round(choice.score, 3),
                         "support": round(choice.support, 3),
                         "evidence_right": item["kind"] != "absent" and any(
                             contains(quoted, answer) for answer in [item["answer"], *item["aliases"]])})
    absent = [row for row in rows if row["kind"] == "absent"]
    answerable = [row for row in rows if row["kind"] in ("fact", "why_how")]
    other_words = [row for row in rows if row["kind"] == "paraphrase"]
    rules = {name: {"absent_not_found": f"{sum(not rule(row) for row in absent)}/{len(absent)}",
                    "facts_and_why_how_refused": f"{sum(not rule(row) for row in answerable)}/{len(answerable)}",
                    "of_them_evidence_right": sum(not rule(row) and row["evidence_right"] for row in answerable),
                    "other_words_refused": f"{sum(not rule(row) for row in other_words)}/{len(other_words)}"}
             for name, rule in RULES.items()}
    for name, counts in rules.items():
        print(f"{name:36s} {counts}")
    (ROOT / "bench" / "results" / "qa_found_train.json").write_text(json.dumps({
        "questions": list(FILES), "command": "python bench/qa/found_train.py --store S", "rules": rules,
        "per_question": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
