"""The one part of `ask` whose cost grows with the corpus: scoring blocks against every stored key, exact
and through the IVF index the engine switches to above `engine.key_index.EXACT_MAX_ROWS`, side by side.

    python bench/bench_key_search.py --store /tmp/store-ivf [--rows 1000000,4000000,10000000] [--alternatives]

Question encoding, the full-text search, re-reading the excerpts and the prompt's prefill cost the same
whatever the store holds; `model_block_scores` (a faiss search over the stored keys, then MaxSim per
block) does not. At every row count this builds the exact index and the engine's approximate one over
the same keys and reports, per question (bench_ask's ten): search wall time, the approximate index's
recall of the exact top-256 candidates per question token, and whether it picks the same best blocks;
plus build (k-means training, adding) time and memory. Each probing share of `--shares` is measured
(nprobe = lists / share; the engine's own nprobe is `engine.key_index.probe_count`).

Keys: the store's own, real. Beyond its size they are extended synthetically: copy c of real key k is k
plus gaussian noise, renormalised and rounded to int8 as the engine stores keys, at positions after the
last copy (distinct blocks). The noise is set so that a copy is as close to its source as a real key is
to its nearest other real key (median cosine over a sample), so copies neither duplicate their source
(which would flatter the clustering) nor wash out its structure. `synthetic_check` measures the method:
recall at the store's own size on real keys against the same size grown from a quarter of them.
`--alternatives` also measures, at the first extended size, IVF with float32 lists (no 8-bit codes)
and HNSW's build rate (on 200k rows: the reason it was not chosen).
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
from engine.key_index import (
    EXACT_MAX_ROWS,
    MAX_LISTS,
    MIN_LISTS,
    MIN_PROBES,
    PROBED_SHARE,
    KeyIndex,
    list_count,
    probe_count,
    sample_step,
    unit_keys,
)
from engine.retrieval import CANDIDATES_PER_TOKEN, model_block_scores, question_queries
from engine.runtime import load_runtime
from engine.states import read_state

RESULTS = Path(__file__).parent / "results"
TOP_BLOCKS = 4
CHUNK = 1 << 20  # rows added to faiss at a time (bounds the float32 copy)
HNSW_ROWS = 200_000


def index_mb(indexes: list[faiss.Index], positions: np.ndarray) -> float:
    """Memory an index holds: each head's keys (float32 in a flat index; 8-bit codes, 8-byte ids and the
    centroids in an IVF one) and the row -> position map."""
    total = positions.nbytes
    for index in indexes:
        if isinstance(index, faiss.IndexIVF):
            total += index.ntotal * (index.code_size + 8) + index.nlist * index.d * 4
        else:
            total += index.ntotal * index.d * 4
    return round(total / 2**20, 1)


def store_keys(root: Path, db) -> tuple[np.ndarray, np.ndarray]:
    """Every recorded segment's int8 keys (tokens, heads, dim) and token positions, in sequence order."""
    keys, positions = [], []
    for (start,) in db.execute("SELECT token_start FROM segments ORDER BY token_start"):
        begin, end, segment = read_state(root, start)
        keys.append(segment)
        positions.append(np.arange(begin, end, dtype=np.int64))
    return np.concatenate(keys), np.concatenate(positions)


