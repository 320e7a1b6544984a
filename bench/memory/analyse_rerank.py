"""hit@1/@4 when the model's live attention re-ranks the candidates (bench/memory/rerank_live.py wrote them).

    python bench/memory/analyse_rerank.py --keys /tmp/keys-w2048 [--split train] [--out FILE]

Each candidate's score is the share of the question tokens' attention on it, per (layer, head); "position-
centred" subtracts the mean share at that candidate place over all questions (the places nearest the question
draw more attention whatever they hold). Reported: the candidates' recall, all heads summed, layer ranges, and the
best single heads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from bench.memory.analyse_heads import emit, gold_blocks, hits

    questions = json.loads((ROOT / "bench" / "qa" / f"questions_{args.split}.json").read_text(encoding="utf-8"))
    blocks = json.loads((args.keys / "blocks.json").read_text())
    answerable = [i for i, item in enumerate(questions) if item["kind"] != "absent"]
    golds = [gold_blocks(blocks, questions[i]) for i in answerable]
    kinds = [questions[i]["kind"] for i in answerable]
    saved = np.load(args.keys / f"rerank-{args.split}.npz")
    mass, candidates = saved["mass"][answerable], saved["blocks"][answerable]
    share = mass / (mass.sum(-1, keepdims=True) + 1e-9)
    centred = share - share.mean(0, keepdims=True)

    def ranked(score: np.ndarray) -> dict:
        order = [[int(candidates[q][j]) for j in np.argsort(-score[q]) if candidates[q][j] >= 0]
                 for q in range(len(answerable))]
        return hits(order, golds, kinds)

    report = {"split": args.split, "candidates_recall": hits([list(c) for c in candidates], golds, kinds),
              "all_heads": ranked(share.sum((1, 2))), "all_heads_position_centred": ranked(centred.sum((1, 2)))}
    for first, last in ((0, 10), (10, 20), (20, 30)):
        report[f"layers_{first}_{last - 1}_position_centred"] = ranked(centred[:, first:last].sum((1, 2)))
    singles = []
    for layer in range(mass.shape[1]):
        for head in range(mass.shape[2]):
            result = ranked(centred[:, layer, head])
            singles.append({"head": [layer, head], **result["answerable"],
                            "paraphrase_hit@4": result.get("paraphrase", {}).get("hit@4")})
    report["best_single_heads"] = sorted(singles, key=lambda r: (r["hit@4"], r["hit@1"]), reverse=True)[:5]
    emit(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
