"""How the fused retrieval orders the gold block (no generation, minutes on a CPU).

    python bench/qa/retrieval_order.py [--store .qa-store] [--split train|test|holdout] [--minilm]

For each answerable question of the split (the train split while working; the held-out ones once, at the end):
the model heads' ranking and the full-text ranking (the calls `retrieve` makes), then each fusion rule's top 4
and top 6 blocks; a block is "gold" when its lines overlap the gold lines. `--minilm` adds a third list, the
all-MiniLM-L6-v2 embeddings of every 64-token block (the `bench` extra; cached beside the store), and the rules
that use it. Writes bench/results/qa_retrieval_order_<split>.json: hit@1, hit@4 and hit@6 per rule and kind.
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
sys.path.insert(0, str(QA))

from check_questions import SPLITS, load  # noqa: E402

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
    "model_first_on_ties (old fuse)": lambda m, lex, e: rrf([m, lex], [1.0, 1.0]),
    "fulltext_first_on_ties": lambda m, lex, e: rrf([lex, m], [1.0, 1.0]),
    "fulltext_weight_2": lambda m, lex, e: rrf([lex, m], [2.0, 1.0]),
    "fulltext_first_then_model": lambda m, lex, e: list(dict.fromkeys(lex + m)),
    "fulltext_3_then_model": lambda m, lex, e: list(dict.fromkeys(lex[:3] + m[:1] + lex[3:] + m)),
    "fulltext_2_then_model_2": lambda m, lex, e: list(dict.fromkeys(lex[:2] + m[:2] + lex[2:] + m)),
    "turns_fulltext_first (retrieve)": lambda m, lex, e: take_turns(lex, m),
    "model_only": lambda m, lex, e: m,
    "fulltext_only": lambda m, lex, e: lex,
}
MINILM_RULES = {
    "minilm_only": lambda m, lex, e: e,
    "turns_fulltext_minilm": lambda m, lex, e: take_turns(lex, e),
    "turns_fulltext_model_minilm": lambda m, lex, e: take_turns(lex, m, e),
    "turns_fulltext_minilm_model": lambda m, lex, e: take_turns(lex, e, m),
}


def minilm_rankings(store, items: list[dict], cache: Path) -> list[list[int]]:
    """Per question, the blocks by cosine of their all-MiniLM-L6-v2 embedding to the question's, best 64 first."""
    import numpy as np
    from baseline import embed, embed_blocks, load_embedder

    embedder = load_embedder()
    vectors = embed_blocks(embedder, store, cache)
    return [np.argsort(-(vectors @ q))[:64].tolist() for q in embed(embedder, [item["question"] for item in items])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(".qa-store"))
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--minilm", action="store_true", help="also MiniLM block embeddings as a third list")
    parser.add_argument("--out", type=Path, help="default: bench/results/qa_retrieval_order_<split>.json")
    args = parser.parse_args()
    import engine
    from bench.qa.gold import block_lines, overlaps_gold
    from engine.answer.retrieval import lexical_block_ranking, model_block_scores, question_queries, text_reader

    items = [item for item in load(f"questions_{args.split}.json")
             if item["kind"] != "absent"]
    hits: dict[str, dict[str, list[tuple[bool, bool, bool]]]] = defaultdict(lambda: defaultdict(list))
    rules = RULES | (MINILM_RULES if args.minilm else {})
    with engine.open_store(args.store, device="cpu") as store:
        runtime, config = store.runtime, store.config
        store_path = args.store.expanduser().resolve()
        embedded = minilm_rankings(store, items, store_path.parent / f"{store_path.name}-minilm-blocks.npy") \
            if args.minilm else [[] for _ in items]

        def gold(item: dict, block: int) -> bool:
            return overlaps_gold(block_lines(runtime, store.store, block, config.block_tokens), item)

        for number, (item, near) in enumerate(zip(items, embedded), 1):
            scores = model_block_scores(store.index(), question_queries(runtime, config, item["question"]),
                                        config.block_tokens)
            model = sorted(scores, key=lambda block: -scores[block])[:16]
            lexical = lexical_block_ranking(store.store.db, item["question"], config.block_tokens,
                                            text_reader(runtime, store.store))
            for name, rule in rules.items():
                flags = [gold(item, block) for block in rule(model, lexical, near)[:6]]
                for kind in (item["kind"], "answerable"):
                    hits[name][kind].append((bool(flags[:1]) and flags[0], any(flags[:4]), any(flags)))
            print(f"[{number}/{len(items)}] {item['id']}", file=sys.stderr, flush=True)
    command = f"python bench/qa/retrieval_order.py --split {args.split}" + (" --minilm" if args.minilm else "")
    result = {"split": args.split, "command": command, "rules": {
        name: {kind: {"n": len(rows), **{f"hit@{k}": round(sum(row[i] for row in rows) / len(rows), 3)
                                         for i, k in enumerate((1, 4, 6))}} for kind, rows in per_kind.items()}
        for name, per_kind in hits.items()}}
    out = args.out or ROOT / "bench" / "results" / f"qa_retrieval_order_{args.split}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
