"""The "found" decision on the questions one works on: its two signals and the rules they make, no generation.

    python bench/qa/found_train.py [--store .qa-store]

For every question of questions_train.json and questions_train_extra.json (never a held-out one): the evidence
`engine ask` chooses and completes (`choose_evidence` over the retrieved excerpts, with the document's lines),
its BM25 score and its IDF-weighted share of the question's words (`support`), the question's names and numbers
no file mentions (`unknown`), and whether it holds an acceptable answer. Then, for each rule, how many absent
questions it says are not found and how many answerable ones it wrongly refuses (and how many of those had their
answer in the evidence). Writes bench/results/qa_found_train.json (one row a question, the rules' counts).

`--more` also measures two signals that need a model (neither is in the product; the figures say why):
`likelihood`, the mean gain in log-probability of the question's tokens under the 135M model when the evidence
precedes it ("Passage: …\nQuestion: …" against an empty passage), and `cosine`, all-MiniLM-L6-v2's cosine of
the question and the evidence (the `bench` extra). For each, the threshold that keeps every absent question not
found and how many answerable ones it then refuses, alone and beside the shipped rule.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
QA = ROOT / "bench" / "qa"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(QA))

from engine.answer.found import FOUND_SCORE, FOUND_SUPPORT  # noqa: E402  (the rule `engine ask` applies)

SHIPPED = (f"shipped: no name unknown to the files, and support >= {FOUND_SUPPORT:g} "
           f"or BM25 >= {FOUND_SCORE:g}")
RULES = {
    SHIPPED: lambda row: not row["unknown"] and (row["support"] >= FOUND_SUPPORT or row["score"] >= FOUND_SCORE),
    "support >= 0.5 or BM25 >= 10 (names not looked up)": lambda row: row["support"] >= 0.5 or row["score"] >= 10,
    "before: BM25 >= 5.5 or support >= 0.6": lambda row: row["score"] >= 5.5 or row["support"] >= 0.6,
    **{f"support >= {t}": (lambda row, t=t: row["support"] >= t) for t in (0.4, 0.45, 0.5, 0.55, 0.6)},
    **{f"support >= 0.5 or BM25 >= {s}": (lambda row, s=s: row["support"] >= 0.5 or row["score"] >= s)
       for s in (8, 12)},
}


@torch.inference_mode()
def likelihood_gain(runtime, evidence: str, question: str) -> float:
    """Mean log-probability gain of the question's tokens when `evidence` is the passage before it."""
    tokenizer, model = runtime.tokenizer, runtime.model
    asked = tokenizer.encode(" " + question)

    def logprobs(passage: str) -> torch.Tensor:
        prefix = tokenizer.encode(f"Passage: {passage}\nQuestion:")
        logits = model(torch.tensor([prefix + asked]))[0, len(prefix) - 1:-1].log_softmax(-1)
        return logits[torch.arange(len(asked)), torch.tensor(asked)]

    return float((logprobs(evidence) - logprobs("(none)")).mean())


def strictest_threshold(rows: list[dict], signal: str, also=None) -> dict:
    """The lowest threshold on `signal` above every absent question's value (optionally `also` a rule that must
    hold too), and what it costs the facts and why/how questions."""
    cut = max(row[signal] for row in rows if row["kind"] == "absent")
    answerable = [row for row in rows if row["kind"] in ("fact", "why_how")]
    passes = (lambda row: row[signal] > cut) if also is None else (lambda row: row[signal] > cut or also(row))
    return {"threshold": round(cut, 3), "facts_and_why_how_refused": f"{sum(not passes(r) for r in answerable)}/"
            f"{len(answerable)}", "other_words_found": sum(passes(r) for r in rows if r["kind"] == "paraphrase")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(".qa-store"))
    parser.add_argument("--more", action="store_true", help="also the model's likelihood and MiniLM's cosine")
    args = parser.parse_args()
    from check_questions import WORK_SETS, answer_strings, contains, load

    import engine
    from engine.answer.evidence import choose_evidence
    from engine.answer.found import unknown_names

    items = load(*WORK_SETS)
    rows = []
    if args.more:
        from baseline import embed, load_embedder
        embedder = load_embedder()
    with engine.open_store(args.store, device="cpu") as store:
        for item in items:
            excerpts = store.passages(item["question"])
            texts = [store.runtime.tokenizer.decode(excerpt.ids) for excerpt in excerpts]
            choice = choose_evidence(excerpts, texts, item["question"], store.lines)
            quoted = " ".join(evidence.text for evidence in choice.evidence)
            rows.append({"id": item["id"], "kind": item["kind"], "score": round(choice.score, 3),
                         "support": round(choice.support, 3),
                         "unknown": unknown_names(store.store.db, item["question"]),
                         "evidence_right": item["kind"] != "absent" and any(
                             contains(quoted, answer) for answer in answer_strings(item))})
            if args.more:
                flat = " ".join(quoted.split())
                question, passage = embed(embedder, [item["question"], flat])
                rows[-1] |= {"likelihood": round(likelihood_gain(store.runtime, flat, item["question"]), 3),
                             "cosine": round(float(question @ passage), 3)}
    absent = [row for row in rows if row["kind"] == "absent"]
    answerable = [row for row in rows if row["kind"] in ("fact", "why_how")]
    other_words = [row for row in rows if row["kind"] == "paraphrase"]
    rules = {name: {"absent_not_found": f"{sum(not rule(row) for row in absent)}/{len(absent)}",
                    "facts_and_why_how_refused": f"{sum(not rule(row) for row in answerable)}/{len(answerable)}",
                    "of_them_evidence_right": sum(not rule(row) and row["evidence_right"] for row in answerable),
                    "other_words_refused": f"{sum(not rule(row) for row in other_words)}/{len(other_words)}"}
             for name, rule in RULES.items()}
    more = {}
    if args.more:
        shipped = RULES[SHIPPED]
        more = {f"{signal}{beside}": strictest_threshold(rows, signal, also)
                for signal in ("likelihood", "cosine", "support")
                for beside, also in (("", None), (" or the shipped rule", shipped))}
    for name, counts in {**rules, **more}.items():
        print(f"{name:36s} {counts}")
    (ROOT / "bench" / "results" / "qa_found_train.json").write_text(json.dumps({
        "questions": list(WORK_SETS), "command": f"python bench/qa/found_train.py --store S{' --more' * args.more}",
        "rules": rules, "all_absent_not_found": more, "per_question": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
