"""The one part of `ask` whose cost grows with the corpus: scoring blocks against every stored key.

    python bench/bench_key_search.py --store /tmp/store-1m [--rows 1000000,4000000]

Question encoding, the full-text search, re-reading the excerpts and the prompt's prefill cost the same
whatever the store holds; `model_block_scores` (an exact faiss inner-product search over every token's
key, then MaxSim per block) scans all of them. This times it over the store's own keys and over the
same keys tiled to larger row counts (each copy at its own positions, so blocks stay distinct), with
the queries of bench_ask's ten questions: a search's cost depends on the row count, not on the values.
Writes bench/results/key_search_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import date
from pathlib import Path

import faiss
import numpy as np

from bench_ask import QUESTIONS  # the same questions as the ask bench (bench/ is the script's own folder)
from engine.api import open_store
from engine.retrieval import KeyIndex, model_block_scores, question_queries
from engine.runtime import load_runtime

RESULTS = Path(__file__).parent / "results"


def tiled(index: KeyIndex, rows: int) -> KeyIndex:
    """`index`'s keys repeated up to `rows` rows, each copy placed after the last (distinct blocks)."""
    copies = -(-rows // index.tokens)
    span = int(index.positions.max()) + 1
    indexes = []
    for head in index.indexes:
        keys = head.reconstruct_n(0, head.ntotal)
        grown = faiss.IndexFlatIP(keys.shape[1])
        grown.add(np.ascontiguousarray(np.tile(keys, (copies, 1))[:rows]))
        indexes.append(grown)
    positions = np.concatenate([index.positions + copy * span for copy in range(copies)])[:rows]
    return KeyIndex(indexes, positions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--rows", default="1000000,4000000", help="larger row counts to tile the keys to")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    runtime = load_runtime(None, args.device)
    rows = []
    with open_store(args.store, runtime=runtime) as store:
        index, config = store.index(), store.config
        queries = [question_queries(runtime, config, question) for question, _, _ in QUESTIONS]
        for size in [index.tokens] + [int(n) for n in args.rows.split(",")]:
            scaled = index if size == index.tokens else tiled(index, size)
            model_block_scores(scaled, queries[0], config.block_tokens)  # warm-up
            wall, cpu = [], []
            for query in queries:
                started, cpu_started = time.perf_counter(), time.process_time()
                model_block_scores(scaled, query, config.block_tokens)
                wall.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
            rows.append({"rows": size, "tiled": size != index.tokens,
                         "wall_s": {"median": round(statistics.median(wall), 4), "max": round(max(wall), 4)},
                         "cpu_s": {"median": round(statistics.median(cpu), 4), "max": round(max(cpu), 4)}})
            print(f"{size:>12,} rows: median {rows[-1]['wall_s']['median']:.3f} s wall, "
                  f"{rows[-1]['cpu_s']['median']:.3f} s CPU", flush=True)
            del scaled
    report = {"date": date.today().isoformat(), "device": runtime.device.type, "cores": os.cpu_count(),
              "faiss_threads": faiss.omp_get_max_threads(), "load_average_start": load_at_start,
              "load_average_end": os.getloadavg(), "question_tokens": [len(q[0]) for q in queries],
              "store_tokens": index.tokens, "sizes": rows}
    (RESULTS / f"key_search_{runtime.device.type}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
