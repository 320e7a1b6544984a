"""The sample corpus' ten questions (data/questions.json) through `engine ask`: is the answer right, is the
right file cited, and does retrieval alone find the right lines — model heads, lexical path, fused. A question
the engine does not find gets no answer, so it is never right.

    python bench/eval_questions.py [--store DIR] [--top-k 6]

Ingests data/ into DIR (a temporary store by default), then asks. Writes bench/results/questions_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from datetime import date
from pathlib import Path

from engine.answer.generation import Answer
from engine.answer.retrieval import lexical_block_ranking, model_block_scores, question_queries, text_reader
from engine.api import TOP_K, open_store
from engine.runtime import load_runtime
from ingest import catalog

ROOT = Path(__file__).resolve().parents[1]


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower())


def answer_matches(answer: str, expected: str) -> bool:
    """The expected answer's key item (before any parenthesis or colon) appears in the answer."""
    key = normalise(re.split(r"[(:]", expected)[0]).split()
    return all(word in normalise(answer).split() for word in key[:3])


def block_hits(db, blocks: list[int], block_tokens: int, question: dict) -> bool:
    first, last = question["lines"]
    for block in blocks:
        for span in catalog.citations(db, block * block_tokens, (block + 1) * block_tokens):
            if any(path.endswith(question["file"].removeprefix("data/")) for path in span.paths) \
                    and span.line_start <= last and span.line_end >= first \
                    and span.page == question.get("page", span.page):
                return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path)
    parser.add_argument("--top-k", type=int, default=TOP_K)
    args = parser.parse_args()
    questions = json.loads((ROOT / "data" / "questions.json").read_text())["questions"]
    runtime = load_runtime(None, "cpu")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.store or Path(scratch) / "store"
        with open_store(root, runtime=runtime, write=True) as store:
            store.add([ROOT / "data"])
            store.process()
            rows = []
            for question in questions:
                config, db = store.config, store.store.db
                scores = model_block_scores(store.index(), question_queries(runtime, config, question["question"]),
                                            config.block_tokens)
                model_top = sorted(scores, key=lambda b: -scores[b])[:args.top_k]
                lexical_top = lexical_block_ranking(db, question["question"], config.block_tokens,
                                                    text_reader(runtime, store.store))[:args.top_k]
                answer = next(event for event in store.ask(question["question"], top_k=args.top_k) if isinstance(event, Answer))
                cited = [c for c in answer.citations if c.path.endswith(question["file"].removeprefix("data/"))]
                rows.append({"id": question["id"], "answer": answer.text, "expected": question["answer"],
                             "found": answer.found, "correct": answer_matches(answer.text, question["answer"]),
                             "right_file_cited": bool(cited),
                             "top_citation_right_file": bool(answer.citations) and answer.citations[0] in cited,
                             "model_heads_hit": block_hits(db, model_top, config.block_tokens, question),
                             "lexical_hit": block_hits(db, lexical_top, config.block_tokens, question),
                             "grounded": answer.grounded, "first_token_s": answer.timings["first_token_s"]})
                print(f"{question['id']:14s} found={answer.found!s:5} correct={rows[-1]['correct']!s:5} "
                      f"cited={rows[-1]['right_file_cited']!s:5} "
                      f"heads={rows[-1]['model_heads_hit']!s:5} lexical={rows[-1]['lexical_hit']!s:5} "
                      f"{answer.text.strip()[:70]!r}")
    totals = {name: sum(row[name] for row in rows) for name in
              ("correct", "right_file_cited", "top_citation_right_file", "model_heads_hit", "lexical_hit")}
    print(f"of {len(rows)}: " + ", ".join(f"{name} {count}" for name, count in totals.items()))
    out = ROOT / "bench" / "results" / "questions_cpu.json"
    out.write_text(json.dumps({"date": date.today().isoformat(), "machine": "CPU, 2 cores", "top_k": args.top_k,
                               "totals": totals, "questions": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
