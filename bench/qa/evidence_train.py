"""Evidence sentences and "found" signals on the train split only, without generation (minutes on a CPU).

    python bench/qa/evidence_train.py [--store .qa-store]

For each train question, the excerpts `engine ask` reads (`EngineStore.passages`), their sentences
(`engine.answer.evidence.sentences`), and: how often any sentence lies in the gold lines (the ceiling), how often
each selector's choice does (BM25 with the candidates' own document frequencies, as the engine chooses, its score being the
"found" signal; the
count of distinct question stems matched; the first sentence of the first excerpt); and for answerable vs
absent questions the signals "found" could use, with their AUC and the abstention / wrong-refusal rates of
each threshold. Writes bench/results/qa_evidence_train.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QA = ROOT / "bench" / "qa"


def in_gold(item: dict, evidence) -> bool:
    return (Path(evidence.path).name == item["path"] and evidence.start_line <= item["end_line"]
            and evidence.end_line >= item["start_line"])


def auc(positive: list[float], negative: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return round(wins / (len(positive) * len(negative)), 3)


def rates(answerable: list[float], absent: list[float]) -> list[dict]:
    """"Found" when the signal is at least t: abstention on absent questions, wrong refusals on answerable."""
    return [{"t": round(t, 3), "abstain_absent": round(sum(v < t for v in absent) / len(absent), 3),
             "wrong_refusal": round(sum(v < t for v in answerable) / len(answerable), 3)}
            for t in sorted(set(answerable) | set(absent))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(".qa-store"))
    args = parser.parse_args()
    import engine
    from engine.answer.evidence import choose_evidence, sentences, stems

    items = json.loads((QA / "questions_train.json").read_text(encoding="utf-8"))
    rows = []
    with engine.open_store(args.store, device="cpu") as store:
        for number, item in enumerate(items, 1):
            excerpts = store.passages(item["question"])
            texts = [store.runtime.tokenizer.decode(e.ids) for e in excerpts]
            pool = [s.evidence for e, t in zip(excerpts, texts) for s in sentences(e, t)]
            wanted = set(stems(item["question"]))
            overlap = [len(wanted & set(stems(s.text))) for s in pool]
            choice = choose_evidence(excerpts, texts, item["question"])
            best = pool.index(choice.evidence[0]) if choice.evidence else None
            window = set().union(*(stems(s.text) for s in pool[max(best - 1, 0):best + 2])) if best is not None else set()
            row = {"id": item["id"], "kind": item["kind"], "coverage_window": len(wanted & window) / max(len(wanted), 1),
                   "coverage_passages": len(wanted & set(stems(" ".join(texts)))) / max(len(wanted), 1),
                   "best_bm25": choice.score, "idf_support": choice.support,
                   "evidence": [f"{e.path}:{e.start_line}-{e.end_line} {e.text[:120]}" for e in choice.evidence]}
            if item["kind"] != "absent" and pool:
                row |= {"any_candidate_in_gold": any(in_gold(item, s) for s in pool),
                        "bm25_in_gold": bool(choice.evidence) and in_gold(item, choice.evidence[0]),
                        "overlap_in_gold": in_gold(item, pool[max(range(len(pool)), key=overlap.__getitem__)]),
                        "first_sentence_in_gold": in_gold(item, pool[0])}
            rows.append(row)
            print(f"[{number}/{len(items)}] {item['id']} {row['coverage_window']:.2f}", file=sys.stderr, flush=True)
    answerable = [r for r in rows if r["kind"] != "absent"]
    absent = [r for r in rows if r["kind"] == "absent"]
    selection = {}
    for kind in ("fact", "paraphrase", "why_how", "answerable"):
        chosen = [r for r in answerable if kind == "answerable" or r["kind"] == kind]
        selection[kind] = {"n": len(chosen), **{key: round(sum(bool(r.get(key)) for r in chosen) / len(chosen), 3)
                                                for key in ("any_candidate_in_gold", "bm25_in_gold", "overlap_in_gold",
                                                            "first_sentence_in_gold")}}
    signals = {name: {"auc": auc([r[name] for r in answerable], [r[name] for r in absent]),
                      "thresholds": rates([r[name] for r in answerable], [r[name] for r in absent])}
               for name in ("coverage_window", "coverage_passages", "best_bm25", "idf_support")}
    result = {"split": "train", "command": "python bench/qa/evidence_train.py", "selection": selection,
              "found_signals": signals, "per_question": rows}
    (ROOT / "bench" / "results" / "qa_evidence_train.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"selection": selection, "auc": {k: v["auc"] for k, v in signals.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
