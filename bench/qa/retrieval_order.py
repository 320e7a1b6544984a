"""How the fused retrieval orders the gold block (no generation, minutes on a CPU).

    python bench/qa/retrieval_order.py [--store .qa-store] [--split train|test]

For each answerable question of the split (the train split while working; the test split once, at the end):
the model heads' ranking and the full-text ranking (the calls `retrieve` makes), then each fusion rule's top 4
blocks; a block is "gold" when its lines overlap the gold lines.
Writes bench/results/qa_retrieval_order_<split>.json: hit@1 and hit@4 per rule and per kind.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QA = ROOT / "bench" / "qa"
sys.path.insert(0, str(ROOT))

from engine.answer.retrieval import take_turns  # noqa: E402

RRF_K = 60


def rrf(rankings: list[list[int]], weights: list[float]) -> list[int]:
    """Reciprocal-rank fusion with a weight per list; ties keep the first list's order (as `fuse` did)."""
    fused: dict[int, float] = defaultdict(float)
    for ranking, weight in zip(rankings, weights):
        for rank, block in enumerate(ranking):
            fused[block] += weight / (RRF_K + rank + 1)
    return [block for block, _ in sorted(fused.items(), key=lambda item: -item[1])]


RULES = {
    "model_first_on_ties (old fuse)": lambda m, lex: rrf([m, lex], [1.0, 1.0]),
    "fulltext_first_on_ties": lambda m, lex: rrf([lex, m], [1.0, 1.0]),
    "fulltext_weight_2": lambda m, lex: rrf([lex, m], [2.0, 1.0]),
    "fulltext_first_then_model (retrieve)": lambda m, lex: list(dict.fromkeys(lex + m)),
    "fulltext_3_then_model": lambda m, lex: list(dict.fromkeys(lex[:3] + m[:1] + lex[3:] + m)),
    "fulltext_2_then_model_2": lambda m, lex: list(dict.fromkeys(lex[:2] + m[:2] + lex[2:] + m)),
    "turns_fulltext_first": lambda m, lex: take_turns(lex, m),
    "model_only": lambda m, lex: m,
    "fulltext_only": lambda m, lex: lex,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(".qa-store"))
    parser.add_argument("--split", choices=("train", "test", "holdout"), default="train")
    parser.add_argument("--out", type=Path, help="default: bench/results/qa_retrieval_order_<split>.json")
    args = parser.parse_args()
    import engine
    from bench.qa.gold import block_lines, overlaps_gold
    from engine.answer.retrieval import lexical_block_ranking, model_block_scores, question_queries, text_reader

    items = [item for item in json.loads((QA / f"questions_{args.split}.json").read_text(encoding="utf-8"))
             if item["kind"] != "absent"]
    hits: dict[str, dict[str, list[tuple[bool, bool]]]] = defaultdict(lambda: defaultdict(list))
    with engine.open_store(args.store, device="cpu") as store:
        runtime, config = store.runtime, store.config

        def gold(item: dict, block: int) -> bool:
            return overlaps_gold(block_lines(runtime, store.store, block, config.block_tokens), item)

        for number, item in enumerate(items, 1):
            scores = model_block_scores(store.index(), question_queries(runtime, config, item["question"]),
                                        config.block_tokens)
            model = sorted(scores, key=lambda block: -scores[block])[:16]
            lexical = lexical_block_ranking(store.store.db, item["question"], config.block_tokens,
                                            text_reader(runtime, store.store))
            for name, rule in RULES.items():
                top = rule(model, lexical)[:4]
                flags = [gold(item, block) for block in top]
                for kind in (item["kind"], "answerable"):
                    hits[name][kind].append((bool(flags[:1]) and flags[0], any(flags)))
            print(f"[{number}/{len(items)}] {item['id']}", file=sys.stderr, flush=True)
    result = {"split": args.split, "command": f"python bench/qa/retrieval_order.py --split {args.split}", "rules": {
        name: {kind: {"n": len(rows), "hit@1": round(sum(a for a, _ in rows) / len(rows), 3),
                      "hit@4": round(sum(b for _, b in rows) / len(rows), 3)} for kind, rows in per_kind.items()}
        for name, per_kind in hits.items()}}
    out = args.out or ROOT / "bench" / "results" / f"qa_retrieval_order_{args.split}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
