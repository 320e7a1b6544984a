"""hit@1/@4 of the gold block for heads, head sets, full-text, MiniLM and fusions, per question kind.

    python bench/memory/analyse_heads.py --keys /tmp/keys-w2048 --scores scores-train-own-mean.npy [--split train]
        [--heads 11:3,12:7] [--out bench/results/memory_heads_train.json]

Reads what bench/memory/score_heads.py and other_rankings.py wrote. Head sets are chosen greedily (up to four
heads, 64 bytes a token each, within the 256 B/token budget) by answerable hit@4, then hit@1, on the split
given — choose on train, then score the chosen set once on test with --heads. Per-question scores of a head are
z-scored across blocks before heads are summed; "hub-centred" subtracts each block's mean score over the other
questions (a block that ranks high for every question is a hub, not an answer).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.qa.gold import overlaps_gold  # noqa: E402
from engine.answer.retrieval import take_turns  # noqa: E402

KINDS = ("fact", "paraphrase", "why_how")
RRF_K = 60


def gold_blocks(blocks: list, item: dict) -> set[int]:
    return {block for block, rows in enumerate(blocks) if overlaps_gold(rows, item)}


def hits(rankings: list[list[int]], golds: list[set[int]], kinds: list[str]) -> dict:
    rows = defaultdict(list)
    for ranking, gold, kind in zip(rankings, golds, kinds):
        flags = [block in gold for block in ranking[:32]]
        for key in (kind, "answerable"):
            rows[key].append([any(flags[:k]) for k in (1, 4, 16, 32)])
    return {key: {"n": len(v), **{f"hit@{k}": round(sum(row[i] for row in v) / len(v), 3)
                                  for i, k in enumerate((1, 4, 16, 32))}} for key, v in rows.items()}


def zscore(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean(axis=-1, keepdims=True)) / (scores.std(axis=-1, keepdims=True) + 1e-6)


def hub_centred(scores: np.ndarray) -> np.ndarray:
    """(…, questions, blocks): each block's score less its mean over the other questions."""
    n = scores.shape[-2]
    total = scores.sum(axis=-2, keepdims=True)
    return scores - (total - scores) / (n - 1)


def ranking(scores: np.ndarray, top: int = 64) -> list[list[int]]:
    return [list(map(int, np.argsort(-row)[:top])) for row in scores]


def rrf(*lists: list[int]) -> list[int]:
    fused: dict[int, float] = defaultdict(float)
    for ranking_ in lists:
        for rank, block in enumerate(ranking_):
            fused[block] += 1 / (RRF_K + rank + 1)
    return [b for b, _ in sorted(fused.items(), key=lambda item: -item[1])]


def key(result: dict) -> tuple:
    return (result["answerable"]["hit@4"], result["answerable"]["hit@1"])


def greedy(z: np.ndarray, golds, kinds, limit: int = 4, layers: int | None = None) -> list[tuple[int, int]]:
    chosen: list[tuple[int, int]] = []
    current = np.zeros(z.shape[2:])
    best_result = None
    candidates = [(layer, head) for layer in range(z.shape[0] if layers is None else layers) for head in range(z.shape[1])]
    for _ in range(limit):
        step = None
        for layer, head in candidates:
            if (layer, head) in chosen:
                continue
            result = hits(ranking(current + z[layer, head], 4), golds, kinds)
            if step is None or key(result) > key(step[1]):
                step = ((layer, head), result)
        if best_result is not None and key(step[1]) <= key(best_result):
            break
        chosen.append(step[0])
        current = current + z[step[0]]
        best_result = step[1]
    return chosen


def emit(report: dict, out: Path | None) -> None:
    """Prints the report as JSON and writes it to `out` when given."""
    text = json.dumps(report, indent=1)
    if out:
        out.write_text(text + "\n")
    print(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--scores", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--heads", default="", help="score this head set (layer:head,…) instead of choosing")
    parser.add_argument("--background", action="append", default=[],
                        help="a scores file of background questions: each block's mean score over them is subtracted")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    questions = json.loads((ROOT / "bench" / "qa" / f"questions_{args.split}.json").read_text(encoding="utf-8"))
    blocks = json.loads((args.keys / "blocks.json").read_text())
    scores = np.load(args.keys / args.scores)
    answerable = [i for i, item in enumerate(questions) if item["kind"] != "absent"]
    golds = [gold_blocks(blocks, questions[i]) for i in answerable]
    kinds = [questions[i]["kind"] for i in answerable]
    raw = scores[:, :, answerable]
    other = json.loads((args.keys / f"rankings-{args.split}.json").read_text())
    fulltext = [other["fulltext"][i] for i in answerable]
    minilm = [other["minilm"][i] for i in answerable]
    report: dict = {"split": args.split, "scores": args.scores, "questions": len(answerable),
                    "fulltext": hits(fulltext, golds, kinds), "minilm": hits(minilm, golds, kinds),
                    "fulltext_then_minilm": hits([list(dict.fromkeys(f + m)) for f, m in zip(fulltext, minilm)],
                                                 golds, kinds),
                    "rrf_fulltext_minilm": hits([rrf(f, m) for f, m in zip(fulltext, minilm)], golds, kinds)}
    variants = [("raw", raw), ("hub_centred", hub_centred(raw))]
    for background in args.background:
        mean = np.load(args.keys / background).mean(axis=2, keepdims=True)
        variants.append((f"centred_by:{background}", raw - mean))
    for name, variant in variants:
        z = zscore(variant)
        singles = []
        for layer in range(z.shape[0]):
            for head in range(z.shape[1]):
                singles.append(((layer, head), hits(ranking(z[layer, head], 4), golds, kinds)))
        singles.sort(key=lambda item: key(item[1]), reverse=True)
        section = {"best_single": [{"head": h, **r["answerable"], "paraphrase_hit@4": r.get("paraphrase", {}).get("hit@4")}
                                   for h, r in singles[:8]]}
        if args.heads:
            chosen = [tuple(int(x) for x in part.split(":")) for part in args.heads.split(",")]
        else:
            chosen = greedy(z, golds, kinds)
        combined = sum(z[h] for h in chosen)
        heads_rank = ranking(combined)
        section["set"] = [list(h) for h in chosen]
        section["heads"] = hits(heads_rank, golds, kinds)
        section["fulltext_then_heads"] = hits([list(dict.fromkeys(f + h)) for f, h in zip(fulltext, heads_rank)],
                                              golds, kinds)
        section["turns_fulltext_heads"] = hits([take_turns(f, h) for f, h in zip(fulltext, heads_rank)], golds, kinds)
        section["turns_fulltext_heads_minilm"] = hits([take_turns(f, h, m) for f, h, m in zip(fulltext, heads_rank, minilm)],
                                                      golds, kinds)
        section["rrf_fulltext_heads"] = hits([rrf(f, h) for f, h in zip(fulltext, heads_rank)], golds, kinds)
        section["rrf_all_three"] = hits([rrf(f, h, m) for f, h, m in zip(fulltext, heads_rank, minilm)], golds, kinds)
        if not args.heads:
            section["by_depth"] = {}
            for depth in (4, 8, 12, 16, 22):
                if depth <= z.shape[0]:
                    subset = greedy(z, golds, kinds, layers=depth)
                    section["by_depth"][depth] = {"set": [list(h) for h in subset],
                                                  **hits(ranking(sum(z[h] for h in subset)), golds, kinds)}
        report[name] = section
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