def nearest_cosine(keys: np.ndarray, samples: int = 2000) -> float:
    """Median cosine between a real key and its nearest other key (first head; an even sample)."""
    unit = unit_keys(keys[:, 0])
    flat = faiss.IndexFlatIP(unit.shape[1])
    flat.add(unit)
    similarities, _ = flat.search(unit[::max(1, len(unit) // samples)], 2)
    return float(np.median(similarities[:, 1]))


def extended(keys: np.ndarray, positions: np.ndarray, rows: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """`keys` followed by noisy copies up to `rows` (see the module docstring), with their positions."""
    rng = np.random.default_rng(0)
    span = int(positions.max()) + 1
    out_keys, out_positions, have, copy = [keys], [positions], len(keys), 0
    while have < rows:
        copy += 1
        take = min(len(keys), rows - have)
        unit = unit_keys(keys[:take])
        unit += rng.standard_normal(unit.shape, dtype=np.float32) * sigma
        unit /= np.linalg.norm(unit, axis=-1, keepdims=True)
        out_keys.append(np.clip(np.round(unit * 127), -127, 127).astype(np.int8))
        out_positions.append(positions[:take] + copy * span)
        have += take
    return np.concatenate(out_keys)[:rows], np.concatenate(out_positions)[:rows]


def fill(index: KeyIndex, keys: np.ndarray, positions: np.ndarray) -> None:
    for at in range(0, len(keys), CHUNK):
        index.add_keys(positions[at:at + CHUNK], keys[at:at + CHUNK])


def exact_index(keys: np.ndarray, positions: np.ndarray) -> tuple[KeyIndex, dict]:
    started = time.perf_counter()
    index = KeyIndex.exact(keys.shape[1], keys.shape[2])
    fill(index, keys, positions)
    return index, {"build_s": round(time.perf_counter() - started, 2), "memory_mb": index_mb(index.indexes, positions)}


def approximate_index(keys: np.ndarray, positions: np.ndarray) -> tuple[KeyIndex, dict]:
    """The engine's approximate index over `keys`, trained on the same even sample the engine draws."""
    rows, sample = len(keys), keys[::sample_step(len(keys))]
    started = time.perf_counter()
    index = KeyIndex.trained(sample, rows)
    trained = time.perf_counter()
    fill(index, keys, positions)
    return index, {"lists": list_count(rows), "engine_nprobe": probe_count(list_count(rows)), "train_rows": len(sample),
                   "train_s": round(trained - started, 2), "add_s": round(time.perf_counter() - trained, 2),
                   "memory_mb": index_mb(index.indexes, positions)}


def timed_scores(index: KeyIndex, queries: list[list[np.ndarray]], block_tokens: int) -> tuple[dict, list]:
    model_block_scores(index, queries[0], block_tokens)  # warm-up
    wall, tops = [], []
    for query in queries:
        started = time.perf_counter()
        scores = model_block_scores(index, query, block_tokens)
        wall.append(time.perf_counter() - started)
        tops.append(set(sorted(scores, key=lambda block: -scores[block])[:TOP_BLOCKS]))
    return {"median": round(statistics.median(wall), 4), "max": round(max(wall), 4)}, tops


def candidate_rows(index: KeyIndex, queries: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per question and head, the rows each question token's search returns (tokens, k)."""
    k = min(CANDIDATES_PER_TOKEN, index.tokens)
    return [index.indexes[head].search(np.ascontiguousarray(query[head]), k)[1]
            for query in queries for head in range(len(index.indexes))]


def recall(found: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """Mean over question tokens of the share of the exact candidates the approximate search found."""
    shares = [len(set(f[f >= 0]) & set(t)) / len(t) for rows, exact in zip(found, truth) for f, t in zip(rows, exact)]
    return round(float(np.mean(shares)), 4)


def agreement(tops: list[set], exact_tops: list[set]) -> dict:
    return {"top_blocks_shared": round(float(np.mean([len(a & b) / TOP_BLOCKS for a, b in zip(tops, exact_tops)])), 3),
            "questions_same_top_blocks": sum(a == b for a, b in zip(tops, exact_tops))}


def compare(keys: np.ndarray, positions: np.ndarray, queries: list, block_tokens: int, shares: list[int]) -> dict:
    exact, exact_build = exact_index(keys, positions)
    exact_wall, exact_tops = timed_scores(exact, queries, block_tokens)
    truth = candidate_rows(exact, queries)
    del exact
    approximate, build = approximate_index(keys, positions)
    probes, lists = [], list_count(len(keys))
    for share in shares:
        for head in approximate.indexes:
            head.nprobe = max(1, lists // share)
        wall, tops = timed_scores(approximate, queries, block_tokens)
        probes.append({"share": share, "nprobe": max(1, lists // share),
                       "wall_s": wall, "recall_at_256": recall(candidate_rows(approximate, queries), truth),
                       **agreement(tops, exact_tops)})
    return {"rows": len(keys), "exact": {"wall_s": exact_wall, **exact_build},
            "ivf_sq8": {**build, "probes": probes}}


def float_lists(keys: np.ndarray, queries: list, truth_index: KeyIndex, shares: list[int]) -> dict:
    """IVF with float32 lists (first head), same lists and probes as the engine's: what the 8-bit codes save."""
    rows, unit = len(keys), unit_keys(keys[:, 0])
    lists = list_count(rows)
    started = time.perf_counter()
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(unit.shape[1]), unit.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(unit[::sample_step(rows)]))
    index.add(unit)
    built = time.perf_counter() - started
    head_queries = [np.ascontiguousarray(query[0]) for query in queries]
    truth = [truth_index.indexes[0].search(query, CANDIDATES_PER_TOKEN)[1] for query in head_queries]
    probes = []
    for share in shares:
        index.nprobe = max(1, lists // share)
        wall = []
        for query in head_queries:
            started = time.perf_counter()
            index.search(query, CANDIDATES_PER_TOKEN)
            wall.append(time.perf_counter() - started)
        found = [index.search(query, CANDIDATES_PER_TOKEN)[1] for query in head_queries]
        probes.append({"share": share, "nprobe": index.nprobe, "recall_at_256": recall(found, truth),
                       "search_wall_s_median": round(statistics.median(wall), 4)})
    return {"rows": rows, "lists": lists, "build_s": round(built, 2),
            "memory_mb": index_mb([index], np.zeros(rows, dtype=np.int64)), "probes": probes}


def hnsw_rate(keys: np.ndarray) -> dict:
    unit = np.ascontiguousarray(unit_keys(keys[:HNSW_ROWS, 0]))
    index = faiss.IndexHNSWFlat(unit.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    index.add(unit)
    seconds = time.perf_counter() - started
    return {"rows": len(unit), "M": 32, "ef_construction": index.hnsw.efConstruction, "build_s": round(seconds, 1),
            "rows_per_s": round(len(unit) / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--rows", default="1000000,4000000,10000000", help="larger row counts (synthetic keys)")
    parser.add_argument("--shares", default="16,8,4", help="probed shares of the lists to measure (1/share)")
    parser.add_argument("--alternatives", action="store_true", help="also IVF with float lists and HNSW's build rate")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    shares = [int(share) for share in args.shares.split(",")]
    runtime = load_runtime(None, args.device)
    with open_store(args.store, runtime=runtime) as store:
        config = store.config
        keys, positions = store_keys(store.root, store.store.db)
        queries = [question_queries(runtime, config, question) for question, _, _ in QUESTIONS]
    real = len(keys)
    cosine = nearest_cosine(keys)
    sigma = float(np.sqrt((1 / cosine**2 - 1) / keys.shape[2]))
    print(f"{real:,} real keys; nearest-key cosine {cosine:.3f}, noise sigma {sigma:.4f}", flush=True)
    quarter, quarter_positions = keys[:real // 4], positions[:real // 4]
    check = {"rows": real, "real": compare(keys, positions, queries, config.block_tokens, shares),
             "grown_from_a_quarter": compare(*extended(quarter, quarter_positions, real, sigma), queries,
                                             config.block_tokens, shares)}
    print(json.dumps(check), flush=True)
    sizes, alternatives = [], {}
    for rows in [int(n) for n in args.rows.split(",")]:
        grown_keys, grown_positions = extended(keys, positions, rows, sigma)
        sizes.append(compare(grown_keys, grown_positions, queries, config.block_tokens, shares))
        sizes[-1]["synthetic_rows"] = max(0, rows - real)
        print(json.dumps(sizes[-1]), flush=True)
        if args.alternatives and not alternatives:
            truth = KeyIndex.exact(1, keys.shape[2])
            fill(truth, grown_keys[:, :1], grown_positions)
            alternatives = {"ivf_float_lists": float_lists(grown_keys, queries, truth, shares),
                            "hnsw": hnsw_rate(grown_keys)}
            del truth
            print(json.dumps(alternatives), flush=True)
        del grown_keys, grown_positions
    engine = {"exact_max_rows": EXACT_MAX_ROWS,
              "lists": f"power of two nearest sqrt(rows), in [{MIN_LISTS}, {MAX_LISTS}]",
              "nprobe": f"max(lists / {PROBED_SHARE}, min({MIN_PROBES}, lists / 4))"}
    report = {"date": date.today().isoformat(), "device": runtime.device.type, "cores": os.cpu_count(),
              "faiss_threads": faiss.omp_get_max_threads(), "load_average_start": load_at_start,
              "load_average_end": os.getloadavg(), "question_tokens": [len(q[0]) for q in queries],
              "store_tokens": real, "engine": engine,
              "keys": {"real_rows": real, "nearest_key_cosine_median": round(cosine, 4), "noise_sigma": round(sigma, 5),
                       "method": "store's own keys; beyond them, noisy copies of the real keys (per-dimension gaussian "
                                 "noise sigma, renormalised, int8) so that a copy's cosine to its source equals the "
                                 "median cosine of a real key to its nearest other real key"},
              "synthetic_check": check, "sizes": sizes, "alternatives": alternatives}
    (RESULTS / f"key_search_{runtime.device.type}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
